//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Synchronization

/// Every `HostState` by cluster and address; lives as long as the proxy, across config generations.
public final class HostRegistry: Sendable {
    /// By cluster name and address: two clusters that list one address keep their own health and counts.
    private let states = Mutex<[HostKey: HostState]>([:])

    public struct HostKey: Hashable, Sendable {
        public var cluster: String
        public var address: HostPort
        public init(cluster: String, address: HostPort) {
            self.cluster = cluster
            self.address = address
        }
    }
    private let breakers = Mutex<[String: CircuitBreakerState]>([:])
    /// Metric slots of routes, clusters and listeners: like host state, they outlive config generations.
    public let metricSlots = MetricSlots()

    /// The circuit-breaker counters of the cluster called `name`.
    public func breaker(forCluster name: String) -> CircuitBreakerState {
        self.breakers.withLock { b in
            if let s = b[name] { return s }
            let s = CircuitBreakerState()
            b[name] = s
            return s
        }
    }

    public init() {}

    /// The state for `address` in `cluster`, made on first use. Called when a config is compiled (never per
    /// request).
    public func state(for address: HostPort, cluster: String, now: Int64) -> HostState {
        let key = HostKey(cluster: cluster, address: address)
        return self.states.withLock { states in
            if let s = states[key] { return s }
            let s = HostState(address: address, now: now)
            states[key] = s
            return s
        }
    }

    /// Forgets hosts no config uses any more (in-flight requests keep their references).
    public func retain(only keys: Set<HostKey>) {
        self.states.withLock { states in states = states.filter { keys.contains($0.key) } }
    }

}
