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

    init(index: Int, config: ClusterConfig) {
        self.index = index
        self.name = config.name
        self.hosts = config.hosts.enumerated().map { i, h in
            UpstreamHost(index: i, address: HostPort(parsing: h.address)!, weight: h.weight ?? 1)
        }
        self.balancer = config.balancer ?? .roundRobin
        self.connectTimeout = .nanoseconds(config.timeouts?.connect?.nanoseconds ?? 5_000_000_000)
        self.responseHeaderTimeout = .nanoseconds(config.timeouts?.responseHeader?.nanoseconds ?? 60_000_000_000)
        self.readTimeout = .nanoseconds(config.timeouts?.read?.nanoseconds ?? 60_000_000_000)
        self.idleTimeout = .nanoseconds(config.timeouts?.idle?.nanoseconds ?? 60_000_000_000)
        self.maxIdlePerHost = config.pool?.maxIdlePerHost ?? 64
        self.maxRequestsPerConnection = config.pool?.maxRequestsPerConnection ?? 0
    }

    /// A fresh balancer for one worker (each worker keeps its own cursor: no cross-core atomics).
    public func makeBalancer() -> LoadBalancerState {
        switch self.balancer {
        case .roundRobin: return .roundRobin(RoundRobinBalancer(hostCount: self.hosts.count))
        case .weightedRoundRobin: return .weighted(SmoothWeightedRoundRobin(weights: self.hosts.map(\.weight)))
        }
    }
}

/// One upstream host of a cluster.
public struct UpstreamHost: Sendable, Hashable {
    public let index: Int
    public let address: HostPort
    public let weight: Int
    /// `host:port` as it appears in an absolute URL, for the Host header and Location rewriting.
    public let authority: String

    public init(index: Int, address: HostPort, weight: Int) {
        self.index = index
        self.address = address
        self.weight = weight
        self.authority = address.description
    }
}
