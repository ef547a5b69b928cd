//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// The admin listener: the config API, cluster state, health, metrics and the dashboard, on an address of its
/// own. Off unless configured.
public struct AdminConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// `host:port`, e.g. `127.0.0.1:9901`. On an address other than loopback a `token_file` or `tls` (mutual TLS)
    /// is required.
    public var address: String
    /// A file holding a bearer token: every request must send `Authorization: Bearer <token>`. Read at start (a
    /// change takes effect on restart).
    public var tokenFile: String?
    /// Serve the admin API over TLS, requiring a client certificate signed by `client_ca` (mutual TLS).
    public var tls: AdminTLSConfig?

    public init(address: String, tokenFile: String? = nil, tls: AdminTLSConfig? = nil) {
        self.address = address
        self.tokenFile = tokenFile
        self.tls = tls
    }

    public static var configPlaceholder: AdminConfig { .init(address: "") }
}

/// The admin listener's TLS: its certificate, and the CA its clients' certificates must chain to.
public struct AdminTLSConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// PEM certificate chain.
    public var certFile: String
    /// PEM private key.
    public var keyFile: String
    /// PEM CA bundle: every client must present a certificate it signed.
    public var clientCa: String

    public init(certFile: String, keyFile: String, clientCa: String) {
        self.certFile = certFile
        self.keyFile = keyFile
        self.clientCa = clientCa
    }

    public static var configPlaceholder: AdminTLSConfig { .init(certFile: "", keyFile: "", clientCa: "") }
}
