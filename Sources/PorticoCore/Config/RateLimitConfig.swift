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
    /// Past the burst, this many more requests per key wait until the rate lets them through, instead of 429
    /// (nginx `limit_req` without `nodelay`; `burst` is its `delay`). Local limits only. Default `0`.
    public var queue: Int?
    /// Where the counts live: `local` (default; this process, exact across its workers) or `redis` (shared by
    /// every Portico using the same Redis: one script call per decision).
    public var store: RateLimitStore?
    /// The Redis of a `store: redis` limit.
    public var redis: RedisLimitConfig?

    public init(name: String? = nil, key: String? = nil, rate: Int, per: ConfigDuration? = nil, burst: Int? = nil,
                store: RateLimitStore? = nil, redis: RedisLimitConfig? = nil) {
        self.store = store
        self.redis = redis
        self.name = name
        self.key = key
        self.rate = rate
        self.per = per
        self.burst = burst
    }

    public static var configPlaceholder: RateLimitConfig { .init(rate: 1) }
}

public enum RateLimitStore: String, ConfigEnum {
    case local
    case redis
}

/// The Redis a shared limit counts in.
public struct RedisLimitConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// `host:port`. Required.
    public var address: String
    /// A decision that takes longer counts as Redis being unreachable. Default `100ms`.
    public var timeout: ConfigDuration?
    /// While Redis is unreachable: `local` (default: this process's own count of the same limit), `allow` (fail
    /// open) or `deny` (fail closed: 503). Logged once when it goes and once when it comes back.
    public var onError: RedisFailureMode?
    /// Prepended to every key. Default `portico:rl:`.
    public var prefix: String?
    /// AUTH password (Redis `requirepass`), from this file. Default: none.
    public var passwordFile: String?

    public init(address: String, timeout: ConfigDuration? = nil, onError: RedisFailureMode? = nil, prefix: String? = nil,
                passwordFile: String? = nil) {
        self.address = address
        self.timeout = timeout
        self.onError = onError
        self.prefix = prefix
        self.passwordFile = passwordFile
    }

    public static var configPlaceholder: RedisLimitConfig { .init(address: "") }
}

public enum RedisFailureMode: String, ConfigEnum {
    case local
    case allow
    case deny
}
