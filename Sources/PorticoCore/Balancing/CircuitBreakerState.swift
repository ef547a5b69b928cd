//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Synchronization

/// A cluster's circuit-breaker counters, shared by every worker (atomics) and kept across reloads by cluster name
/// (connections opened under one generation are still open under the next).
public final class CircuitBreakerState: Sendable {
    private let _connections = Atomic<Int>(0)
    private let _pending = Atomic<Int>(0)
    private let _requests = Atomic<Int>(0)
    private let _overflows = Atomic<Int>(0)

    public init() {}

    public var connections: Int { self._connections.load(ordering: .relaxed) }
    public var pending: Int { self._pending.load(ordering: .relaxed) }
    public var requests: Int { self._requests.load(ordering: .relaxed) }
    /// Requests refused by a limit since start.
    public var overflows: Int { self._overflows.load(ordering: .relaxed) }

    /// Takes a slot under `limit` (nil: unlimited, always granted). Returns false, counting an overflow, when full.
    private func acquire(_ counter: borrowing Atomic<Int>, limit: Int?) -> Bool {
        let n = counter.add(1, ordering: .relaxed).newValue
        if let limit, n > limit {
            counter.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    public func acquireConnection(limit: Int?) -> Bool { self.acquire(self._connections, limit: limit) }
    public func releaseConnection() { self._connections.subtract(1, ordering: .relaxed) }

    public func acquirePending(limit: Int) -> Bool { self.acquire(self._pending, limit: limit) }
    public func releasePending() { self._pending.subtract(1, ordering: .relaxed) }

    public func acquireRequest(limit: Int?) -> Bool { self.acquire(self._requests, limit: limit) }
    public func releaseRequest() { self._requests.subtract(1, ordering: .relaxed) }

    /// Counts a refusal; returns the total so far.
    public func recordOverflow() -> Int { self._overflows.add(1, ordering: .relaxed).newValue }
}
