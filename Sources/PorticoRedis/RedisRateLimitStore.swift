//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Crypto
package import Logging
package import NIOCore
package import PorticoCore
import Synchronization

/// A rate limit shared by every Portico that uses the same Redis (`store: redis`).
///
/// **One Lua script call per decision** rather than a local share of the budget refilled in batches: the script
/// runs GCRA atomically in Redis with Redis's own clock (`TIME`), so the limit is exact across instances (a
/// batch scheme over-admits by up to a batch per instance, and its error grows with the number of instances),
/// at the cost of one round trip (tens of microseconds on a LAN) during which the request waits, suspended,
/// never blocking its EventLoop. The script is sent once per connection and then called by its SHA (`EVALSHA`).
///
/// Each EventLoop has its own pipelined connection (`RedisClient`), made when the store is built, so a decision
/// takes no lock. When Redis does not answer within `timeout` (or cannot be reached), the decision is the
/// configured fallback: this process's own count of the same limit (`local`), allow, or deny; the change is
/// logged once when Redis goes and once when it answers again.
package final class RedisRateLimitStore: SharedRateLimitStore {
    private let clients: [ObjectIdentifier: RedisClient]
    private let fallback: RateLimiter
    private let keyPrefix: String
    private let timeout: TimeAmount
    private let mode: RedisFailureMode
    private let logger: Logger
    private let limitName: String
    private let address: String
    private let intervalMicros: String
    private let toleranceMicros: String
    private let down = Atomic<Bool>(false)

    /// GCRA as `RateLimiter` does it, in microseconds. Returns {allowed, remaining, retry_after_us, reset_us}.
    static let script = """
        local interval = tonumber(ARGV[1])
        local tolerance = tonumber(ARGV[2])
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local tat = tonumber(redis.call('GET', KEYS[1])) or now
        if tat < now then tat = now end
        local nxt = tat + interval
        if nxt - now > tolerance then
          return {0, 0, nxt - tolerance - now, tat - now}
        end
        redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1)
        return {1, math.floor((tolerance - (nxt - now)) / interval), 0, nxt - now}
        """
    static let scriptSHA: String = hexString(Insecure.SHA1.hash(data: Array(script.utf8)))

    /// - Parameter eventLoops: every EventLoop requests may run on (the engine's group).
    package init(config: RedisLimitConfig, limitName: String, route: String, limiter: RateLimiter, eventLoops: [any EventLoop],
                 password: String?, logger: Logger) throws {
        guard let hp = HostPort(parsing: config.address) else { throw RedisError.unreachable }
        let address = try SocketAddress.makeAddressResolvingHost(hp.host, port: hp.port)
        self.clients = Dictionary(uniqueKeysWithValues: eventLoops.map { loop in
            (ObjectIdentifier(loop), RedisClient(eventLoop: loop, address: address, password: password))
        })
        self.fallback = limiter
        self.keyPrefix = (config.prefix ?? "portico:rl:") + route + ":" + limitName + ":"
        self.timeout = .nanoseconds(config.timeout?.nanoseconds ?? 100_000_000)
        self.mode = config.onError ?? .local
        self.logger = logger
        self.limitName = limitName
        self.address = config.address
        self.intervalMicros = String(max(1, limiter.interval / 1000))
        self.toleranceMicros = String(max(1, limiter.tolerance / 1000))
    }

    package func check(_ key: String, eventLoop: any EventLoop) -> EventLoopFuture<SharedRateLimitDecision> {
        guard let client = self.clients[ObjectIdentifier(eventLoop)] else {
            return eventLoop.makeSucceededFuture(self.fallback(key))
        }
        let redisKey = self.keyPrefix + key
        return client.send(["EVALSHA", Self.scriptSHA, "1", redisKey, self.intervalMicros, self.toleranceMicros], timeout: self.timeout)
            .flatMap { answer -> EventLoopFuture<RESPValue> in
                // The script is not in this Redis yet (first call, or Redis restarted): send it whole once.
                if case .error(let message) = answer, message.hasPrefix("NOSCRIPT") {
                    return client.send(["EVAL", Self.script, "1", redisKey, self.intervalMicros, self.toleranceMicros], timeout: self.timeout)
                }
                return eventLoop.makeSucceededFuture(answer)
            }
            .flatMapThrowing { answer in
                guard case .array(let items?) = answer, items.count == 4,
                      case .integer(let allowed) = items[0], case .integer(let remaining) = items[1],
                      case .integer(let retry) = items[2], case .integer(let reset) = items[3]
                else {
                    if case .error(let message) = answer { throw RedisError.refused(message) }
                    throw RedisError.unexpectedAnswer
                }
                if self.down.exchange(false, ordering: .relaxed) {
                    self.logger.notice("Redis answers again: shared rate limit back in force", metadata: ["limit": "\(self.limitName)", "redis": "\(self.address)"])
                }
                return SharedRateLimitDecision(
                    decision: RateLimiter.Decision(allowed: allowed == 1, remaining: Int(remaining), retryAfter: retry * 1000, reset: reset * 1000))
            }
            .recover { error in
                if !self.down.exchange(true, ordering: .relaxed) {
                    self.logger.error(
                        "Redis unreachable: shared rate limit falls back to \(self.mode.rawValue)",
                        metadata: ["limit": "\(self.limitName)", "redis": "\(self.address)", "error": "\(error)"])
                }
                return self.fallback(key)
            }
    }

    private func fallback(_ key: String) -> SharedRateLimitDecision {
        switch self.mode {
        case .local:
            return SharedRateLimitDecision(decision: self.fallback.check(key, now: Int64(NIODeadline.now().uptimeNanoseconds)))
        case .allow:
            return SharedRateLimitDecision(decision: .init(allowed: true, remaining: self.fallback.burst, retryAfter: 0, reset: 0))
        case .deny:
            return SharedRateLimitDecision(decision: .init(allowed: false, remaining: 0, retryAfter: 1_000_000_000, reset: 0), failedClosed: true)
        }
    }

    package func close() {
        for client in self.clients.values {
            client.eventLoop.execute { client.close() }
        }
    }
}
