//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// A small, fast, seedable generator (splitmix64) for tests and per-worker randomness.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { self.state = seed }
    public mutating func next() -> UInt64 {
        self.state &+= Self.increment
        return Self.mix(self.state)
    }

    public static let increment: UInt64 = 0x9e37_79b9_7f4a_7c15

    /// SplitMix64's output function: the generator's next value for a state already advanced by `increment`
    /// (for a generator shared between threads whose state is an atomic counter).
    public static func mix(_ state: UInt64) -> UInt64 {
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
