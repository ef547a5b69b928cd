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

    public mutating func pick<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, hash: UInt64, using rng: inout R) -> Int? {
        switch self {
        case .roundRobin(var b):
            defer { self = .roundRobin(b) }
            return b.pick(hosts, hash: hash, using: &rng)
        case .weighted(var b):
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

/// Each host in turn, skipping ineligible ones; weights are ignored.
public struct RoundRobinBalancer: LoadBalancer {
    private var cursor: Int
    private let hostCount: Int

    public init(hostCount: Int, start: Int = 0) {
        self.hostCount = hostCount
        self.cursor = hostCount == 0 ? 0 : start % hostCount
    }

    public mutating func pick<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, hash: UInt64, using rng: inout R) -> Int? {
        for _ in 0..<hosts.count {
            let i = self.cursor % hosts.count
            self.cursor = i + 1 == hosts.count ? 0 : i + 1
            if hosts.isEligible(i) { return i }
        }
        return nil
    }
}

/// nginx's smooth weighted round robin (`ngx_http_upstream_get_peer`): each pick adds every eligible host's weight
/// to its current value, chooses the largest, and subtracts the total from it. Weights {5, 1, 1} give
/// `a a b a c a a`, interleaved rather than `a a a a a b c`.
public struct SmoothWeightedRoundRobin: LoadBalancer {
    private var current: [Int]

    public init(hostCount: Int) {
        self.current = Array(repeating: 0, count: hostCount)
    }

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

/// The eligible host with the fewest in-flight requests per unit of weight; ties go to a random one of them.
/// Caddy's note applies: this counts requests, not connections, since requests are what load a host.
public struct LeastRequestBalancer: LoadBalancer {
    public init() {}

    public mutating func pick<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, hash: UInt64, using rng: inout R) -> Int? {
        var best = -1
        var bestScore = 0.0
        var ties = 0
        for i in 0..<hosts.count where hosts.isEligible(i) {
            let score = Double(hosts.inFlight(i) + 1) / Double(hosts.weight(i))
            if best < 0 || score < bestScore {
                best = i
                bestScore = score
                ties = 1
            } else if score == bestScore {
                // Reservoir sampling among equals, so equal hosts share the load.
                ties += 1
                if Int.random(in: 0..<ties, using: &rng) == 0 { best = i }
            }
        }
        return best >= 0 ? best : nil
    }
}

/// Power of two choices: two distinct eligible hosts at random (weighted), the one with fewer in-flight requests.
/// Nearly as good as least-request, without scanning every host (Mitzenmacher; Envoy's default).
public struct PowerOfTwoChoicesBalancer: LoadBalancer {
    public init() {}

    public mutating func pick<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, hash: UInt64, using rng: inout R) -> Int? {
        guard let a = weightedRandomEligible(hosts, excluding: -1, using: &rng) else { return nil }
        guard let b = weightedRandomEligible(hosts, excluding: a, using: &rng) else { return a }
        let la = Double(hosts.inFlight(a)) / Double(hosts.weight(a))
        let lb = Double(hosts.inFlight(b)) / Double(hosts.weight(b))
        return la <= lb ? a : b
    }
}

/// Peak-EWMA (Finagle, Linkerd): of two random eligible hosts, the one with the lower latency EWMA × (in-flight + 1).
/// Hosts never measured count as fast, so they get traffic and a measurement.
public struct PeakEWMABalancer: LoadBalancer {
    public init() {}

    public mutating func pick<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, hash: UInt64, using rng: inout R) -> Int? {
        guard let a = weightedRandomEligible(hosts, excluding: -1, using: &rng) else { return nil }
        guard let b = weightedRandomEligible(hosts, excluding: a, using: &rng) else { return a }
        func cost(_ i: Int) -> Double {
            Double(max(hosts.latency(i), 1)) * Double(hosts.inFlight(i) + 1) / Double(hosts.weight(i))
        }
        return cost(a) <= cost(b) ? a : b
    }
}

/// An eligible host at random, in proportion to weight.
public struct RandomBalancer: LoadBalancer {
    public init() {}

    public mutating func pick<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, hash: UInt64, using rng: inout R) -> Int? {
        weightedRandomEligible(hosts, excluding: -1, using: &rng)
    }
}

/// The first eligible host in config order: active/standby without marking hosts as backups.
public struct FirstAvailableBalancer: LoadBalancer {
    public init() {}

    public mutating func pick<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, hash: UInt64, using rng: inout R) -> Int? {
        for i in 0..<hosts.count where hosts.isEligible(i) { return i }
        return nil
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
