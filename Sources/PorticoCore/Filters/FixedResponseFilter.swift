//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore
public import NIOHTTP1

/// A route's `respond`: answers every request with a fixed status and body.
public struct FixedResponseFilter: ProxyFilter {
    public let status: Int
    public let body: ByteBuffer
    public let contentType: String?
    public var phases: FilterPhases { .requestHead }

    public init(status: Int, body: String, contentType: String?) {
        self.status = status
        self.body = ByteBuffer(string: body)
        self.contentType = contentType
    }

    public func requestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) -> FilterDecision {
        var headers = HTTPHeaders()
        if let contentType = self.contentType { headers.add(name: "Content-Type", value: contentType) }
        return .respond(FilterResponse(status: self.status, headers: headers, body: self.body))
    }
}
