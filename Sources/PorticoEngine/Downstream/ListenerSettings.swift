//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import PorticoCore

/// A listener's compiled settings, defaults applied. Read by each new downstream connection when it is accepted;
/// a reload replaces it for connections accepted afterwards.
public struct ListenerSettings: Sendable {
    public var name: String
    public var address: HostPort
    public var reusePort: Bool
    public var backlog: Int
    public var scheme: String
    public var maxHeaderBytes: Int
    /// 0 means no limit.
    public var maxBodyBytes: Int
    public var maxURIBytes: Int
    public var maxRequestsPerConnection: Int
    public var requestHeaderTimeout: TimeAmount
    public var idleTimeout: TimeAmount
    public var tlsHandshakeTimeout: TimeAmount
    public var requestBodyTimeout: TimeAmount
    /// Bytes per second; 0: no minimum.
    public var minBodyRate: Int
    /// TLS termination, when the listener has `tls`.
    public var tls: ListenerTLS?
    /// `h2` offered by ALPN (TLS listeners).
    public var http2: Bool
    /// HTTP/2 with prior knowledge (plain listeners).
    public var h2c: Bool
    public var maxConcurrentStreams: Int
    public var maxHeaderListSize: Int
    public var maxFrameSize: Int
    /// The listener's filters (HSTS, mTLS identity fields), run after the global ones and before the route's.
    public var filters: FilterChain
    /// Where this listener counts in the workers' metrics (`MetricSlots`).
    public var metricSlot = 0
    /// Client addresses allowed to connect (nil: any).
    public var ipRules: IPRules?
    /// Connection caps, and the counts behind them (shared by the workers, kept across reloads by the engine).
    public var connectionLimits: ConnectionLimiter.Limits
    public var connectionLimiter = ConnectionLimiter()
    /// Connections start with a PROXY protocol header, from these peers only.
    public var proxyProtocol: (trusted: [CIDR], timeout: TimeAmount)?

    public init(_ c: ListenerConfig, tls: ListenerTLS? = nil) {
        self.ipRules = c.ipRules.map(IPRules.init).flatMap { $0.isEmpty ? nil : $0 }
        self.proxyProtocol = c.proxyProtocol.map {
            ($0.trustedIps.compactMap(CIDR.init(parsing:)), .nanoseconds($0.timeout?.nanoseconds ?? 5_000_000_000))
        }
        self.connectionLimits = ConnectionLimiter.Limits(
            maxConnections: c.limits?.maxConnections ?? 0, maxPerAddress: c.limits?.maxConnectionsPerIp ?? 0,
            ratePerAddress: c.limits?.maxConnectionRatePerIp ?? 0)
        self.name = c.name
        self.address = HostPort(parsing: c.address)!
        self.reusePort = c.reusePort ?? true
        self.backlog = c.backlog ?? 4096
        self.scheme = tls == nil ? "http" : "https"
        self.tls = tls
        self.http2 = tls != nil && (c.http2?.enabled ?? true)
        self.h2c = tls == nil && (c.http2?.cleartext ?? false)
        self.maxConcurrentStreams = c.http2?.maxConcurrentStreams ?? 100
        self.maxHeaderListSize = c.http2?.maxHeaderListSize?.bytes ?? 64 * 1024
        self.maxFrameSize = c.http2?.maxFrameSize?.bytes ?? 16384
        self.maxHeaderBytes = c.limits?.maxHeaderBytes?.bytes ?? 32 * 1024
        self.maxBodyBytes = c.limits?.maxBodyBytes?.bytes ?? 0  // unlimited, as HAProxy, Caddy and Envoy
        self.maxURIBytes = c.limits?.maxUriBytes?.bytes ?? 8 * 1024
        self.maxRequestsPerConnection = c.limits?.maxRequestsPerConnection ?? 0
        self.requestHeaderTimeout = .nanoseconds(c.timeouts?.requestHeader?.nanoseconds ?? 30_000_000_000)
        self.idleTimeout = .nanoseconds(c.timeouts?.idle?.nanoseconds ?? 75_000_000_000)
        self.tlsHandshakeTimeout = .nanoseconds(c.timeouts?.tlsHandshake?.nanoseconds ?? 10_000_000_000)
        self.requestBodyTimeout = .nanoseconds(c.timeouts?.requestBody?.nanoseconds ?? 60_000_000_000)
        self.minBodyRate = c.limits?.minBodyRate?.bytes ?? 0
        var filters: [any ProxyFilter] = []
        if let hsts = tls?.hstsValue { filters.append(HSTSFilter(value: hsts)) }
        if let subject = tls?.clientSubjectHeader, let fingerprint = tls?.clientFingerprintHeader {
            filters.append(ClientIdentityFilter(subjectField: subject, fingerprintField: fingerprint))
        }
        self.filters = FilterChain(filters)
    }

    /// Two listeners share a socket across a reload when this is equal (Caddy's listener pool).
    /// With port 0 (any free port) the listener's name keeps two such listeners apart.
    var socketIdentity: String { "\(self.address.port == 0 ? self.name + "@" : "")\(self.address)|\(self.reusePort)|\(self.backlog)|\(self.tls == nil ? "http" : "https")|\(self.h2c)" }
}
