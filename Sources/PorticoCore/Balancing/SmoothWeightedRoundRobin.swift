//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// nginx's smooth weighted round robin (`ngx_http_upstream_get_peer`): each pick adds every available host's
/// weight to its current value, chooses the largest, and subtracts the total from it. Weights {5, 1, 1} give
/// `a a b a c a a`, interleaved rather than `a a a a a b c`.
public struct SmoothWeightedRoundRobin: Sendable {
    public let weights: [Int]
    private var current: [Int]

    public init(weights: [Int]) {
        self.weights = weights
        self.current = Array(repeating: 0, count: weights.count)
    }

    public mutating func pick(isAvailable: (Int) -> Bool) -> Int? {
        var best = -1
        var total = 0
        for i in 0..<self.weights.count where isAvailable(i) {
            self.current[i] += self.weights[i]
            total += self.weights[i]
            if best < 0 || self.current[i] > self.current[best] { best = i }
        }
        guard best >= 0 else { return nil }
        self.current[best] -= total
        return best
    }
}

/// A worker's balancer for one cluster.
public enum LoadBalancerState: Sendable {
    case roundRobin(RoundRobinBalancer)
    case weighted(SmoothWeightedRoundRobin)

    public mutating func pick(isAvailable: (Int) -> Bool) -> Int? {
        switch self {
        case .roundRobin(var b):
            let r = b.pick(isAvailable: isAvailable)
            self = .roundRobin(b)
            return r
        case .weighted(var b):
            let r = b.pick(isAvailable: isAvailable)
            self = .weighted(b)
            return r
        }
    }
}
