//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Synchronization

/// Every `HostState` by address; lives as long as the proxy, across config generations.
public final class HostRegistry: Sendable {
    private let states = Mutex<[HostPort: HostState]>([:])
    private let breakers = Mutex<[String: CircuitBreakerState]>([:])

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

    /// The state for `address`, made on first use. Called when a config is compiled (never per request).
    public func state(for address: HostPort, now: Int64) -> HostState {
        self.states.withLock { states in
            if let s = states[address] { return s }
            let s = HostState(address: address, now: now)
            states[address] = s
            return s
        }
    }

    /// Forgets hosts no config uses any more (in-flight requests keep their references).
    public func retain(only addresses: Set<HostPort>) {
        self.states.withLock { states in states = states.filter { addresses.contains($0.key) } }
    }

}
