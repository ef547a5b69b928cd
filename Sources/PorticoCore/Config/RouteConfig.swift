//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// A route: what requests it matches, and one action: proxy to `cluster`, `redirect`, or a fixed `respond`.
public struct RouteConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// A name for logs. Default: `route-N` (its position).
    public var name: String?
    /// What requests this route takes. Default: every request.
    public var match: RouteMatchConfig?
    /// Proxy matching requests to this cluster.
    public var cluster: String?
    /// Answer with a redirect instead of proxying.
    public var redirect: RedirectConfig?
    /// Answer with a fixed response instead of proxying.
    public var respond: FixedResponseConfig?
    /// Header changes made to the request before it goes upstream.
    public var requestHeaders: HeaderRulesConfig?
    /// Header changes made to the response before it goes downstream.
    public var responseHeaders: HeaderRulesConfig?
    /// The Host header sent upstream: `keep` the client's (default, as Caddy) or `upstream` (the host's address,
    /// as nginx's default `proxy_set_header Host $proxy_host`).
    public var hostHeader: HostHeaderMode?
    /// Compress responses for clients that accept it (`compression: {}` for the defaults). Off by default.
    public var compression: CompressionConfig?
    /// Cache responses (RFC 9111) in the process's `cache_storage` (`cache: {}` for the defaults). Off by default.
    public var cache: CacheConfig?
    /// Which client addresses the route serves; others get 403.
    public var ipRules: IPRulesConfig?
    /// The largest request body this route takes (413 beyond it), on top of the listener's limit. Default: none.
    public var maxBodyBytes: ByteSize?
    /// Request rate limits, each with its own key; the first one over answers 429. Default: none.
    public var rateLimits: [RateLimitConfig]?
    /// Pages for the answers Portico gives on this route, by status code (before the global `error_pages`).
    public var errorPages: [String: String]?
    /// Who may use the route: Basic, JWT or forward authentication. Default: anyone.
    public var auth: AuthConfig?

    public init(name: String? = nil, match: RouteMatchConfig? = nil, cluster: String? = nil,
                redirect: RedirectConfig? = nil, respond: FixedResponseConfig? = nil,
                requestHeaders: HeaderRulesConfig? = nil, responseHeaders: HeaderRulesConfig? = nil,
                hostHeader: HostHeaderMode? = nil, compression: CompressionConfig? = nil, cache: CacheConfig? = nil,
                ipRules: IPRulesConfig? = nil, maxBodyBytes: ByteSize? = nil, rateLimits: [RateLimitConfig]? = nil) {
        self.rateLimits = rateLimits
        self.ipRules = ipRules
        self.maxBodyBytes = maxBodyBytes
        self.compression = compression
        self.cache = cache
        self.name = name
        self.match = match
        self.cluster = cluster
        self.redirect = redirect
        self.respond = respond
        self.requestHeaders = requestHeaders
        self.responseHeaders = responseHeaders
        self.hostHeader = hostHeader
    }

    public static var configPlaceholder: RouteConfig { .init() }
}

public enum HostHeaderMode: String, ConfigEnum {
    case keep
    case upstream
}

/// Conditions a request must meet, all of them, for the route to take it.
public struct RouteMatchConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// Host names, exact (`app.example.com`) or wildcard (`*.example.org`, any depth of subdomain). Compared
    /// without case and without port. Default: any host.
    public var hosts: [String]?
    /// The path starts with this (`/api/`). Mutually exclusive with `path`.
    public var pathPrefix: String?
    /// The path (without query) is exactly this. Mutually exclusive with `path_prefix`.
    public var path: String?
    /// The method is one of these (`GET`, `POST`, …). Default: any method.
    public var methods: [String]?
    /// Every listed header condition holds.
    public var headers: [HeaderMatchConfig]?
    /// Only requests that arrived on these listeners (by name), e.g. to redirect a plain listener to HTTPS.
    /// Default: every listener.
    public var listeners: [String]?

    public init(hosts: [String]? = nil, pathPrefix: String? = nil, path: String? = nil, methods: [String]? = nil,
                headers: [HeaderMatchConfig]? = nil, listeners: [String]? = nil) {
        self.listeners = listeners
        self.hosts = hosts
        self.pathPrefix = pathPrefix
        self.path = path
        self.methods = methods
        self.headers = headers
    }

    public static var configPlaceholder: RouteMatchConfig { .init() }
}

/// A condition on one request header. With neither `value` nor `present`, the header must be present.
public struct HeaderMatchConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// Header name, compared without case. Required.
    public var name: String
    /// The header's value equals this exactly.
    public var value: String?
    /// `true`: the header is present; `false`: it is absent.
    public var present: Bool?

    public init(name: String, value: String? = nil, present: Bool? = nil) {
        self.name = name
        self.value = value
        self.present = present
    }

    public static var configPlaceholder: HeaderMatchConfig { .init(name: "") }
}

/// A redirect response.
public struct RedirectConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// 301, 302, 303, 307 or 308. Default `301`.
    public var status: Int?
    /// The Location. `$scheme`, `$host` and `$request_uri` are replaced by the request's (e.g.
    /// `https://$host$request_uri`). Required.
    public var target: String

    public init(status: Int? = nil, target: String) {
        self.status = status
        self.target = target
    }

    public static var configPlaceholder: RedirectConfig { .init(target: "") }
}

/// A fixed response.
public struct FixedResponseConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// The status code. Default `200`.
    public var status: Int?
    /// The body. Default: empty.
    public var body: String?
    /// The Content-Type. Default `text/plain; charset=utf-8` when there is a body.
    public var contentType: String?

    public init(status: Int? = nil, body: String? = nil, contentType: String? = nil) {
        self.status = status
        self.body = body
        self.contentType = contentType
    }

    public static var configPlaceholder: FixedResponseConfig { .init() }
}

/// Header changes, applied in the order remove, set, add.
public struct HeaderRulesConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// Replace (or create) these headers.
    public var set: [String: String]?
    /// Append these headers, keeping existing values.
    public var add: [String: String]?
    /// Remove these headers.
    public var remove: [String]?

    public init(set: [String: String]? = nil, add: [String: String]? = nil, remove: [String]? = nil) {
        self.set = set
        self.add = add
        self.remove = remove
    }

    public static var configPlaceholder: HeaderRulesConfig { .init() }
}
