//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

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
    struct Outcome: Sendable {
        var limit: Int
        var remaining: Int
        var reset: Int64
    }

    public init(route: String, configs: [RateLimitConfig], trustedProxies: [CIDR]) {
        self.limits = configs.enumerated().map { i, c in
            let period = c.per?.nanoseconds ?? 1_000_000_000
            return Limit(
                name: c.name ?? "limit-\(i)", key: Key(parsing: c.key) ?? .clientIP,
                limiter: RateLimiter(rate: c.rate, periodNanos: period, burst: c.burst ?? c.rate),
                quota: c.rate, windowSeconds: max(1, Int(period / 1_000_000_000)))
        }
        self.trustedProxies = trustedProxies
    }

    public func requestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) -> FilterDecision {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let nanos = Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
        var tightest: (Int, RateLimiter.Decision)?
        for (i, limit) in self.limits.enumerated() {
            let decision = limit.limiter.check(self.key(limit.key, context), now: nanos)
            if !decision.allowed {
                let seconds = max(1, (decision.retryAfter + 999_999_999) / 1_000_000_000)
                var headers: HTTPHeaders = ["Content-Type": "text/plain; charset=utf-8", "Retry-After": String(seconds)]
                Self.addFields(&headers, limit, remaining: 0, reset: seconds)
                context.rateLimited = limit.name
                return .respond(FilterResponse(status: 429, headers: headers, text: "429 Too Many Requests\n"))
            }
            if tightest == nil || decision.remaining < tightest!.1.remaining { tightest = (i, decision) }
        }
        if let (i, d) = tightest {
            context[StateKey.self] = Outcome(limit: i, remaining: d.remaining, reset: d.reset)
        }
        return .proceed
    }

    public func responseHead(_ head: inout HTTPResponseHead, _ context: inout RequestContext) {
        guard let o = context[StateKey.self] else { return }
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
            for value in context.requestHeaders["cookie"] {
                for pair in value.split(separator: ";") {
                    let p = pair.trimmingOWS()
                    if p.hasPrefix(name + "=") { return String(p.dropFirst(name.utf8.count + 1)) }
                }
            }
            return ""
        }
    }
}
