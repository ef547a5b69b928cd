//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// An eligible host at random, in proportion to weight.
public struct RandomBalancer: LoadBalancer {
    public init() {}

    public mutating func pick<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, hash: UInt64, using rng: inout R) -> Int? {
        weightedRandomEligible(hosts, excluding: -1, using: &rng)
    }
}
