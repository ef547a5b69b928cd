//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Synchronization

/// A listener's connection caps, shared by every worker: open connections in all, open connections per client
/// address, and new connections per second per address (a token bucket, its burst one second's worth). Checked
/// once per accepted connection, before TLS (never per request); a refused connection is closed at once.
///
/// The total is an atomic; per-address state sits in 16 shards, each behind a `Mutex` held for one dictionary
/// update. Addresses with no open connection and a full bucket are forgotten, so memory follows the clients
/// seen in about the last second.
public final class ConnectionLimiter: Sendable {
    public struct Limits: Sendable, Hashable {
        /// 0: none.
        public var maxConnections: Int
        public var maxPerAddress: Int
        /// New connections per second per address.
        public var ratePerAddress: Int

        public init(maxConnections: Int = 0, maxPerAddress: Int = 0, ratePerAddress: Int = 0) {
            self.maxConnections = maxConnections
            self.maxPerAddress = maxPerAddress
            self.ratePerAddress = ratePerAddress
        }

        public var isEmpty: Bool { self.maxConnections == 0 && self.maxPerAddress == 0 && self.ratePerAddress == 0 }
        var tracksAddresses: Bool { self.maxPerAddress > 0 || self.ratePerAddress > 0 }
    }

    public enum Refusal: String, Sendable {
        case maxConnections = "max_connections"
        case maxPerAddress = "max_connections_per_ip"
        case rate = "max_connection_rate_per_ip"
    }

    private let open = Atomic<Int>(0)
    private let refusals = Atomic<Int>(0)
    private let shards: [Shard] = (0..<16).map { _ in Shard() }

    private final class Shard: Sendable {
        let entries = Mutex<[IPAddressBytes: Entry]>([:])
    }

    struct Entry {
        var open: Int
        var tokens: Double
        var stamp: Int64
    }

    public init() {}

    /// Open connections now.
    public var openConnections: Int { self.open.load(ordering: .relaxed) }

    /// Refusals since the last call (for a log line in aggregate).
    public func takeRefusals() -> Int { self.refusals.exchange(0, ordering: .relaxed) }

    /// Admits a new connection from `address` (nanoseconds `now`), or says which cap refuses it. An admitted
    /// connection must be `release`d with the same limits when it closes.
    public func admit(_ address: IPAddressBytes, limits: Limits, now: Int64) -> Refusal? {
        let total = self.open.add(1, ordering: .relaxed).newValue
        if limits.maxConnections > 0 && total > limits.maxConnections {
            return self.refuse(.maxConnections)
        }
        guard limits.tracksAddresses else { return nil }
        let refusal: Refusal? = self.shard(address).entries.withLock { entries in
            let rate = Double(limits.ratePerAddress)
            var e = entries[address] ?? Entry(open: 0, tokens: rate, stamp: now)
            if rate > 0 {
                e.tokens = min(rate, e.tokens + rate * Double(max(0, now - e.stamp)) / 1e9)
                e.stamp = now
            }
            if limits.maxPerAddress > 0 && e.open >= limits.maxPerAddress {
                entries[address] = e
                return .maxPerAddress
            }
            if rate > 0 {
                guard e.tokens >= 1 else {
                    entries[address] = e
                    return .rate
                }
                e.tokens -= 1
            }
            e.open += 1
            entries[address] = e
            if entries.count > 4096 { Self.sweep(&entries, rate: rate, now: now) }
            return nil
        }
        if let refusal { return self.refuse(refusal) }
        return nil
    }

    public func release(_ address: IPAddressBytes, limits: Limits, now: Int64) {
        self.open.subtract(1, ordering: .relaxed)
        guard limits.tracksAddresses else { return }
        self.shard(address).entries.withLock { entries in
            guard var e = entries[address] else { return }
            e.open -= 1
            if e.open <= 0 && limits.ratePerAddress == 0 {
                entries[address] = nil
            } else {
                entries[address] = e
            }
        }
    }

    private func refuse(_ refusal: Refusal) -> Refusal {
        self.open.subtract(1, ordering: .relaxed)
        self.refusals.add(1, ordering: .relaxed)
        return refusal
    }

    /// Forgets addresses with nothing open whose bucket has refilled.
    private static func sweep(_ entries: inout [IPAddressBytes: Entry], rate: Double, now: Int64) {
        entries = entries.filter { _, e in
            e.open > 0 || (rate > 0 && e.tokens + rate * Double(now - e.stamp) / 1e9 < rate)
        }
    }

    private func shard(_ address: IPAddressBytes) -> Shard {
        self.shards[Int(UInt(bitPattern: address.hashValue) % UInt(self.shards.count))]
    }
}
