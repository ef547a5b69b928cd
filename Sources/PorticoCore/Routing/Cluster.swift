//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore

/// A compiled cluster: its hosts and every setting the data plane needs, defaults applied.
public final class Cluster: Sendable {
    public let index: Int
    public let name: String
    public let hosts: [UpstreamHost]
    public let balancer: BalancerKind
    public let connectTimeout: TimeAmount
    public let responseHeaderTimeout: TimeAmount
    public let readTimeout: TimeAmount
    public let idleTimeout: TimeAmount
    public let maxIdlePerHost: Int
    public let maxRequestsPerConnection: Int
    public let hashKey: HashKeyConfig
    public let stickyCookie: String?
    public let stickyMaxAge: Int64?
    public let slowStartNanos: Int64
    public let outlier: OutlierDetector?
    public let activeHealth: ActiveHealthCheckConfig?
    public let retry: RetryPolicy
    public let retryBudget = RetryBudget()
    public let hasBackups: Bool
    public let breaker: CircuitBreakerState
    public let maxConnections: Int?
    public let maxPending: Int
    public let queueTimeout: TimeAmount
    public let maxRequests: Int?
    public let dnsRefresh: TimeAmount
    /// HTTP/2 to the hosts (`h2` or `h2c`).
    public let http2: Bool
    /// A PROXY protocol header starts each connection to the hosts (which then serve one request each).
    public let proxyProtocol: ProxyProtocolVersion?
    /// Where this cluster counts in the workers' metrics (`MetricSlots`).
    public let metricSlot: Int

    init(index: Int, config: ClusterConfig, registry: HostRegistry, now: Int64) {
        self.index = index
        self.name = config.name
        self.metricSlot = registry.metricSlots.slot(.cluster, config.name)
        self.hosts = config.hosts.enumerated().map { i, h in
            let address = HostPort(parsing: h.address)!
            return UpstreamHost(
                index: i,
                address: address,
                weight: h.weight ?? 1,
                isBackup: h.backup ?? false,
                state: registry.state(for: address, cluster: config.name, now: now),
                stickyID: String(StableHash.fnv1a("portico-sticky|\(config.name)|\(address)"), radix: 16)
            )
        }
        self.hasBackups = self.hosts.contains { $0.isBackup }
        self.balancer = config.balancer ?? .roundRobin
        self.connectTimeout = .nanoseconds(config.timeouts?.connect?.nanoseconds ?? 5_000_000_000)
        self.responseHeaderTimeout = .nanoseconds(config.timeouts?.responseHeader?.nanoseconds ?? 60_000_000_000)
        self.readTimeout = .nanoseconds(config.timeouts?.read?.nanoseconds ?? 60_000_000_000)
        self.idleTimeout = .nanoseconds(config.timeouts?.idle?.nanoseconds ?? 60_000_000_000)
        self.maxIdlePerHost = config.pool?.maxIdlePerHost ?? PoolConfig.defaultMaxIdlePerHost
        self.maxRequestsPerConnection = config.pool?.maxRequestsPerConnection ?? 0
        self.hashKey = config.hash ?? HashKeyConfig(source: .clientIp)
        self.stickyCookie = config.sticky.map { $0.cookie ?? "portico_sticky" }
        self.stickyMaxAge = config.sticky?.maxAge.map { $0.nanoseconds / 1_000_000_000 }
        self.slowStartNanos = config.slowStart?.nanoseconds ?? 0
        self.outlier = config.healthCheck?.passive.map(OutlierDetector.init)
        self.activeHealth = config.healthCheck?.active
        self.retry = RetryPolicy(config.retries)
        self.breaker = registry.breaker(forCluster: config.name)
        self.maxConnections = config.circuitBreaker?.maxConnections
        self.maxPending = config.circuitBreaker?.maxPending ?? 0
        self.queueTimeout = .nanoseconds(config.circuitBreaker?.queueTimeout?.nanoseconds ?? 1_000_000_000)
        self.maxRequests = config.circuitBreaker?.maxRequests
        self.dnsRefresh = .nanoseconds(config.dnsRefresh?.nanoseconds ?? 30_000_000_000)
        self.http2 = config.protocol == .h2 || config.protocol == .h2c
        self.proxyProtocol = config.proxyProtocol
    }

    /// A fresh balancer for one worker (each worker keeps its own cursor: no cross-core atomics). Round robin
    /// starts at a different host on each worker so that workers do not move in step.
    public func makeBalancer(worker: Int = 0) -> LoadBalancerState {
        LoadBalancerState(kind: self.balancer, hostCount: self.hosts.count, weights: self.hosts.map(\.weight), start: worker)
    }

    /// Hosts ejected by outlier detection right now.
    public func ejectedCount(now: Int64) -> Int {
        self.hosts.reduce(0) { $0 + ($1.state.isEjected(now: now) ? 1 : 0) }
    }
}

/// One upstream host of a cluster.
public struct UpstreamHost: Sendable {
    public let index: Int
    public let address: HostPort
    public let weight: Int
    public let isBackup: Bool
    /// Shared across workers and config generations.
    public let state: HostState
    /// What the sticky cookie holds: a stable, opaque name for the host (not its address).
    public let stickyID: String
    /// `host:port` as it appears in an absolute URL, for the Host header and Location rewriting.
    public let authority: String

    public init(index: Int, address: HostPort, weight: Int, isBackup: Bool = false, state: HostState, stickyID: String) {
        self.index = index
        self.address = address
        self.weight = weight
        self.isBackup = isBackup
        self.state = state
        self.stickyID = stickyID
        self.authority = address.description
    }
}
