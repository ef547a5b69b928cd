//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import PorticoCore
import Testing

@Suite struct BalancerTests {
    @Test func smoothWeightedSequenceMatchesNginx() {
        // nginx's documented example: weights a=5, b=1, c=1 give a a b a c a a.
        var b = SmoothWeightedRoundRobin(weights: [5, 1, 1])
        let seq = (0..<7).map { _ in b.pick(isAvailable: { _ in true })! }
        #expect(seq == [0, 0, 1, 0, 2, 0, 0])
    }

    @Test func weightsAreRespectedOverManyPicks() {
        var b = SmoothWeightedRoundRobin(weights: [1, 3])
        var counts = [0, 0]
        for _ in 0..<4000 { counts[b.pick(isAvailable: { _ in true })!] += 1 }
        #expect(counts == [1000, 3000])
    }

    @Test func weightedSkipsUnavailable() {
        var b = SmoothWeightedRoundRobin(weights: [5, 1, 1])
        let seq = (0..<4).map { _ in b.pick(isAvailable: { $0 != 0 })! }
        #expect(Set(seq) == [1, 2])
        #expect(b.pick(isAvailable: { _ in false }) == nil)
    }

    @Test func roundRobinCyclesAndSkips() {
        var r = RoundRobinBalancer(hostCount: 3)
        #expect((0..<6).map { _ in r.pick(isAvailable: { _ in true })! } == [0, 1, 2, 0, 1, 2])
        #expect((0..<4).map { _ in r.pick(isAvailable: { $0 != 1 })! } == [0, 2, 0, 2])
        #expect(r.pick(isAvailable: { _ in false }) == nil)
    }
}
