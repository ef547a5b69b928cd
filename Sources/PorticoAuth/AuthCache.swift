//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Synchronization

/// Decisions an auth filter remembers for a while (a bcrypt check, a verified token, a forward auth answer), so a
/// busy client costs a hash lookup per request instead of a slow check.
///
/// Shared by every worker of the route: 32 shards, each behind a `Mutex` held for one dictionary access (workers
/// meet on one only for keys that hash together). Bounded: a shard past its share drops its expired entries, then,
/// if still full, everything it holds (a refill costs one slow check per client, not a wrong answer).
///
/// Runs on any thread; never blocks beyond a shard's lock.
package final class AuthCache<Value: Sendable>: Sendable {
    private let shards: [Shard]
    private let perShard: Int

    private final class Shard: Sendable {
        let entries = Mutex<[String: (value: Value, expires: Int64)]>([:])
    }

    package init(capacity: Int = 65_536) {
        self.shards = (0..<32).map { _ in Shard() }
        self.perShard = max(1, capacity / 32)
    }

    private func shard(_ key: String) -> Shard {
        self.shards[Int(UInt(bitPattern: key.hashValue) % UInt(self.shards.count))]
    }

    /// The value remembered for `key`, if it has not expired at `now` (monotonic nanoseconds).
    package func get(_ key: String, now: Int64) -> Value? {
        self.shard(key).entries.withLock { entries in
            guard let entry = entries[key] else { return nil }
            if entry.expires <= now {
                entries[key] = nil
                return nil
            }
            return entry.value
        }
    }

    package func set(_ key: String, _ value: Value, until expires: Int64, now: Int64) {
        self.shard(key).entries.withLock { entries in
            if entries.count >= self.perShard, entries[key] == nil {
                entries = entries.filter { $0.value.expires > now }
                if entries.count >= self.perShard { entries.removeAll(keepingCapacity: true) }
            }
            entries[key] = (value, expires)
        }
    }

    /// Forgets everything (the credentials behind the decisions changed).
    package func removeAll() {
        for shard in self.shards { shard.entries.withLock { $0.removeAll() } }
    }
}

