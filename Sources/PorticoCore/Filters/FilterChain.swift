//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore
public import NIOHTTP1

/// A flat list of filters, compiled when the config loads. A request runs two: its listener's (HSTS, mTLS
/// identity fields), then its route's (the global forwarding filter, the route's header rules, whatever later
/// filters add, and a fixed response or redirect last). Every phase runs in that order, so a route's own rules
/// have the last word on what goes upstream and downstream.
///
/// Kept as one array per phase: a phase no filter implements is an empty loop, and a route without filters
/// pays nothing. Immutable and shared by every worker.
public struct FilterChain: Sendable {
    public let filters: [any ProxyFilter]
    let requestHeadFilters: [any ProxyFilter]
    let upstreamRequestHeadFilters: [any ProxyFilter]
    let responseHeadFilters: [any ProxyFilter]
    let responseBodyFilters: [any ProxyFilter]
    let upstreamFailureFilters: [any ProxyFilter]
    let logFilters: [any ProxyFilter]
    /// Some filter makes subrequests (`FilterPhases.subrequests`).
    public let usesSubrequests: Bool

    public init(_ filters: [any ProxyFilter]) {
        self.filters = filters
        self.usesSubrequests = filters.contains { $0.phases.contains(.subrequests) }
        self.requestHeadFilters = filters.filter { $0.phases.contains(.requestHead) }
        self.upstreamRequestHeadFilters = filters.filter { $0.phases.contains(.upstreamRequestHead) }
        self.responseHeadFilters = filters.filter { $0.phases.contains(.responseHead) }
        self.responseBodyFilters = filters.filter { $0.phases.contains(.responseBody) }
        self.upstreamFailureFilters = filters.filter { $0.phases.contains(.upstreamFailure) }
        self.logFilters = filters.filter { $0.phases.contains(.log) }
    }

    public static let empty = FilterChain([])

    /// How many filters implement `requestHead` (indices for `runRequestHead(from:)`).
    public var requestHeadCount: Int { self.requestHeadFilters.count }

    public var hasResponseBodyFilters: Bool { !self.responseBodyFilters.isEmpty }

    /// Runs `requestHead` from filter `start` on. Returns the decision that stopped the chain (`.respond`, or
    /// `.suspend` with the index to resume from after it), or `.proceed` when every filter went on.
    public func runRequestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext, from start: Int = 0) -> (FilterDecision, resumeAt: Int) {
        var i = start
        let filters = self.requestHeadFilters
        while i < filters.count {
            let decision = filters[i].requestHead(&head, &context)
            i += 1
            switch decision {
            case .proceed: continue
            case .respond, .suspend, .needBody: return (decision, i)
            }
        }
        return (.proceed, i)
    }

    public func runUpstreamRequestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) {
        for f in self.upstreamRequestHeadFilters { f.upstreamRequestHead(&head, &context) }
    }

    public func runResponseHead(_ head: inout HTTPResponseHead, _ context: inout RequestContext) {
        for f in self.responseHeadFilters { f.responseHead(&head, &context) }
    }

    /// Runs `responseBody` in chain order: each filter gets what the one before it gave out.
    public func runResponseBody(_ chunk: inout ByteBuffer, _ event: ResponseBodyEvent, _ context: inout RequestContext) {
        for f in self.responseBodyFilters { f.responseBody(&chunk, event, &context) }
    }

    /// The first answer a filter gives instead of Portico's error page, if any.
    public func runUpstreamFailure(status: Int, _ context: inout RequestContext) -> FilterResponse? {
        for f in self.upstreamFailureFilters {
            if let answer = f.upstreamFailure(status: status, &context) { return answer }
        }
        return nil
    }

    public func runLog(_ context: RequestContext) {
        for f in self.logFilters { f.log(context) }
    }
}
