//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Peak-EWMA (Finagle, Linkerd): of two random eligible hosts, the one with the lower latency EWMA × (in-flight + 1).
/// Hosts never measured count as fast, so they get traffic and a measurement.
public struct PeakEWMABalancer: LoadBalancer {
    public init() {}

    public mutating func pick<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, hash: UInt64, using rng: inout R) -> Int? {
        guard let a = weightedRandomEligible(hosts, excluding: -1, using: &rng) else { return nil }
        guard let b = weightedRandomEligible(hosts, excluding: a, using: &rng) else { return a }
        func cost(_ i: Int) -> Double {
            Double(max(hosts.latency(i), 1)) * Double(hosts.inFlight(i) + 1) / Double(hosts.weight(i))
        }
        return cost(a) <= cost(b) ? a : b
    }
}
