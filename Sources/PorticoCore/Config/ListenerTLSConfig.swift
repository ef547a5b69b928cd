//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// TLS termination on a listener.
public struct ListenerTLSConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// Certificates (PEM chain and key, RSA or ECDSA), chosen per connection by the SNI name the client sends:
    /// exact names first, then wildcards. The first one is the default for clients that send no name or an
    /// unknown one. At least one is required.
    public var certificates: [CertificateConfig]
    /// The oldest TLS version accepted: `1.2` (default) or `1.3`. Nothing older is ever offered.
    public var minVersion: TLSMinimumVersion?
    /// Add `Strict-Transport-Security` to every response on this listener. Default: not added.
    public var hsts: HSTSConfig?
    /// Ask clients for certificates (mTLS).
    public var clientAuth: ClientAuthConfig?
    /// How often certificate and key files are checked for changes; changed files are loaded for new
    /// connections without a restart (open connections keep theirs). Default `10s`.
    public var reloadInterval: ConfigDuration?

    public init(certificates: [CertificateConfig] = [], minVersion: TLSMinimumVersion? = nil, hsts: HSTSConfig? = nil,
                clientAuth: ClientAuthConfig? = nil, reloadInterval: ConfigDuration? = nil) {
        self.certificates = certificates
        self.minVersion = minVersion
        self.hsts = hsts
        self.clientAuth = clientAuth
        self.reloadInterval = reloadInterval
    }

    public static var configPlaceholder: ListenerTLSConfig { .init() }
}

public enum TLSMinimumVersion: String, ConfigEnum {
    case v1_2 = "1.2"
    case v1_3 = "1.3"
}

/// One certificate chain and its key, as PEM files.
public struct CertificateConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// The certificate chain, leaf first. Required.
    public var certFile: String
    /// The private key. Required.
    public var keyFile: String
    /// SNI names this certificate serves (`app.example.com`, `*.example.org`). Default: the DNS names in the
    /// certificate.
    public var hosts: [String]?

    public init(certFile: String, keyFile: String, hosts: [String]? = nil) {
        self.certFile = certFile
        self.keyFile = keyFile
        self.hosts = hosts
    }

    public static var configPlaceholder: CertificateConfig { .init(certFile: "", keyFile: "") }
}

/// HTTP Strict Transport Security (RFC 6797).
public struct HSTSConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// `max-age`. Default `365d`.
    public var maxAge: ConfigDuration?
    /// Add `includeSubDomains`. Default `false`.
    public var includeSubdomains: Bool?
    /// Add `preload`. Default `false`.
    public var preload: Bool?

    public init(maxAge: ConfigDuration? = nil, includeSubdomains: Bool? = nil, preload: Bool? = nil) {
        self.maxAge = maxAge
        self.includeSubdomains = includeSubdomains
        self.preload = preload
    }

    public static var configPlaceholder: HSTSConfig { .init() }

    /// The header value.
    public var headerValue: String {
        var v = "max-age=\((self.maxAge?.nanoseconds ?? 31_536_000_000_000_000) / 1_000_000_000)"
        if self.includeSubdomains == true { v += "; includeSubDomains" }
        if self.preload == true { v += "; preload" }
        return v
    }
}

/// Client certificates (mTLS).
public struct ClientAuthConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// `require`: a client without a valid certificate fails the handshake. `request`: a certificate is asked
    /// for and, if sent, must be valid; clients without one are served anonymously.
    public var mode: ClientAuthMode
    /// CA bundle (PEM) that client certificates must chain to. Required.
    public var caFile: String
    /// Request header that carries the verified client's subject to the upstream. Default `X-Client-Subject`.
    public var subjectHeader: String?
    /// Request header that carries the SHA-256 fingerprint (hex) of the client's certificate. Default
    /// `X-Client-Cert-SHA256`.
    public var fingerprintHeader: String?

    public init(mode: ClientAuthMode, caFile: String, subjectHeader: String? = nil, fingerprintHeader: String? = nil) {
        self.mode = mode
        self.caFile = caFile
        self.subjectHeader = subjectHeader
        self.fingerprintHeader = fingerprintHeader
    }

    public static var configPlaceholder: ClientAuthConfig { .init(mode: .require, caFile: "") }
}

public enum ClientAuthMode: String, ConfigEnum {
    case require
    case request
}
