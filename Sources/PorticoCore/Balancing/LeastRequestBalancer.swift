//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// The eligible host with the fewest in-flight requests per unit of weight; ties go to a random one of them.
/// Caddy's note applies: this counts requests, not connections, since requests are what load a host.
public struct LeastRequestBalancer: LoadBalancer {
    public init() {}

    public mutating func pick<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, hash: UInt64, using rng: inout R) -> Int? {
        var best = -1
        var bestScore = 0.0
        var ties = 0
        for i in 0..<hosts.count where hosts.isEligible(i) {
            let score = Double(hosts.inFlight(i) + 1) / Double(hosts.weight(i))
            if best < 0 || score < bestScore {
                best = i
                bestScore = score
                ties = 1
            } else if score == bestScore {
                // Reservoir sampling among equals, so equal hosts share the load.
                ties += 1
                if Int.random(in: 0..<ties, using: &rng) == 0 { best = i }
            }
        }
        return best >= 0 ? best : nil
    }
}
