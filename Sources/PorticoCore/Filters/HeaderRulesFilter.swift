//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOHTTP1

/// A route's `request_headers` and `response_headers` rules (remove, then set, then add).
public struct HeaderRulesFilter: ProxyFilter {
    public let request: HeaderRules
    public let response: HeaderRules
    public let phases: FilterPhases

    public init(request: HeaderRules, response: HeaderRules) {
        self.request = request
        self.response = response
        var phases: FilterPhases = []
        if !request.isEmpty { phases.insert(.upstreamRequestHead) }
        if !response.isEmpty { phases.insert(.responseHead) }
        self.phases = phases
    }

    public func upstreamRequestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) {
        self.request.apply(to: &head.headers)
    }

    public func responseHead(_ head: inout HTTPResponseHead, _ context: inout RequestContext) {
        self.response.apply(to: &head.headers)
    }
}
