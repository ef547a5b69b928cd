//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore
public import NIOHTTP1

/// Requests a filter makes of a cluster on its own account (an auth check), through the worker's own connection
/// pools and balancers, on the request's EventLoop. The engine gives every request one (`RequestContext.subrequests`).
public protocol SubrequestClient: Sendable {
    /// Sends `head` (and `body`, if any) to a host of `cluster` and collects the answer: its head and up to
    /// `maxBodyBytes` of its body (more is cut off). Call on `eventLoop`. Fails with `SubrequestError`.
    func send(cluster: String, head: HTTPRequestHead, body: ByteBuffer?, timeout: TimeAmount, maxBodyBytes: Int,
              eventLoop: any EventLoop) -> EventLoopFuture<SubrequestResponse>
}

public struct SubrequestResponse: Sendable {
    public var head: HTTPResponseHead
    public var body: ByteBuffer
    public init(head: HTTPResponseHead, body: ByteBuffer) {
        self.head = head
        self.body = body
    }
}

public enum SubrequestError: Error, Sendable, Equatable {
    case unknownCluster(String)
    case noHost
    case overloaded
    case timedOut
    case failed(String)
}
