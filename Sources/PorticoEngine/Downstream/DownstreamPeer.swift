//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import PorticoCore

/// The client at the other end of one HTTP/2 connection, as its streams' `ProxyHandler`s need it: the address as
/// text and whether it is a trusted proxy. Looked up by the first stream and reused by the others, since formatting
/// and parsing the address cost a few allocations that every stream would otherwise repeat.
///
/// Used only on the connection's EventLoop (where its streams' `ProxyHandler`s run too).
final class DownstreamPeer {
    private var cached: (ip: String, trusted: Bool)?
    /// The address a PROXY protocol header gave, which stands for the socket's.
    let proxiedAddress: SocketAddress?

    init(proxiedAddress: SocketAddress? = nil) {
        self.proxiedAddress = proxiedAddress
    }

    func identity(of connection: any Channel, _ forwarding: ForwardingPolicy) -> (ip: String, trusted: Bool) {
        if let cached = self.cached { return cached }
        let identity = Self.lookUp(connection, forwarding, proxiedAddress: self.proxiedAddress)
        self.cached = identity
        return identity
    }

    /// The peer of `connection` (an HTTP/1.1 connection asks once, itself): the address its PROXY protocol header
    /// gave, else the socket's.
    static func lookUp(_ connection: any Channel, _ forwarding: ForwardingPolicy, proxiedAddress: SocketAddress?) -> (ip: String, trusted: Bool) {
        let ip = (proxiedAddress ?? connection.remoteAddress)?.ipAddress ?? "-"
        return (ip, forwarding.isTrusted(ip))
    }
}
