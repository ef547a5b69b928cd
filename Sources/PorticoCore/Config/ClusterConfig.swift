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
    /// The key for `balancer: consistent_hash`. Default: the client IP.
    public var hash: HashKeyConfig?
    /// Pin a client to the host that served it with a cookie naming that host (opaquely), while it is healthy.
    public var sticky: StickyConfig?
    /// Active and passive health checking.
    public var healthCheck: HealthCheckConfig?
    /// A host that becomes healthy (or joins) receives a share of traffic that grows linearly from 10% to its full
    /// weight over this window (Envoy/HAProxy slow start). Default: off.
    public var slowStart: ConfigDuration?
    /// When and how failed requests are tried again on another host.
    public var retries: RetryConfig?
    /// Limits that protect the hosts from overload; requests over them get 503 with Retry-After.
    public var circuitBreaker: CircuitBreakerConfig?
    /// Speak HTTPS to the hosts.
    public var tls: UpstreamTLSConfig?
    /// The protocol spoken to the hosts: `http1` (default), `h2` (HTTP/2 over TLS; needs `tls`) or `h2c` (HTTP/2
    /// with prior knowledge). HTTP/2 multiplexes every request of a worker to a host over one connection.
    public var `protocol`: UpstreamProtocol?
    /// How often hosts given by name are resolved again. The system resolver does not report TTLs, so this
    /// interval stands in for them; a failed resolution keeps the last good addresses. Default `30s`.
    public var dnsRefresh: ConfigDuration?
    /// Send a PROXY protocol header (`v1` or `v2`) on each connection to the hosts, carrying the client's
    /// address. Such a connection belongs to one client, so it serves one request and is not pooled (HAProxy's
    /// connections with `send-proxy` are private too). Default: none.
    public var proxyProtocol: ProxyProtocolVersion?

    public init(name: String, balancer: BalancerKind? = nil, hosts: [HostConfig] = [],
                timeouts: ClusterTimeoutsConfig? = nil, pool: PoolConfig? = nil, hash: HashKeyConfig? = nil,
                sticky: StickyConfig? = nil, healthCheck: HealthCheckConfig? = nil, slowStart: ConfigDuration? = nil,
                retries: RetryConfig? = nil, circuitBreaker: CircuitBreakerConfig? = nil, dnsRefresh: ConfigDuration? = nil,
                tls: UpstreamTLSConfig? = nil, protocol: UpstreamProtocol? = nil) {
        self.name = name
        self.balancer = balancer
        self.hosts = hosts
        self.timeouts = timeouts
        self.pool = pool
        self.hash = hash
        self.sticky = sticky
        self.healthCheck = healthCheck
        self.slowStart = slowStart
        self.retries = retries
        self.circuitBreaker = circuitBreaker
        self.dnsRefresh = dnsRefresh
        self.tls = tls
        self.protocol = `protocol`
    }

    public static var configPlaceholder: ClusterConfig { .init(name: "") }
}

public enum BalancerKind: String, ConfigEnum {
    /// Each host in turn, ignoring weights.
    case roundRobin = "round_robin"
    /// nginx's smooth weighted round robin: hosts in proportion to their weights, evenly interleaved.
    case weightedRoundRobin = "weighted_round_robin"
    /// The host with the fewest in-flight requests relative to its weight (ties broken at random).
    case leastRequest = "least_request"
    /// Power of two choices: two hosts at random, the one with fewer in-flight requests (Envoy's default).
    case p2c
    /// Peak-EWMA: the lowest (latency EWMA × (in-flight + 1)) of two random hosts (Finagle, Linkerd).
    case ewma
    /// Uniformly at random, weighted.
    case random
    /// The first available host in config order (active/standby).
    case first
    /// A hash ring (Ketama, 160 points per unit of weight) keyed by `hash`; when one of N hosts leaves, about 1/N
    /// of keys move.
    case consistentHash = "consistent_hash"
}

/// What `consistent_hash` hashes.
public struct HashKeyConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// `client_ip` (default), `header`, `cookie` or `uri` (path and query).
    public var source: HashSource
    /// The header or cookie name, for `header` and `cookie`.
    public var name: String?

    public init(source: HashSource, name: String? = nil) {
        self.source = source
        self.name = name
    }

    public static var configPlaceholder: HashKeyConfig { .init(source: .clientIp) }
}

public enum HashSource: String, ConfigEnum {
    case clientIp = "client_ip"
    case header
    case cookie
    case uri
}

/// Sticky sessions by cookie.
public struct StickyConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// The cookie's name. Default `portico_sticky`.
    public var cookie: String?
    /// The cookie's Max-Age. Default: a session cookie.
    public var maxAge: ConfigDuration?

    public init(cookie: String? = nil, maxAge: ConfigDuration? = nil) {
        self.cookie = cookie
        self.maxAge = maxAge
    }

    public static var configPlaceholder: StickyConfig { .init() }
}

/// Health checking: `active` probes and `passive` outlier detection; either or both.
public struct HealthCheckConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    public var active: ActiveHealthCheckConfig?
    public var passive: PassiveHealthCheckConfig?

    public init(active: ActiveHealthCheckConfig? = nil, passive: PassiveHealthCheckConfig? = nil) {
        self.active = active
        self.passive = passive
    }

    public static var configPlaceholder: HealthCheckConfig { .init() }
}

/// Probes sent to every host on a timer, off the request path.
public struct ActiveHealthCheckConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// `http` (default) or `tcp` (a connect is enough).
    public var type: HealthCheckType?
    /// Path of the HTTP probe. Default `/`.
    public var path: String?
    /// Method of the HTTP probe. Default `GET`.
    public var method: String?
    /// Host header of the HTTP probe. Default: the host's address.
    public var host: String?
    /// Statuses that count as healthy, `200-399` (default), `200` or a list `200,204`.
    public var expectStatus: String?
    /// A substring the body must contain (first 64 KiB). Default: not checked.
    public var expectBody: String?
    /// Time between probes of one host. Default `5s`.
    public var interval: ConfigDuration?
    /// Random extra delay added to each interval, up to this. Default: 10% of `interval`.
    public var jitter: ConfigDuration?
    /// A probe that takes longer fails. Default `2s`.
    public var timeout: ConfigDuration?
    /// Consecutive passing probes that make an unhealthy host healthy. Default `2`.
    public var healthyThreshold: Int?
    /// Consecutive failing probes that make a healthy host unhealthy. Default `3`.
    public var unhealthyThreshold: Int?

    public init(type: HealthCheckType? = nil, path: String? = nil, method: String? = nil, host: String? = nil,
                expectStatus: String? = nil, expectBody: String? = nil, interval: ConfigDuration? = nil,
                jitter: ConfigDuration? = nil, timeout: ConfigDuration? = nil, healthyThreshold: Int? = nil,
                unhealthyThreshold: Int? = nil) {
        self.type = type
        self.path = path
        self.method = method
        self.host = host
        self.expectStatus = expectStatus
        self.expectBody = expectBody
        self.interval = interval
        self.jitter = jitter
        self.timeout = timeout
        self.healthyThreshold = healthyThreshold
        self.unhealthyThreshold = unhealthyThreshold
    }

    public static var configPlaceholder: ActiveHealthCheckConfig { .init() }
}

public enum HealthCheckType: String, ConfigEnum {
    case http
    case tcp
}

/// Outlier detection from live traffic (Envoy): consecutive failures eject a host for a time that grows with
/// each ejection.
public struct PassiveHealthCheckConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// Consecutive failures (connect failures, timeouts, resets, and `failure_statuses`) that eject a host.
    /// Default `5`.
    public var consecutiveFailures: Int?
    /// Responses with these statuses count as failures. Default `[502, 503, 504]`.
    public var failureStatuses: [Int]?
    /// First ejection time; the n-th ejection in a row lasts n times this, up to 10 times (the count starts over
    /// after 10 base times without an ejection). Default `30s`.
    public var baseEjectionTime: ConfigDuration?
    /// At most this share of the cluster's hosts is ejected at once, so some keep serving. Default `50`.
    public var maxEjectionPercent: Int?

    public init(consecutiveFailures: Int? = nil, failureStatuses: [Int]? = nil, baseEjectionTime: ConfigDuration? = nil,
                maxEjectionPercent: Int? = nil) {
        self.consecutiveFailures = consecutiveFailures
        self.failureStatuses = failureStatuses
        self.baseEjectionTime = baseEjectionTime
        self.maxEjectionPercent = maxEjectionPercent
    }

    public static var configPlaceholder: PassiveHealthCheckConfig { .init() }
}

/// Retries (Envoy `retry_policy`, Pingora's safety rules): never once the response has started downstream, never to
/// the same host while another is available, idempotent methods only unless `methods: all`.
public struct RetryConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// What is retried: `connect_failure`, `reset` (closed before a response), `timeout` (no response head in
    /// time), and statuses `502`, `503`, `504`. Default `[connect_failure]`.
    public var retryOn: [String]?
    /// Retries after the first try. Default `2`.
    public var maxRetries: Int?
    /// Response-header timeout of each try. Default: the cluster's `timeouts.response_header`.
    public var perTryTimeout: ConfigDuration?
    /// First backoff; each further retry doubles it (with full jitter), up to `backoff_max`. Default `25ms`.
    public var backoffBase: ConfigDuration?
    /// Default `250ms`.
    public var backoffMax: ConfigDuration?
    /// Retries in flight may be at most this percentage of requests in flight (at least 3 are always allowed).
    /// Default `20`.
    public var budgetPercent: Int?
    /// `idempotent` (default: GET, HEAD, OPTIONS, TRACE, PUT, DELETE) or `all`.
    public var methods: RetryMethods?

    public init(retryOn: [String]? = nil, maxRetries: Int? = nil, perTryTimeout: ConfigDuration? = nil,
                backoffBase: ConfigDuration? = nil, backoffMax: ConfigDuration? = nil, budgetPercent: Int? = nil,
                methods: RetryMethods? = nil) {
        self.retryOn = retryOn
        self.maxRetries = maxRetries
        self.perTryTimeout = perTryTimeout
        self.backoffBase = backoffBase
        self.backoffMax = backoffMax
        self.budgetPercent = budgetPercent
        self.methods = methods
    }

    public static var configPlaceholder: RetryConfig { .init() }
}

public enum UpstreamProtocol: String, ConfigEnum {
    case http1
    case h2
    case h2c
}

/// TLS to upstream hosts. The settings are part of the connection pool's key: connections made with other
/// settings are never reused for these.
public struct UpstreamTLSConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// CA bundle (PEM) the hosts' certificates must chain to. Default: the system's trust store.
    public var caFile: String?
    /// SNI name sent, and the name the certificate is verified against. Default: the host's name (for an IP
    /// address, no SNI is sent and the certificate must name the address).
    public var serverName: String?
    /// Verify the hosts' certificates. Default `true`; `false` is for testing only.
    public var verify: Bool?
    /// A client certificate chain (PEM) to present (mTLS to the upstream), with `key_file`.
    public var certFile: String?
    /// The client certificate's private key (PEM).
    public var keyFile: String?

    public init(caFile: String? = nil, serverName: String? = nil, verify: Bool? = nil, certFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.serverName = serverName
        self.verify = verify
        self.certFile = certFile
        self.keyFile = keyFile
    }

    public static var configPlaceholder: UpstreamTLSConfig { .init() }
}

/// Circuit breaking (Envoy's cluster circuit breakers), counted across all workers.
public struct CircuitBreakerConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// Connections open to the cluster's hosts at most. Default: no limit.
    public var maxConnections: Int?
    /// Requests waiting for a connection when `max_connections` is reached, at most; more get 503 at once.
    /// Default `0` (no queue).
    public var maxPending: Int?
    /// How long a request may wait in that queue before it gets 503. Default `1s`.
    public var queueTimeout: ConfigDuration?
    /// Requests in flight to the cluster at most. Default: no limit.
    public var maxRequests: Int?

    public init(maxConnections: Int? = nil, maxPending: Int? = nil, queueTimeout: ConfigDuration? = nil, maxRequests: Int? = nil) {
        self.maxConnections = maxConnections
        self.maxPending = maxPending
        self.queueTimeout = queueTimeout
        self.maxRequests = maxRequests
    }

    public static var configPlaceholder: CircuitBreakerConfig { .init() }
}

public enum RetryMethods: String, ConfigEnum {
    case idempotent
    case all
}

/// One upstream host.
public struct HostConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// `ip:port` or `hostname:port`. Required.
    public var address: String
    /// Relative share of requests under the weighted balancers, 1 to 1000. Default `1`.
    public var weight: Int?
    /// A backup host receives traffic only when no primary host is available. Default `false`.
    public var backup: Bool?

    public init(address: String, weight: Int? = nil, backup: Bool? = nil) {
        self.address = address
        self.weight = weight
        self.backup = backup
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
    /// Idle keep-alive connections kept per worker and host (nginx's `keepalive`). Default `1024`; `0` disables
    /// keep-alive to upstreams.
    ///
    /// The default is high on purpose: idle connections only exist because that many requests were in flight a
    /// moment ago, and the idle timeout closes them once traffic falls. A low cap (nginx's usual 64) makes every
    /// burst above it open and close connections: with 160 HTTP/2 streams in flight, a cap of 64 spent 12% of
    /// the worker's CPU on connect and close. HAProxy and Envoy keep idle connections without a count limit.
    public var maxIdlePerHost: Int?
    public static let defaultMaxIdlePerHost = 1024
    /// Requests sent on one upstream connection before it is closed. Default `0` (no limit).
    public var maxRequestsPerConnection: Int?

    public init(maxIdlePerHost: Int? = nil, maxRequestsPerConnection: Int? = nil) {
        self.maxIdlePerHost = maxIdlePerHost
        self.maxRequestsPerConnection = maxRequestsPerConnection
    }

    public static var configPlaceholder: PoolConfig { .init() }
}

public enum ProxyProtocolVersion: String, ConfigEnum {
    case v1
    case v2
}
