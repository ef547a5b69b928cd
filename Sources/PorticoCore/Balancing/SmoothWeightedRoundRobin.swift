//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// nginx's smooth weighted round robin (`ngx_http_upstream_get_peer`): each pick adds every eligible host's weight
/// to its current value, chooses the largest, and subtracts the total from it. Weights {5, 1, 1} give
/// `a a b a c a a`, interleaved rather than `a a a a a b c`.
public struct SmoothWeightedRoundRobin: LoadBalancer {
    @usableFromInline var current: [Int]

    public init(hostCount: Int) {
        self.current = Array(repeating: 0, count: hostCount)
    }

    @inlinable
    public mutating func pick<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, hash: UInt64, using rng: inout R) -> Int? {
        if self.current.count != hosts.count { self.current = Array(repeating: 0, count: hosts.count) }
        var best = -1
        var total = 0
        for i in 0..<hosts.count where hosts.isEligible(i) {
            let w = hosts.weight(i)
            self.current[i] += w
            total += w
            if best < 0 || self.current[i] > self.current[best] { best = i }
        }
        guard best >= 0 else { return nil }
        self.current[best] -= total
        return best
    }
}
