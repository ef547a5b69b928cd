//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import PorticoCore
import Testing

/// Hosts as plain arrays, so every policy is tested without sockets and with a seeded random source.
struct TestHosts: BalancerHosts {
    var weights: [Int]
    var eligible: [Bool]
    var load: [Int]
    var latencies: [Int64]

    init(weights: [Int], eligible: [Bool]? = nil, load: [Int]? = nil, latencies: [Int64]? = nil) {
        self.weights = weights
        self.eligible = eligible ?? weights.map { _ in true }
        self.load = load ?? weights.map { _ in 0 }
        self.latencies = latencies ?? weights.map { _ in 0 }
    }

    var count: Int { self.weights.count }
    func isEligible(_ i: Int) -> Bool { self.eligible[i] }
    func weight(_ i: Int) -> Int { self.weights[i] }
    func inFlight(_ i: Int) -> Int { self.load[i] }
    func latency(_ i: Int) -> Int64 { self.latencies[i] }
}

@Suite struct BalancerTests {
    func counts(_ kind: BalancerKind, _ hosts: TestHosts, picks: Int = 10_000, seed: UInt64 = 42, hash: (Int) -> UInt64 = { _ in 0 }) -> [Int] {
        var b = LoadBalancerState(kind: kind, hostCount: hosts.count, weights: hosts.weights)
        var rng = SplitMix64(seed: seed)
        var out = Array(repeating: 0, count: hosts.count)
        for i in 0..<picks {
            if let p = b.pick(hosts, hash: hash(i), using: &rng) { out[p] += 1 }
        }
        return out
    }

    @Test func smoothWeightedSequenceMatchesNginx() {
        // nginx's documented example: weights a=5, b=1, c=1 give a a b a c a a.
        var b = LoadBalancerState(kind: .weightedRoundRobin, hostCount: 3, weights: [5, 1, 1])
        var rng = SplitMix64(seed: 1)
        let hosts = TestHosts(weights: [5, 1, 1])
        let seq = (0..<7).map { _ in b.pick(hosts, hash: 0, using: &rng)! }
        #expect(seq == [0, 0, 1, 0, 2, 0, 0])
    }

    @Test func weightsAreRespected() {
        #expect(self.counts(.weightedRoundRobin, TestHosts(weights: [1, 3]), picks: 4000) == [1000, 3000])
        let random = self.counts(.random, TestHosts(weights: [1, 3]))
        #expect(abs(random[1] - 7500) < 300)
        let p2c = self.counts(.p2c, TestHosts(weights: [1, 1, 1]))
        #expect(p2c.allSatisfy { abs($0 - 3333) < 400 })
    }

    @Test func roundRobinCyclesAndSkipsIneligible() {
        var b = LoadBalancerState(kind: .roundRobin, hostCount: 3, weights: [1, 1, 1])
        var rng = SplitMix64(seed: 1)
        let all = TestHosts(weights: [1, 1, 1])
        #expect((0..<6).map { _ in b.pick(all, hash: 0, using: &rng)! } == [0, 1, 2, 0, 1, 2])
        let noB = TestHosts(weights: [1, 1, 1], eligible: [true, false, true])
        #expect((0..<4).map { _ in b.pick(noB, hash: 0, using: &rng)! } == [0, 2, 0, 2])
        #expect(b.pick(TestHosts(weights: [1, 1, 1], eligible: [false, false, false]), hash: 0, using: &rng) == nil)
    }

    @Test(arguments: BalancerKind.allCases)
    func everyPolicyHonoursEligibility(_ kind: BalancerKind) {
        let hosts = TestHosts(weights: [1, 1, 1, 1], eligible: [false, true, false, true])
        let c = self.counts(kind, hosts, picks: 1000, hash: { UInt64($0) })
        #expect(c[0] == 0 && c[2] == 0)
        #expect(c[1] + c[3] == 1000)
        var b = LoadBalancerState(kind: kind, hostCount: 2, weights: [1, 1])
        var rng = SplitMix64(seed: 3)
        #expect(b.pick(TestHosts(weights: [1, 1], eligible: [false, false]), hash: 7, using: &rng) == nil)
    }

    @Test func leastRequestAndP2CAvoidTheBusyHost() {
        let hosts = TestHosts(weights: [1, 1, 1], load: [50, 0, 0])
        #expect(self.counts(.leastRequest, hosts)[0] == 0)
        let p2c = self.counts(.p2c, hosts)
        #expect(p2c[0] < 100)  // only picked when paired... never, since the other is always less loaded
        let weighted = TestHosts(weights: [4, 1], load: [3, 1])  // 0.75 vs 1.0 per unit of weight
        #expect(self.counts(.leastRequest, weighted)[0] == 10_000)
    }

    @Test func ewmaAvoidsTheSlowHost() {
        let hosts = TestHosts(weights: [1, 1, 1], latencies: [200_000_000, 1_000_000, 1_000_000])
        let c = self.counts(.ewma, hosts)
        #expect(c[0] < 100)
        #expect(c[1] > 4000 && c[2] > 4000)
    }

    @Test func firstTakesTheFirstEligible() {
        #expect(self.counts(.first, TestHosts(weights: [1, 1, 1]), picks: 10) == [10, 0, 0])
        #expect(self.counts(.first, TestHosts(weights: [1, 1, 1], eligible: [false, true, true]), picks: 10) == [0, 10, 0])
    }

    @Test func consistentHashIsStableAndRemapsAboutOneNth() {
        var ring = HashRing(weights: [1, 1, 1, 1, 1])
        var rng = SplitMix64(seed: 9)
        let all = TestHosts(weights: [1, 1, 1, 1, 1])
        let keys = (0..<10_000).map { StableHash.fnv1a("user-\($0)") }
        let before = keys.map { ring.pick(all, hash: $0, using: &rng)! }
        #expect(keys.map { ring.pick(all, hash: $0, using: &rng)! } == before)  // stable
        let spread = (0..<5).map { h in before.filter { $0 == h }.count }
        #expect(spread.allSatisfy { $0 > 1200 && $0 < 2800 }, "\(spread)")
        // Host 2 leaves: only its keys move.
        let without2 = TestHosts(weights: [1, 1, 1, 1, 1], eligible: [true, true, false, true, true])
        let after = keys.map { ring.pick(without2, hash: $0, using: &rng)! }
        let moved = zip(before, after).filter { $0 != $1 }.count
        #expect(moved == before.filter { $0 == 2 }.count)
        #expect(Double(moved) / Double(keys.count) < 0.3)
    }

    @Test func slowStartRampsWeight() {
        let s = HostState(address: HostPort(host: "127.0.0.1", port: 1), now: 0)
        #expect(s.effectiveWeight(2, window: 0, now: 5) == 200)
        #expect(s.effectiveWeight(2, window: 100, now: 0) == 20)
        #expect(s.effectiveWeight(2, window: 100, now: 50) == 110)
        #expect(s.effectiveWeight(2, window: 100, now: 100) == 200)
    }
}

@Suite struct HealthDecisionTests {
    @Test func activeThresholds() {
        var m = ActiveHealthStateMachine(healthyThreshold: 2, unhealthyThreshold: 3)
        #expect(m.record(passed: false) == nil)
        #expect(m.record(passed: false) == nil)
        #expect(m.record(passed: true) == nil)  // streak broken
        #expect(m.record(passed: false) == nil)
        #expect(m.record(passed: false) == nil)
        #expect(m.record(passed: false) == .becameUnhealthy)
        #expect(m.record(passed: false) == nil)
        #expect(m.record(passed: true) == nil)
        #expect(m.record(passed: true) == .becameHealthy)
        #expect(m.isHealthy)
    }

    @Test func outlierEjectionGrowsAndRespectsMaxPercent() {
        let d = OutlierDetector(PassiveHealthCheckConfig(consecutiveFailures: 3, baseEjectionTime: .seconds(10), maxEjectionPercent: 50))
        #expect(d.decide(failures: 2, previousEjections: 0, ejectedNow: 0, hostCount: 4, now: 0) == .none)
        #expect(d.decide(failures: 3, previousEjections: 0, ejectedNow: 0, hostCount: 4, now: 0) == .eject(until: 10_000_000_000))
        #expect(d.decide(failures: 3, previousEjections: 2, ejectedNow: 1, hostCount: 4, now: 5) == .eject(until: 5 + 30_000_000_000))
        #expect(d.decide(failures: 3, previousEjections: 0, ejectedNow: 2, hostCount: 4, now: 0) == .refusedByMaxPercent)
        // The last host of a cluster is never ejected under a max below 100%.
        #expect(d.decide(failures: 9, previousEjections: 0, ejectedNow: 0, hostCount: 1, now: 0) == .refusedByMaxPercent)
    }

    @Test func retryDecisions() {
        let p = RetryPolicy(RetryConfig(retryOn: ["connect_failure", "reset", "503"], maxRetries: 2))
        #expect(p.shouldRetry(.connectFailure, retriesSoFar: 0, idempotent: false, responseStarted: false, replayable: true, budgetAllows: false))
        #expect(p.shouldRetry(.reset, retriesSoFar: 1, idempotent: true, responseStarted: false, replayable: true, budgetAllows: true))
        #expect(!p.shouldRetry(.reset, retriesSoFar: 2, idempotent: true, responseStarted: false, replayable: true, budgetAllows: true))
        #expect(!p.shouldRetry(.reset, retriesSoFar: 0, idempotent: false, responseStarted: false, replayable: true, budgetAllows: true))
        #expect(!p.shouldRetry(.status503, retriesSoFar: 0, idempotent: true, responseStarted: true, replayable: true, budgetAllows: true))
        #expect(!p.shouldRetry(.status502, retriesSoFar: 0, idempotent: true, responseStarted: false, replayable: true, budgetAllows: true))
        #expect(!p.shouldRetry(.timeout, retriesSoFar: 0, idempotent: true, responseStarted: false, replayable: true, budgetAllows: true))
        #expect(!p.shouldRetry(.reset, retriesSoFar: 0, idempotent: true, responseStarted: false, replayable: false, budgetAllows: true))
        #expect(!p.shouldRetry(.reset, retriesSoFar: 0, idempotent: true, responseStarted: false, replayable: true, budgetAllows: false))
        var rng = SplitMix64(seed: 5)
        for retry in 0..<8 {
            let b = p.backoff(retry: retry, using: &rng)
            #expect(b.nanoseconds >= 0 && b.nanoseconds < 250_000_000)
        }
        let budget = RetryBudget()
        for _ in 0..<10 { budget.requestStarted() }
        #expect((0..<5).map { _ in budget.tryStartRetry(percent: 20) } == [true, true, true, false, false])
    }

    @Test func statusSets() {
        #expect(StatusSet(parsing: "200-399")!.contains(302))
        #expect(!StatusSet(parsing: "200-399")!.contains(404))
        #expect(StatusSet(parsing: "200,204")!.contains(204))
        #expect(StatusSet(parsing: "abc") == nil)
        #expect(StatusSet(parsing: "399-200") == nil)
    }
}
