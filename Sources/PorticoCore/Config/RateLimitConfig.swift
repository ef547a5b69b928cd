//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// One of a route's `rate_limits`: at most `rate` requests per `per` for each key, with bursts of `burst`. Over
/// it a request gets 429 with `Retry-After` and the `RateLimit-Policy` / `RateLimit` fields (IETF httpapi
/// ratelimit-headers draft).
public struct RateLimitConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// A name for the `RateLimit` fields and logs. Default `limit-N`.
    public var name: String?
    /// What is counted: `client_ip` (default; the forwarded client behind trusted proxies), `route` (every request
    /// of the route together), `header:NAME` or `cookie:NAME` (requests without it share one key), `claim:NAME` (a
    /// claim of the token the route's `auth.jwt` verified, or `sub` for its `auth.basic` user).
    public var key: String?
    /// Requests allowed per `per`. Required, at least 1.
    public var rate: Int
    /// The period of `rate`. Default `1s`.
    public var per: ConfigDuration?
    /// Requests allowed at once before the rate applies. Default: `rate`.
    public var burst: Int?

    public init(name: String? = nil, key: String? = nil, rate: Int, per: ConfigDuration? = nil, burst: Int? = nil) {
        self.name = name
        self.key = key
        self.rate = rate
        self.per = per
        self.burst = burst
    }

    public static var configPlaceholder: RateLimitConfig { .init(rate: 1) }
}
