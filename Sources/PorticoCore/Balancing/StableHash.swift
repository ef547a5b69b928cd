//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

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
