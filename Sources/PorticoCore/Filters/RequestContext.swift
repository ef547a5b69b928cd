//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore
public import NIOHTTP1

/// What filters know about one request (Pingora's `CTX`): set by Portico before the first phase and kept,
/// with the filters' changes, until the `log` phase. Lives in the request's exchange, on its EventLoop.
public struct RequestContext: Sendable {
    /// The client's address (after `trusted_proxies`), as text.
    public var clientIP: String
    /// Whether the peer is a trusted proxy, so its forwarding fields may be extended rather than replaced.
    public var clientTrusted: Bool
    /// "http" or "https": the scheme the client used.
    public var scheme: String
    /// The host the client asked for (Host or the absolute-form authority), as sent.
    public var host: String?
    public var listener: String
    public var route: String
    /// The request target as the client sent it.
    public var uri: String
    /// The request's method as the client sent it.
    public var method: HTTPMethod
    /// The request's fields as the client sent them (before any filter changed the head), for filters that
    /// decide about the response by the request (`Accept-Encoding`, `Vary`) even when an earlier filter answered.
    public var requestHeaders: HTTPHeaders = [:]
    /// The verified client certificate of an mTLS listener, when the listener forwards identity fields.
    public var clientCertificate: ClientIdentity?
    /// The cluster the request was sent to, once routed to one.
    public var cluster: String?
    /// The upstream host that answered (`host:port`), once one was chosen.
    public var upstreamAuthority: String?
    /// The response status, once a response started.
    public var status: Int = 0
    /// The request's ID (`X-Request-ID`), when `forwarding.request_id` is on.
    public var requestID: String?
    /// The rate limit that refused the request (its name), for metrics and logs.
    public var rateLimited: String?
    /// The route's `ip_rules` refused the client.
    public var ipDenied = false
    /// Who the route's `auth` found the client to be, for later filters (rate limits keyed by a claim) and logs.
    public var identity: (any AuthIdentity)?
    /// Why the route's `auth` refused the request (`jwt:expired`, `basic:bad_password`), for metrics and logs.
    public var authFailure: String?
    /// What a route's cache did with the request, for metrics and logs (nil: no cache on the route).
    public var cacheOutcome: CacheOutcome?
    /// Set by a filter in `responseHead` when others depend on this response's body (a cache fill that collapsed
    /// requests stream from): the upstream response is read to its end at the upstream's pace, whatever this
    /// request's client does (reads slowly, goes away), as nginx finishes a response it is caching. The filter
    /// must only set it for a body of bounded size.
    public var completesUpstreamResponse = false
    /// The request's EventLoop (the connection's): where a filter makes the promise it suspends on.
    public var eventLoop: (any EventLoop)?
    /// Requests a filter may make of a cluster (forward auth), through the worker's pools.
    public var subrequests: (any SubrequestClient)?

    public struct ClientIdentity: Sendable, Hashable {
        public var subject: String
        public var sha256: String
        public init(subject: String, sha256: String) {
            self.subject = subject
            self.sha256 = sha256
        }
    }

    /// What filters keep between phases for this request, by key (`RequestContextKey`). Empty, and allocation-free,
    /// until a filter stores something.
    private var filterValues: [(key: ObjectIdentifier, value: any Sendable)] = []

    /// The value a filter stored under `key` for this request (a compressor, a cache entry being filled), or nil.
    /// Filters are shared by every request of a route; what belongs to one request lives here.
    public subscript<Key: RequestContextKey>(_ key: Key.Type) -> Key.Value? {
        get {
            let id = ObjectIdentifier(key)
            for entry in self.filterValues where entry.key == id { return entry.value as? Key.Value }
            return nil
        }
        set {
            let id = ObjectIdentifier(key)
            if let i = self.filterValues.firstIndex(where: { $0.key == id }) {
                if let newValue { self.filterValues[i].value = newValue } else { self.filterValues.remove(at: i) }
            } else if let newValue {
                self.filterValues.append((id, newValue))
            }
        }
    }

    public init(clientIP: String, clientTrusted: Bool, scheme: String, host: String?, listener: String, route: String, uri: String,
                method: HTTPMethod = .GET) {
        self.method = method
        self.clientIP = clientIP
        self.clientTrusted = clientTrusted
        self.scheme = scheme
        self.host = host
        self.listener = listener
        self.route = route
        self.uri = uri
    }
}

/// A key for a filter's per-request value in `RequestContext` (as swift-service-context's keys): usually the
/// filter's own nested type, so no other filter can read or overwrite it.
/// A client an auth filter verified: a user of an htpasswd file, the claims of a token.
public protocol AuthIdentity: Sendable {
    /// The user name (Basic) or `sub` claim (JWT).
    var user: String? { get }
    /// A claim's value as text (`RateLimitFilter`'s `claim:NAME` keys); Basic users have `sub`.
    func claim(_ name: String) -> String?
}

public protocol RequestContextKey {
    associatedtype Value: Sendable
}

/// What a cache did with one request.
public enum CacheOutcome: UInt8, Sendable, CaseIterable {
    /// Answered from the cache (fresh, or stale where allowed).
    case hit
    /// Nothing usable stored: forwarded.
    case miss
    /// A stored response was validated with the origin (a 304, or a new response replacing it).
    case revalidated
    /// A stale response answered because the origin failed (RFC 5861 `stale-if-error`).
    case staleOnError
    /// Not cacheable by method: forwarded (and may invalidate).
    case bypass

    public var label: String {
        switch self {
        case .hit: "hit"
        case .miss: "miss"
        case .revalidated: "revalidated"
        case .staleOnError: "stale_on_error"
        case .bypass: "bypass"
        }
    }
}
