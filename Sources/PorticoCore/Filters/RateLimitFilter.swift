//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore
public import NIOHTTP1

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A route's `rate_limits` (local: exact across the workers of this process). Every limit is checked in order;
/// the first one over answers 429 with `Retry-After` (RFC 9110 §10.2.3) and the `RateLimit-Policy` and
/// `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers); allowed responses carry them too.
///
/// Runs on the request's EventLoop; a check is one shard-locked dictionary update.
public struct RateLimitFilter: ProxyFilter {
    public struct Limit: Sendable {
        public var name: String
        public var key: Key
        public var limiter: RateLimiter
        /// For the policy field: quota and window in seconds.
        public var quota: Int
        public var windowSeconds: Int
        /// Counts kept outside this process (`store: redis`); nil: `limiter` decides.
        public var shared: (any SharedRateLimitStore)?
    }

    public enum Key: Sendable, Hashable {
        case clientIP
        case route
        case header(String)
        case cookie(String)
        /// A claim of the client's verified identity (the route's `auth`); clients without one share one key.
        case claim(String)

        public init?(parsing text: String?) {
            guard let text, !text.isEmpty else { self = .clientIP; return }
            if text == "client_ip" { self = .clientIP; return }
            if text == "route" { self = .route; return }
            if text.hasPrefix("header:"), text.count > 7 { self = .header(String(text.dropFirst(7)).lowercased()); return }
            if text.hasPrefix("cookie:"), text.count > 7 { self = .cookie(String(text.dropFirst(7))); return }
            if text.hasPrefix("claim:"), text.count > 6 { self = .claim(String(text.dropFirst(6))); return }
            return nil
        }
    }

    public let limits: [Limit]
    public let trustedProxies: [CIDR]
    /// Some limit is keyed by a claim: the filter must run after the route's auth.
    public var needsIdentity: Bool { self.limits.contains { if case .claim = $0.key { true } else { false } } }
    public var phases: FilterPhases { [.requestHead, .responseHead] }

    /// The decision of the request's tightest limit, for the fields of an allowed response.
    enum StateKey: RequestContextKey { typealias Value = Outcome }
    /// Where a request that waited for shared limits finds their outcome (filled on its EventLoop).
    enum SharedStateKey: RequestContextKey { typealias Value = SharedOutcome }
    final class SharedOutcome: @unchecked Sendable {
        // @unchecked: written and read only on the request's EventLoop.
        var outcome: Outcome?
    }
    struct Outcome: Sendable {
        var limit: Int
        var remaining: Int
        var reset: Int64
    }

    /// `shared` makes the store of each `store: redis` limit (by the limit's name, config and local limiter, the
    /// fallback).
    public init(route: String, configs: [RateLimitConfig], trustedProxies: [CIDR],
                shared: (String, RateLimitConfig, RateLimiter) -> (any SharedRateLimitStore)? = { _, _, _ in nil }) {
        self.limits = configs.enumerated().map { i, c in
            let period = c.per?.nanoseconds ?? 1_000_000_000
            let limiter = RateLimiter(rate: c.rate, periodNanos: period, burst: c.burst ?? c.rate, queue: c.queue ?? 0)
            let name = c.name ?? "limit-\(i)"
            return Limit(
                name: name, key: Key(parsing: c.key) ?? .clientIP, limiter: limiter,
                quota: c.rate, windowSeconds: max(1, Int(period / 1_000_000_000)),
                shared: c.store == .redis ? shared(name, c, limiter) : nil)
        }
        self.trustedProxies = trustedProxies
        self.hasShared = self.limits.contains { $0.shared != nil }
    }

    private let hasShared: Bool

    public func requestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) -> FilterDecision {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let nanos = Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
        var tightest: (Int, RateLimiter.Decision)?
        var pending: [(Int, EventLoopFuture<SharedRateLimitDecision>)] = []
        var delay: Int64 = 0
        for (i, limit) in self.limits.enumerated() {
            if let shared = limit.shared, let loop = context.eventLoop {
                pending.append((i, shared.check(self.key(limit.key, context), eventLoop: loop)))
                continue
            }
            let decision = limit.limiter.check(self.key(limit.key, context), now: nanos)
            if !decision.allowed {
                context.rateLimited = limit.name
                return .respond(self.refusal(limit, decision))
            }
            delay = max(delay, decision.delay)
            if tightest == nil || decision.remaining < tightest!.1.remaining { tightest = (i, decision) }
        }
        if pending.isEmpty {
            if let (i, d) = tightest {
                context[StateKey.self] = Outcome(limit: i, remaining: d.remaining, reset: d.reset)
            }
            if delay > 0, let loop = context.eventLoop {
                // Queued past the burst: the request waits (reads held, nothing sent upstream) for its turn.
                let promise = loop.makePromise(of: FilterDecision.self)
                loop.scheduleTask(in: .nanoseconds(delay)) { promise.succeed(.proceed) }
                return .suspend(promise.futureResult)
            }
            return .proceed
        }
        // Shared limits answer asynchronously (one Redis call each, in parallel): the request waits for them.
        let box = SharedOutcome()
        context[SharedStateKey.self] = box
        let loop = context.eventLoop!
        return .suspend(EventLoopFuture.whenAllSucceed(pending.map(\.1), on: loop).map { decisions -> FilterDecision in
            var tightest = tightest
            for ((i, _), shared) in zip(pending, decisions) {
                let limit = self.limits[i]
                if !shared.decision.allowed {
                    return .respond(shared.failedClosed ? self.storeRefusal(limit) : self.refusal(limit, shared.decision))
                }
                if tightest == nil || shared.decision.remaining < tightest!.1.remaining { tightest = (i, shared.decision) }
            }
            if let (i, d) = tightest { box.outcome = Outcome(limit: i, remaining: d.remaining, reset: d.reset) }
            return .proceed
        }.flatMap { (decision: FilterDecision) -> EventLoopFuture<FilterDecision> in
            guard delay > 0, case .proceed = decision else { return loop.makeSucceededFuture(decision) }
            return loop.scheduleTask(in: .nanoseconds(delay)) { decision }.futureResult
        })
    }

    /// 429 with `Retry-After` and the limit's fields.
    func refusal(_ limit: Limit, _ decision: RateLimiter.Decision) -> FilterResponse {
        let seconds = max(1, (decision.retryAfter + 999_999_999) / 1_000_000_000)
        var headers: HTTPHeaders = ["Content-Type": "text/plain; charset=utf-8", "Retry-After": String(seconds)]
        Self.addFields(&headers, limit, remaining: 0, reset: seconds)
        let name = limit.name
        return FilterResponse(status: 429, headers: headers, text: "429 Too Many Requests\n", updateContext: { $0.rateLimited = name })
    }

    /// A shared limit's store is unreachable and the limit fails closed (`on_error: deny`).
    func storeRefusal(_ limit: Limit) -> FilterResponse {
        let name = limit.name
        return FilterResponse(status: 503, headers: ["Content-Type": "text/plain; charset=utf-8", "Retry-After": "1"],
                              text: "503 Service Unavailable\n", updateContext: { $0.rateLimited = name })
    }

    public func responseHead(_ head: inout HTTPResponseHead, _ context: inout RequestContext) {
        guard let o = context[StateKey.self] ?? (self.hasShared ? context[SharedStateKey.self]?.outcome : nil) else { return }
        Self.addFields(&head.headers, self.limits[o.limit], remaining: o.remaining, reset: max(0, (o.reset + 999_999_999) / 1_000_000_000))
    }

    /// `RateLimit-Policy: "name";q=QUOTA;w=WINDOW` and `RateLimit: "name";r=REMAINING;t=RESET`.
    static func addFields(_ headers: inout HTTPHeaders, _ limit: Limit, remaining: Int, reset: Int64) {
        headers.replaceOrAdd(name: "RateLimit-Policy", value: "\"\(limit.name)\";q=\(limit.quota);w=\(limit.windowSeconds)")
        headers.replaceOrAdd(name: "RateLimit", value: "\"\(limit.name)\";r=\(remaining);t=\(reset)")
    }

    func key(_ key: Key, _ context: RequestContext) -> String {
        switch key {
        case .route: return context.route
        case .clientIP: return IPRulesFilter(rules: IPRules(IPRulesConfig()), trustedProxies: self.trustedProxies).clientAddress(context)
        case .header(let name): return context.requestHeaders.first(name: name) ?? ""
        case .claim(let name): return context.identity?.claim(name) ?? ""
        case .cookie(let name):
            return context.requestHeaders.cookie(name).map(String.init) ?? ""
        }
    }
}

/// A rate limit whose counts live outside this process (Redis; `PorticoRedis`).
public protocol SharedRateLimitStore: Sendable {
    /// Decides for one request of `key`, counting it when allowed. Answers on `eventLoop` and never fails: when
    /// the store cannot answer in time, the implementation falls back as configured.
    func check(_ key: String, eventLoop: any EventLoop) -> EventLoopFuture<SharedRateLimitDecision>
    /// Lets go of connections (the limit is gone after a reload).
    func close()
}

public struct SharedRateLimitDecision: Sendable {
    public var decision: RateLimiter.Decision
    /// The store did not answer and the limit fails closed: the refusal is 503, not 429.
    public var failedClosed: Bool
    public init(decision: RateLimiter.Decision, failedClosed: Bool = false) {
        self.decision = decision
        self.failedClosed = failedClosed
    }
}

extension RateLimitFilter {
    /// Closes the shared stores' connections (the filter is no longer in any routing table).
    public func close() {
        for limit in self.limits { limit.shared?.close() }
    }
}
