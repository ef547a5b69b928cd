//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Each host in turn, skipping ineligible ones; weights are ignored.
public struct RoundRobinBalancer: LoadBalancer {
    @usableFromInline var cursor: Int
    @usableFromInline let hostCount: Int

    public init(hostCount: Int, start: Int = 0) {
        self.hostCount = hostCount
        self.cursor = hostCount == 0 ? 0 : start % hostCount
    }

    @inlinable
    public mutating func pick<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, hash: UInt64, using rng: inout R) -> Int? {
        for _ in 0..<hosts.count {
            let i = self.cursor % hosts.count
            self.cursor = i + 1 == hosts.count ? 0 : i + 1
            if hosts.isEligible(i) { return i }
        }
        return nil
    }
}
