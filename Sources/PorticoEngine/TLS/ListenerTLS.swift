//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Crypto
import NIOCore
import NIOSSL
import PorticoCore

/// A listener's compiled TLS: the `NIOSSLContext` every connection's `NIOSSLServerHandler` uses, the certificate
/// store its SNI callback reads, and what the proxy adds for HSTS and mTLS. Built on the control plane when a
/// config generation is applied; shared, immutable, by every worker.
public final class ListenerTLS: Sendable {
    public let context: NIOSSLContext
    public let store: TLSCertificateStore
    public let hstsValue: String?
    public let reloadInterval: TimeAmount
    /// Header names for the verified client certificate, when client certificates are asked for.
    public let clientSubjectHeader: String?
    public let clientFingerprintHeader: String?
    /// What this was built from: a reload with the same settings keeps this object (see `ProxyEngine`).
    public let config: ListenerTLSConfig
    public let offersHTTP2: Bool

    /// - Parameter http2: offer `h2` by ALPN.
    public init(_ c: ListenerTLSConfig, http2: Bool = false) throws {
        let store = try TLSCertificateStore(c.certificates)
        let first = store.defaultCertificate
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: first.chain.map { .certificate($0) },
            privateKey: .privateKey(first.key)
        )
        tls.minimumTLSVersion = c.minVersion == .v1_3 ? .tlsv13 : .tlsv12
        // TLS 1.2: forward-secret AEAD suites only (Mozilla "intermediate"), no CBC (LUCKY13) and no RSA key
        // transport (ROBOT). TLS 1.3 suites are all AEAD.
        tls.cipherSuites = Self.tls12CipherSuites
        tls.applicationProtocols = http2 ? ["h2", "http/1.1"] : ["http/1.1"]
        // SNI: the certificate for the name the client asked for (RFC 6066 §3).
        tls.sslContextCallback = { values, promise in
            let chosen = store.select(values.serverHostname)
            var override = NIOSSLContextConfigurationOverride()
            override.certificateChain = chosen.chain.map { .certificate($0) }
            override.privateKey = .privateKey(chosen.key)
            promise.succeed(override)
        }
        if let auth = c.clientAuth {
            let roots: [NIOSSLCertificate]
            try TLSCertificateStore.requireReadable(auth.caFile, field: "client_auth.ca_file")
            do {
                roots = try NIOSSLCertificate.fromPEMFile(auth.caFile)
            } catch {
                throw TLSMaterialError(field: "client_auth.ca_file", message: "cannot load CA bundle \"\(auth.caFile)\": \(TLSCertificateStore.describe(error))")
            }
            tls.trustRoots = .certificates(roots)
            tls.certificateVerification = auth.mode == .require ? .noHostnameVerification : .optionalVerification
            self.clientSubjectHeader = auth.subjectHeader ?? "X-Client-Subject"
            self.clientFingerprintHeader = auth.fingerprintHeader ?? "X-Client-Cert-SHA256"
        } else {
            self.clientSubjectHeader = nil
            self.clientFingerprintHeader = nil
        }
        self.context = try NIOSSLContext(configuration: tls)
        self.config = c
        self.offersHTTP2 = http2
        self.store = store
        self.hstsValue = c.hsts?.headerValue
        self.reloadInterval = .nanoseconds(c.reloadInterval?.nanoseconds ?? 10_000_000_000)
    }

    static let tls12CipherSuites = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")
}

/// What the proxy tells upstreams about a verified client certificate.
struct ClientCertificateInfo {
    var subject: String
    var sha256: String

    init(_ cert: NIOSSLCertificate) {
        self.subject = cert.subjectName.map { "\($0)" }.joined(separator: ",")
        let der = (try? cert.toDERBytes()) ?? []
        self.sha256 = SHA256.hash(data: der).map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()
    }
}
