//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// What a balancer may read about a cluster's hosts for one pick. The engine's implementation reads the shared
/// `HostState` atomics and the request's already-tried hosts; tests use plain arrays.
public protocol BalancerHosts {
    var count: Int { get }
    /// Healthy, not ejected, not already tried for this request (and a backup only when no primary is).
    func isEligible(_ index: Int) -> Bool
    /// The weight to use now (slow start applied), at least 1.
    func weight(_ index: Int) -> Int
    /// Requests in flight to the host, across all workers.
    func inFlight(_ index: Int) -> Int
    /// Peak-EWMA of response-header latency, in nanoseconds (0 when unknown).
    func latency(_ index: Int) -> Int64
}

/// A selection policy, one small type per policy (as Caddy's `selectionpolicies.go`). Each worker owns its own
/// value (cursors need no atomics); `pick` runs on the worker's EventLoop, must not allocate, and returns nil when
/// no host is eligible.
public protocol LoadBalancer: Sendable {
    mutating func pick<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, hash: UInt64, using rng: inout R) -> Int?
}

/// A worker's balancer for one cluster. An enum rather than an existential so picks are direct calls.
public enum LoadBalancerState: Sendable {
    case roundRobin(RoundRobinBalancer)
    case weighted(SmoothWeightedRoundRobin)
    case leastRequest(LeastRequestBalancer)
    case p2c(PowerOfTwoChoicesBalancer)
    case ewma(PeakEWMABalancer)
    case random(RandomBalancer)
    case first(FirstAvailableBalancer)
    case hash(HashRing)

    public init(kind: BalancerKind, hostCount: Int, weights: [Int], start: Int = 0) {
        switch kind {
        case .roundRobin: self = .roundRobin(RoundRobinBalancer(hostCount: hostCount, start: start))
        case .weightedRoundRobin: self = .weighted(SmoothWeightedRoundRobin(hostCount: hostCount))
        case .leastRequest: self = .leastRequest(LeastRequestBalancer())
        case .p2c: self = .p2c(PowerOfTwoChoicesBalancer())
        case .ewma: self = .ewma(PeakEWMABalancer())
        case .random: self = .random(RandomBalancer())
        case .first: self = .first(FirstAvailableBalancer())
        case .consistentHash: self = .hash(HashRing(weights: weights))
        }
    }

    /// Inlinable so the engine's call is specialized for its host view (no witness-table calls per host).
    @inlinable
    public mutating func pick<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, hash: UInt64, using rng: inout R) -> Int? {
        switch self {
        case .roundRobin(var b):
            defer { self = .roundRobin(b) }
            return b.pick(hosts, hash: hash, using: &rng)
        case .weighted(var b):
            // Drop the enum's reference first, so `b`'s array is unique and mutating it does not copy.
            self = .first(FirstAvailableBalancer())
            defer { self = .weighted(b) }
            return b.pick(hosts, hash: hash, using: &rng)
        case .leastRequest(var b): return b.pick(hosts, hash: hash, using: &rng)
        case .p2c(var b): return b.pick(hosts, hash: hash, using: &rng)
        case .ewma(var b): return b.pick(hosts, hash: hash, using: &rng)
        case .random(var b): return b.pick(hosts, hash: hash, using: &rng)
        case .first(var b): return b.pick(hosts, hash: hash, using: &rng)
        case .hash(var b): return b.pick(hosts, hash: hash, using: &rng)
        }
    }
}

/// A weighted random eligible host other than `excluding`, without allocating.
func weightedRandomEligible<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, excluding: Int, using rng: inout R) -> Int? {
    var total = 0
    for i in 0..<hosts.count where i != excluding && hosts.isEligible(i) { total += hosts.weight(i) }
    guard total > 0 else { return nil }
    var r = Int.random(in: 0..<total, using: &rng)
    for i in 0..<hosts.count where i != excluding && hosts.isEligible(i) {
        r -= hosts.weight(i)
        if r < 0 { return i }
    }
    return nil
}
