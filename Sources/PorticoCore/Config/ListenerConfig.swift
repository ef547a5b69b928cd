//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// A socket Portico accepts downstream connections on.
public struct ListenerConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// A unique name, used in logs. Required.
    public var name: String
    /// `host:port` to bind, e.g. `127.0.0.1:8080`, `[::1]:8080`, `0.0.0.0:80`. Required.
    public var address: String
    /// Bind one socket per worker with SO_REUSEPORT so the kernel spreads accepts (Envoy's default). When false,
    /// one socket accepts and hands connections to workers round robin. Default `true`.
    public var reusePort: Bool?
    /// The listen backlog. Default `4096`.
    public var backlog: Int?
    /// Request limits on this listener.
    public var limits: LimitsConfig?
    /// Downstream timeouts on this listener.
    public var timeouts: ListenerTimeoutsConfig?
    /// Serve HTTPS on this listener.
    public var tls: ListenerTLSConfig?
    /// HTTP/2: offered by ALPN on TLS listeners, or spoken with prior knowledge (h2c) on plain ones.
    public var http2: HTTP2Config?
    /// Which client addresses may connect, checked when a connection is accepted (before TLS); others are
    /// closed at once.
    public var ipRules: IPRulesConfig?
    /// Connections start with a PROXY protocol header (v1 or v2, told apart by their first bytes) whose source
    /// address is the client's everywhere (logs, forwarding fields, IP rules, limits). Only peers in
    /// `trusted_ips` may connect; others are closed.
    public var proxyProtocol: ListenerProxyProtocolConfig?

    public init(name: String, address: String, reusePort: Bool? = nil, backlog: Int? = nil,
                limits: LimitsConfig? = nil, timeouts: ListenerTimeoutsConfig? = nil, tls: ListenerTLSConfig? = nil,
                http2: HTTP2Config? = nil, ipRules: IPRulesConfig? = nil) {
        self.ipRules = ipRules
        self.name = name
        self.address = address
        self.reusePort = reusePort
        self.backlog = backlog
        self.limits = limits
        self.timeouts = timeouts
        self.tls = tls
        self.http2 = http2
    }

    public static var configPlaceholder: ListenerConfig { .init(name: "", address: "") }
}

/// A listener's `proxy_protocol`.
public struct ListenerProxyProtocolConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// The load balancers allowed to connect (CIDRs). Required.
    public var trustedIps: [String]
    /// The header must arrive within this. Default `5s`.
    public var timeout: ConfigDuration?

    public init(trustedIps: [String], timeout: ConfigDuration? = nil) {
        self.trustedIps = trustedIps
        self.timeout = timeout
    }

    public static var configPlaceholder: ListenerProxyProtocolConfig { .init(trustedIps: []) }
}

/// Limits on what a downstream request may send. Exceeding one gets the status named on each field.
public struct LimitsConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// Total size of the request line and header fields. Larger requests get 431. Default `32KiB`.
    public var maxHeaderBytes: ByteSize?
    /// Size of a request body. Larger bodies get 413 (before forwarding when Content-Length says so; a chunked
    /// body that grows past it resets the exchange). Default `0`, no limit (a streaming proxy limits only where
    /// asked, as HAProxy, Caddy and Envoy); routes may set their own `max_body_bytes`.
    public var maxBodyBytes: ByteSize?
    /// Length of the request target (path and query). Longer targets get 414. Default `8KiB`.
    public var maxUriBytes: ByteSize?
    /// Requests served on one downstream connection before it is closed. Default `0` (no limit).
    public var maxRequestsPerConnection: Int?
    /// The slowest a request body may arrive, in bytes per second averaged from its start (after a 5 s grace);
    /// a slower upload gets 408 and the connection is closed (Apache's `MinRate`). Default `0` (no minimum).
    public var minBodyRate: ByteSize?
    /// Open connections on this listener; a new one beyond it is closed at once (before TLS). Default: none.
    public var maxConnections: Int?
    /// Open connections from one client address. Default: none.
    public var maxConnectionsPerIp: Int?
    /// New connections per second from one client address (bursts of one second's worth). Default: none.
    public var maxConnectionRatePerIp: Int?

    public init(maxHeaderBytes: ByteSize? = nil, maxBodyBytes: ByteSize? = nil, maxUriBytes: ByteSize? = nil,
                maxRequestsPerConnection: Int? = nil, minBodyRate: ByteSize? = nil, maxConnections: Int? = nil,
                maxConnectionsPerIp: Int? = nil, maxConnectionRatePerIp: Int? = nil) {
        self.maxConnections = maxConnections
        self.maxConnectionsPerIp = maxConnectionsPerIp
        self.maxConnectionRatePerIp = maxConnectionRatePerIp
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
        self.maxUriBytes = maxUriBytes
        self.maxRequestsPerConnection = maxRequestsPerConnection
        self.minBodyRate = minBodyRate
    }

    public static var configPlaceholder: LimitsConfig { .init() }
}

/// Downstream timeouts.
public struct ListenerTimeoutsConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// Time to receive a whole request head, from its first byte (slowloris). The client gets 408. Default `30s`.
    public var requestHeader: ConfigDuration?
    /// How long an idle keep-alive connection is kept open between requests. Default `75s` (nginx).
    public var idle: ConfigDuration?
    /// Time for a client to complete the TLS handshake, from the connection's accept (TLS listeners, HTTP/2
    /// included). A client that stalls is disconnected. Default `10s`.
    public var tlsHandshake: ConfigDuration?
    /// The longest a client may go silent while sending a request body (nginx's `client_body_timeout`). The client
    /// gets 408 and the connection is closed; the upstream is not blamed. Default `60s`.
    public var requestBody: ConfigDuration?

    public init(requestHeader: ConfigDuration? = nil, idle: ConfigDuration? = nil, tlsHandshake: ConfigDuration? = nil,
                requestBody: ConfigDuration? = nil) {
        self.requestHeader = requestHeader
        self.idle = idle
        self.tlsHandshake = tlsHandshake
        self.requestBody = requestBody
    }

    public static var configPlaceholder: ListenerTimeoutsConfig { .init() }
}

/// HTTP/2 on a listener (RFC 9113). Each stream goes through the same routes, filters and upstream pools as an
/// HTTP/1.1 request; upstreams are spoken to in HTTP/1.1.
public struct HTTP2Config: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// On a TLS listener, offer `h2` by ALPN (clients that do not pick it get HTTP/1.1). Default `true`.
    public var enabled: Bool?
    /// On a plain listener, speak HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1. Default `false`.
    public var cleartext: Bool?
    /// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). Default `100`.
    public var maxConcurrentStreams: Int?
    /// Largest header list a client may send (SETTINGS_MAX_HEADER_LIST_SIZE); HPACK bombs beyond it are refused.
    /// Default `64KiB`.
    public var maxHeaderListSize: ByteSize?
    /// Largest frame payload accepted (SETTINGS_MAX_FRAME_SIZE), 16KiB to 16MiB. Default `16KiB`.
    public var maxFrameSize: ByteSize?

    public init(enabled: Bool? = nil, cleartext: Bool? = nil, maxConcurrentStreams: Int? = nil, maxHeaderListSize: ByteSize? = nil,
                maxFrameSize: ByteSize? = nil) {
        self.enabled = enabled
        self.cleartext = cleartext
        self.maxConcurrentStreams = maxConcurrentStreams
        self.maxHeaderListSize = maxHeaderListSize
        self.maxFrameSize = maxFrameSize
    }

    public static var configPlaceholder: HTTP2Config { .init() }
}
