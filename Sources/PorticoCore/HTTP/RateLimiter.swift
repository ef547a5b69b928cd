//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Synchronization

/// GCRA (the generic cell rate algorithm, as in ATM networks and redis-cell): per key one number, the
/// theoretical arrival time. A request at `now` is allowed when the arrival time it would set is within the
/// burst's tolerance; nothing is counted per window, so there are no window-edge bursts.
///
/// Exact across the workers of one process: one store per limit, shared, in 64 shards each behind a `Mutex`
/// held for one dictionary update (workers meet on a shard only for keys that hash together). Bounded: keys whose
/// arrival time has passed hold nothing any more and are dropped when a shard grows past its share.
public final class RateLimiter: Sendable {
    /// Nanoseconds between requests at the steady rate.
    public let interval: Int64
    /// How far ahead the arrival time may run: `burst` intervals.
    public let tolerance: Int64
    public let burst: Int
    private let maxKeysPerShard: Int
    private let shards: [Shard] = (0..<64).map { _ in Shard() }

    private final class Shard: Sendable {
        let tats = Mutex<[String: Int64]>([:])
    }

    public struct Decision: Sendable, Hashable {
        public var allowed: Bool
        /// Requests that may still go at once.
        public var remaining: Int
        /// Nanoseconds until one more request is allowed (0 when allowed).
        public var retryAfter: Int64
        /// Nanoseconds until the full burst is available again.
        public var reset: Int64
        /// Nanoseconds the allowed request must wait first (a queued one, past the burst); 0 for most.
        public var delay: Int64

        public init(allowed: Bool, remaining: Int, retryAfter: Int64, reset: Int64, delay: Int64 = 0) {
            self.allowed = allowed
            self.remaining = remaining
            self.retryAfter = retryAfter
            self.reset = reset
            self.delay = delay
        }
    }

    /// How much further the arrival time may run for requests that wait (`queue` intervals).
    public let queueTolerance: Int64

    /// `rate` requests per `periodNanos`, bursts of `burst`; past the burst, `queue` more wait their turn.
    public init(rate: Int, periodNanos: Int64, burst: Int, queue: Int = 0, maxKeys: Int = 1 << 20) {
        self.interval = max(1, periodNanos / Int64(max(1, rate)))
        self.burst = max(1, burst)
        self.tolerance = self.interval * Int64(self.burst)
        self.queueTolerance = self.interval * Int64(max(0, queue))
        self.maxKeysPerShard = max(64, maxKeys / 64)
    }

    /// Decides for one request of `key` at `now` (nanoseconds, monotonic), counting it when allowed.
    public func check(_ key: String, now: Int64) -> Decision {
        let shard = self.shards[Int(UInt(bitPattern: key.hashValue) % UInt(self.shards.count))]
        return shard.tats.withLock { tats in
            let tat = max(tats[key] ?? now, now)
            let next = tat + self.interval
            let excess = next - now - self.tolerance
            if excess > self.queueTolerance {
                return Decision(allowed: false, remaining: 0, retryAfter: excess - self.queueTolerance, reset: tat - now)
            }
            tats[key] = next
            if tats.count > self.maxKeysPerShard {
                tats = tats.filter { $0.value > now }  // the rest are as if never seen
            }
            if excess > 0 {
                // Queued (nginx limit_req without nodelay): its turn comes `excess` from now.
                return Decision(allowed: true, remaining: 0, retryAfter: 0, reset: next - now, delay: excess)
            }
            let remaining = Int((self.tolerance - (next - now)) / self.interval)
            return Decision(allowed: true, remaining: remaining, retryAfter: 0, reset: next - now)
        }
    }
}
