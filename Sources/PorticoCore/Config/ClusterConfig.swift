//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// A named group of upstream hosts and how to reach them.
public struct ClusterConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// A unique name that routes refer to. Required.
    public var name: String
    /// How a host is chosen for each request. Default `round_robin`.
    public var balancer: BalancerKind?
    /// The hosts. At least one is required.
    public var hosts: [HostConfig]
    /// Upstream timeouts.
    public var timeouts: ClusterTimeoutsConfig?
    /// The keep-alive connection pool to these hosts.
    public var pool: PoolConfig?

    public init(name: String, balancer: BalancerKind? = nil, hosts: [HostConfig] = [],
                timeouts: ClusterTimeoutsConfig? = nil, pool: PoolConfig? = nil) {
        self.name = name
        self.balancer = balancer
        self.hosts = hosts
        self.timeouts = timeouts
        self.pool = pool
    }

    public static var configPlaceholder: ClusterConfig { .init(name: "") }
}

public enum BalancerKind: String, ConfigEnum {
    /// Each host in turn, ignoring weights.
    case roundRobin = "round_robin"
    /// nginx's smooth weighted round robin: hosts in proportion to their weights, evenly interleaved.
    case weightedRoundRobin = "weighted_round_robin"
}

/// One upstream host.
public struct HostConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// `ip:port` or `hostname:port`. Required.
    public var address: String
    /// Relative share of requests under `weighted_round_robin`, 1 to 1000. Default `1`.
    public var weight: Int?

    public init(address: String, weight: Int? = nil) {
        self.address = address
        self.weight = weight
    }

    public static var configPlaceholder: HostConfig { .init(address: "") }
}

/// Upstream timeouts.
public struct ClusterTimeoutsConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// Time to establish a TCP connection; on expiry the next host is tried; when every host failed the client
    /// gets 504 if the last failure was a timeout, else 502. Default `5s`.
    public var connect: ConfigDuration?
    /// Time from the request being sent to the response head arriving; on expiry 504. Default `60s` (nginx's
    /// `proxy_read_timeout`).
    public var responseHeader: ConfigDuration?
    /// Longest silence while a response body streams; on expiry the downstream connection is closed.
    /// Default `60s`.
    public var read: ConfigDuration?
    /// How long an idle pooled connection is kept. Default `60s`.
    public var idle: ConfigDuration?

    public init(connect: ConfigDuration? = nil, responseHeader: ConfigDuration? = nil, read: ConfigDuration? = nil,
                idle: ConfigDuration? = nil) {
        self.connect = connect
        self.responseHeader = responseHeader
        self.read = read
        self.idle = idle
    }

    public static var configPlaceholder: ClusterTimeoutsConfig { .init() }
}

/// The upstream keep-alive pool, one per worker and host.
public struct PoolConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// Idle keep-alive connections kept per worker and host (nginx's `keepalive`). Default `64`; `0` disables
    /// keep-alive to upstreams.
    public var maxIdlePerHost: Int?
    /// Requests sent on one upstream connection before it is closed. Default `0` (no limit).
    public var maxRequestsPerConnection: Int?

    public init(maxIdlePerHost: Int? = nil, maxRequestsPerConnection: Int? = nil) {
        self.maxIdlePerHost = maxIdlePerHost
        self.maxRequestsPerConnection = maxRequestsPerConnection
    }

    public static var configPlaceholder: PoolConfig { .init() }
}
