//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1
import PorticoCore
import Synchronization
import Tracing

/// `tracing`: one server span per request (W3C Trace Context): continued from the request's `traceparent` and
/// `tracestate` when present, started (and sampled by ratio) when absent; sent upstream as the parent of the
/// origin's work; ended in the log phase with the route, cluster, host, status and a `response head` event.
///
/// First in every route's chain when tracing is configured, absent otherwise (no cost). Runs on the request's
/// EventLoop; the tracer's exporter runs as a service on the control plane.
struct TracingFilter<T: Tracer>: ProxyFilter {
    let tracer: T
    /// Share of new traces (requests without `traceparent`) to start, decided here before the tracer is called:
    /// a request that is not traced costs a field lookup and a random number, not a span (swift-otel's spans
    /// hop through Swift concurrency's threads even when they are not sampled).
    let sampleRatio: Double

    var phases: FilterPhases { [.requestHead, .upstreamRequestHead, .responseHead, .log] }

    enum SpanKey: RequestContextKey { typealias Value = T.Span }

    func requestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) -> FilterDecision {
        if let traceparent = head.headers.first(name: "traceparent") {
            // W3C Trace Context: a trace the caller did not sample is passed on as it is, without a span.
            guard Self.isSampled(traceparent) else { return .proceed }
        } else if self.sampleRatio < 1 {
            // SplitMix64 over a shared atomic state: no system call per request (glibc 2.36's arc4random makes one).
            let draw = SplitMix64.mix(TracingSampling.state.wrappingAdd(SplitMix64.increment, ordering: .relaxed).newValue)
            guard self.sampleRatio > 0, Double(draw >> 11) < self.sampleRatio * 9_007_199_254_740_992 else { return .proceed }
        }
        var parent = ServiceContext.topLevel
        self.tracer.extract(head.headers, into: &parent, using: HeadersExtractor())
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let span = self.tracer.startSpan("\(head.method.rawValue) \(context.route)", context: parent, ofKind: .server)
        span.attributes["http.request.method"] = head.method.rawValue
        span.attributes["url.path"] = path
        span.attributes["url.scheme"] = context.scheme
        if let host = context.host { span.attributes["server.address"] = host }
        span.attributes["client.address"] = context.clientIP
        span.attributes["portico.route"] = context.route
        span.attributes["portico.listener"] = context.listener
        context[SpanKey.self] = span
        return .proceed
    }

    func upstreamRequestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) {
        guard let span = context[SpanKey.self] else { return }
        // The origin's work is a child of this span: its traceparent replaces the client's.
        head.headers.remove(name: "traceparent")
        head.headers.remove(name: "tracestate")
        self.tracer.inject(span.context, into: &head.headers, using: HeadersInjector())
    }

    func responseHead(_ head: inout HTTPResponseHead, _ context: inout RequestContext) {
        context[SpanKey.self]?.addEvent(SpanEvent(name: "response head"))
    }

    func log(_ context: RequestContext) {
        guard let span = context[SpanKey.self] else { return }
        span.attributes["http.response.status_code"] = context.status
        if let cluster = context.cluster { span.attributes["portico.cluster"] = cluster }
        if let upstream = context.upstreamAuthority { span.attributes["portico.upstream"] = upstream }
        if let cache = context.cacheOutcome { span.attributes["portico.cache"] = cache.label }
        if context.status >= 500 || context.status == 0 { span.setStatus(SpanStatus(code: .error)) }
        span.end()
    }
}

extension TracingFilter {
    /// The `sampled` bit of a `traceparent` (`version-traceid-parentid-flags`, W3C Trace Context §3.2.2.5); an
    /// invalid one is not sampled (the tracer would start a new trace for it; Portico leaves it alone).
    static func isSampled(_ traceparent: String) -> Bool {
        let utf8 = traceparent.utf8
        guard utf8.count >= 55, let last = utf8.last, let hex = UInt8(String(UnicodeScalar(last)), radix: 16) else { return false }
        return hex & 1 == 1
    }
}

struct HeadersExtractor: Extractor {
    func extract(key: String, from carrier: HTTPHeaders) -> String? { carrier.first(name: key) }
}

struct HeadersInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout HTTPHeaders) {
        carrier.replaceOrAdd(name: key, value: value)
    }
}

/// The sampling generator's state, seeded once per process (outside the generic filter type: a generic type has
/// no static stored properties).
private enum TracingSampling {
    static let state = Atomic<UInt64>({
        var rng = SystemRandomNumberGenerator()
        return rng.next()
    }())
}
