//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// How Portico tells upstreams who the client is, and hides what the upstream is from clients.
public struct ForwardingConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// Append the client address to X-Forwarded-For. An incoming value is kept only from a trusted proxy;
    /// otherwise it is replaced. Default `true`.
    public var xForwardedFor: Bool?
    /// Set X-Forwarded-Proto to the downstream scheme (kept from a trusted proxy). Default `true`.
    public var xForwardedProto: Bool?
    /// Set X-Forwarded-Host to the downstream Host (kept from a trusted proxy). Default `true`.
    public var xForwardedHost: Bool?
    /// Set X-Real-IP to the client address (nginx's realip convention). Default `false`.
    public var xRealIp: Bool?
    /// Append an RFC 7239 Forwarded element (`for=…;proto=…;host=…`). Default `false`.
    public var forwarded: Bool?
    /// Add `Via: 1.1 <via>` to requests and responses (RFC 9110 §7.6.3); empty turns it off. Default `portico`.
    public var via: String?
    /// Peers (CIDR, e.g. `10.0.0.0/8`, `::1/128`) whose X-Forwarded-* and Forwarded headers are believed.
    /// Default: none.
    public var trustedProxies: [String]?
    /// What to do with the upstream's Server header: `remove` (default), `keep`, or any other text to send
    /// instead.
    public var serverHeader: String?
    /// Response headers removed before the response goes downstream, to mask the upstream. Default
    /// `["X-Powered-By"]`.
    public var hideResponseHeaders: [String]?
    /// Rewrite Location and Content-Location headers that point at an upstream host's address to the public
    /// host and scheme the client used (nginx's `proxy_redirect default`). Default `true`.
    public var rewriteLocation: Bool?
    /// A request ID in `X-Request-ID`: a trusted proxy's is kept, otherwise one is made (32 hex digits); it goes
    /// upstream, back to the client, and into the access log. Default `true`.
    public var requestId: Bool?

    public init(xForwardedFor: Bool? = nil, xForwardedProto: Bool? = nil, xForwardedHost: Bool? = nil,
                xRealIp: Bool? = nil, forwarded: Bool? = nil, via: String? = nil, trustedProxies: [String]? = nil,
                serverHeader: String? = nil, hideResponseHeaders: [String]? = nil, rewriteLocation: Bool? = nil,
                requestId: Bool? = nil) {
        self.requestId = requestId
        self.xForwardedFor = xForwardedFor
        self.xForwardedProto = xForwardedProto
        self.xForwardedHost = xForwardedHost
        self.xRealIp = xRealIp
        self.forwarded = forwarded
        self.via = via
        self.trustedProxies = trustedProxies
        self.serverHeader = serverHeader
        self.hideResponseHeaders = hideResponseHeaders
        self.rewriteLocation = rewriteLocation
    }

    public static var configPlaceholder: ForwardingConfig { .init() }
}
