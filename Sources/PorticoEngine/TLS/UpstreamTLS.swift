//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOSSL
import PorticoCore

/// A cluster's compiled upstream TLS: one client `NIOSSLContext` (made on the control plane, where loading files
/// may block) and the SNI name. Its `identity` is part of the pool key.
public final class UpstreamTLS: Sendable {
    public let context: NIOSSLContext
    public let serverName: String?
    public let identity: String

    public init(_ c: UpstreamTLSConfig, http2: Bool = false) throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.applicationProtocols = http2 ? ["h2"] : ["http/1.1"]
        if let ca = c.caFile {
            try TLSCertificateStore.requireReadable(ca, field: "ca_file")
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca))
            } catch {
                throw TLSMaterialError(field: "ca_file", message: "cannot load CA bundle \"\(ca)\": \(TLSCertificateStore.describe(error))")
            }
        }
        if c.verify == false { tls.certificateVerification = .none }
        if let cert = c.certFile, let key = c.keyFile {
            try TLSCertificateStore.requireReadable(cert, field: "cert_file")
            try TLSCertificateStore.requireReadable(key, field: "key_file")
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            } catch {
                throw TLSMaterialError(field: "cert_file", message: "cannot load client certificate \"\(cert)\" / \"\(key)\": \(TLSCertificateStore.describe(error))")
            }
        }
        self.context = try NIOSSLContext(configuration: tls)
        self.serverName = c.serverName
        self.identity = "\(http2 ? "h2" : "h1")|\(c.caFile ?? "system")|\(c.serverName ?? "-")|\(c.verify ?? true)|\(c.certFile ?? "-")"
    }

    /// The SNI name for a host: the configured name, or the host's name when it is not an IP address.
    public func serverName(for address: HostPort) -> String? {
        self.serverName ?? (address.isIPLiteral ? nil : address.host)
    }
}
