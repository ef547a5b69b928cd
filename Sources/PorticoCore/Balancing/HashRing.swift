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

/// Hashes that are the same in every process and every run (Swift's `Hasher` is seeded per process).
public enum StableHash {
    /// 64-bit FNV-1a.
    public static func fnv1a<S: Sequence>(_ bytes: S) -> UInt64 where S.Element == UInt8 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h &*= 0x0000_0100_0000_01b3
        }
        return h
    }

    public static func fnv1a(_ s: String) -> UInt64 { self.fnv1a(s.utf8) }
    public static func fnv1a(_ s: Substring) -> UInt64 { self.fnv1a(s.utf8) }

    /// A finalizer (splitmix64) so nearby keys spread over the ring.
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// A small, fast, seedable generator (splitmix64) for tests and per-worker randomness.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { self.state = seed }
    public mutating func next() -> UInt64 {
        self.state &+= 0x9e37_79b9_7f4a_7c15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
