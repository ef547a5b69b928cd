//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Power of two choices: two distinct eligible hosts at random (weighted), the one with fewer in-flight requests.
/// Nearly as good as least-request, without scanning every host (Mitzenmacher; Envoy's default).
public struct PowerOfTwoChoicesBalancer: LoadBalancer {
    public init() {}

    public mutating func pick<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, hash: UInt64, using rng: inout R) -> Int? {
        guard let a = weightedRandomEligible(hosts, excluding: -1, using: &rng) else { return nil }
        guard let b = weightedRandomEligible(hosts, excluding: a, using: &rng) else { return a }
        let la = Double(hosts.inFlight(a)) / Double(hosts.weight(a))
        let lb = Double(hosts.inFlight(b)) / Double(hosts.weight(b))
        return la <= lb ? a : b
    }
}
