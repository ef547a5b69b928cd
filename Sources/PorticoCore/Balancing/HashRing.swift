//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Consistent hashing on a ring (Ketama, as Pingora's `KetamaHashing`): each host owns 160 points per unit of
/// weight; a key goes to the first point clockwise of its hash whose host is eligible. When one of N hosts leaves,
/// only the keys it owned move (about 1/N); the others stay where they were.
///
/// Built once per config generation; picks are a binary search, no allocation.
public struct HashRing: LoadBalancer {
    private let points: [(hash: UInt64, host: Int)]

    public init(weights: [Int], pointsPerWeight: Int = 160) {
        var points: [(hash: UInt64, host: Int)] = []
        for (host, w) in weights.enumerated() {
            for v in 0..<(max(1, w) * pointsPerWeight) {
                points.append((StableHash.mix(StableHash.fnv1a("\(host)-\(v)")), host))
            }
        }
        self.points = points.sorted { $0.hash < $1.hash }
    }

    public mutating func pick<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, hash: UInt64, using rng: inout R) -> Int? {
        guard !self.points.isEmpty else { return nil }
        // First point with hash >= key.
        var lo = 0
        var hi = self.points.count
        let key = StableHash.mix(hash)
        while lo < hi {
            let mid = (lo + hi) / 2
            if self.points[mid].hash < key { lo = mid + 1 } else { hi = mid }
        }
        for step in 0..<self.points.count {
            let host = self.points[(lo + step) % self.points.count].host
            if host < hosts.count && hosts.isEligible(host) { return host }
        }
        return nil
    }
}
