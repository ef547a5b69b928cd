//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// A route's `auth`: who may use it, checked before the cache and the upstream. Exactly one of `basic`, `jwt` or
/// `forward`. A refused request never reaches the upstream; the fields the check sets upstream (`user_header`,
/// `forward_claims`, a forward auth's `response_headers`) are always removed from what the client sent first.
public struct AuthConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    public var basic: BasicAuthConfig?
    public var jwt: JWTAuthConfig?
    public var forward: ForwardAuthConfig?

    public init(basic: BasicAuthConfig? = nil, jwt: JWTAuthConfig? = nil, forward: ForwardAuthConfig? = nil) {
        self.basic = basic
        self.jwt = jwt
        self.forward = forward
    }

    public static var configPlaceholder: AuthConfig { .init() }
}

/// HTTP Basic authentication (RFC 7617) against an htpasswd file.
public struct BasicAuthConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// The htpasswd file: `user:hash` lines, hashes bcrypt (`$2y$`, `$2b$`, `$2a$`) or `{SHA}`. Re-read when it
    /// changes (checked every 2 seconds). Required.
    public var htpasswd: String
    /// The realm in `WWW-Authenticate`. Default `Restricted`.
    public var realm: String?
    /// The request field that carries the user name upstream. Default `X-Auth-User`; removed from the client's.
    public var userHeader: String?
    /// How long a successful check is remembered, so a logged-in client costs a hash lookup, not a bcrypt.
    /// Default `5m`.
    public var cacheFor: ConfigDuration?

    public init(htpasswd: String, realm: String? = nil, userHeader: String? = nil, cacheFor: ConfigDuration? = nil) {
        self.htpasswd = htpasswd
        self.realm = realm
        self.userHeader = userHeader
        self.cacheFor = cacheFor
    }

    public static var configPlaceholder: BasicAuthConfig { .init(htpasswd: "") }
}

/// Bearer JSON Web Tokens (RFC 7519), verified with keys from files, a JWKS file or a JWKS URL.
public struct JWTAuthConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// Keys from files (PEM public keys, or an HMAC secret).
    public var keys: [JWTKeyConfig]?
    /// A JWK Set (RFC 7517) in a file.
    public var jwksFile: String?
    /// A JWK Set fetched from this URL, and again every `jwks_refresh` and when a token names a key it has not
    /// seen (at most once per 30 seconds). Fetched on the control plane; the request path never waits for it.
    public var jwksUrl: String?
    /// Default `10m`.
    public var jwksRefresh: ConfigDuration?
    /// Accepted `iss` values. Default: any.
    public var issuers: [String]?
    /// Accepted `aud` values: the token must name one of them. Default: any.
    public var audiences: [String]?
    /// Clock skew allowed for `exp`, `nbf` and `iat`. Default `30s`.
    public var leeway: ConfigDuration?
    /// Where the token is found, tried in order: `header` (`Authorization: Bearer`), `cookie:NAME`,
    /// `query:NAME`. Default `[header]`.
    public var tokenFrom: [String]?
    /// Claims sent upstream as request fields, claim name to field name (`sub: X-User`). Strings as they are,
    /// numbers and booleans as JSON, arrays joined with commas.
    public var forwardClaims: [String: String]?
    /// Claims that must be present with these exact (string) values.
    public var requireClaims: [String: String]?

    public init(keys: [JWTKeyConfig]? = nil, jwksFile: String? = nil, jwksUrl: String? = nil, jwksRefresh: ConfigDuration? = nil,
                issuers: [String]? = nil, audiences: [String]? = nil, leeway: ConfigDuration? = nil, tokenFrom: [String]? = nil,
                forwardClaims: [String: String]? = nil, requireClaims: [String: String]? = nil) {
        self.keys = keys
        self.jwksFile = jwksFile
        self.jwksUrl = jwksUrl
        self.jwksRefresh = jwksRefresh
        self.issuers = issuers
        self.audiences = audiences
        self.leeway = leeway
        self.tokenFrom = tokenFrom
        self.forwardClaims = forwardClaims
        self.requireClaims = requireClaims
    }

    public static var configPlaceholder: JWTAuthConfig { .init() }
}

/// One verification key in a file.
public struct JWTKeyConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// HS256/384/512 (the file holds the secret; one trailing newline is ignored), RS256/384/512 and PS256/384/512
    /// (an RSA public key, PEM), ES256/384/512 (an EC public key, PEM), EdDSA (an Ed25519 public key, PEM).
    public var algorithm: String
    /// The file. Required.
    public var file: String
    /// The `kid` tokens name this key by. Default: the key tokens without `kid` are checked with.
    public var kid: String?

    public init(algorithm: String, file: String, kid: String? = nil) {
        self.algorithm = algorithm
        self.file = file
        self.kid = kid
    }

    public static var configPlaceholder: JWTKeyConfig { .init(algorithm: "", file: "") }
}

/// Forward authentication (nginx `auth_request`, Traefik ForwardAuth): each request is first asked of an auth
/// service; a 2xx lets it through, any other answer goes back to the client as it came.
public struct ForwardAuthConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// The auth service's cluster (one of `clusters`), reached through Portico's own pools. Required.
    public var cluster: String
    /// The path asked, with the original method; the original request is described in `X-Forwarded-Method`,
    /// `X-Forwarded-Uri`, `X-Forwarded-Host`, `X-Forwarded-Proto`, `X-Forwarded-For` (and nginx's
    /// `X-Original-URI`, `X-Original-Method`). Default `/`.
    public var path: String?
    /// Request fields sent along. Default `[Authorization, Cookie]`.
    public var requestHeaders: [String]?
    /// Fields of a 2xx answer copied into the upstream request (removed from the client's first).
    public var responseHeaders: [String]?
    /// Send the request body along, up to this size (the request waits for it; a larger body is 413). The body
    /// still goes upstream after a 2xx. Default: none (the auth service gets no body).
    public var maxBody: ByteSize?
    /// No answer within this is 503 (never a pass). Default `5s`.
    public var timeout: ConfigDuration?
    /// Remember each answer this long, per request and credential (method, host, target, client address and the
    /// sent fields), so a client repeating a request does not cost a subrequest each time; answers that set a
    /// cookie are never remembered. Not with `max_body` (the answer may depend on the body). Default: off.
    public var cacheFor: ConfigDuration?

    public init(cluster: String, path: String? = nil, requestHeaders: [String]? = nil, responseHeaders: [String]? = nil,
                maxBody: ByteSize? = nil, timeout: ConfigDuration? = nil, cacheFor: ConfigDuration? = nil) {
        self.maxBody = maxBody
        self.cluster = cluster
        self.path = path
        self.requestHeaders = requestHeaders
        self.responseHeaders = responseHeaders
        self.timeout = timeout
        self.cacheFor = cacheFor
    }

    public static var configPlaceholder: ForwardAuthConfig { .init(cluster: "") }
}
