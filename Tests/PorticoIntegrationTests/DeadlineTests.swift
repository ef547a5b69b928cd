//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import PorticoTestSupport
import Testing

/// Downstream deadlines that hold a socket otherwise.
@Suite(.serialized) struct DeadlineTests {
    /// A client that connects to a TLS listener and never completes the handshake is disconnected after
    /// `timeouts.tls_handshake` (before, nothing timed a handshake out: the socket was held until the client left).
    /// HTTP/1.1 and HTTP/2 (ALPN) listeners alike; a client that does handshake is served.
    @Test func stalledTLSHandshakesAreCutOff() async throws {
        let certs = try TestCertificates()
        let cert = try certs.issue("localhost", dnsNames: ["localhost"])
        let origin = try await TestOrigin.start(name: "o")
        let yaml = """
            listeners:
              - name: h1
                address: "127.0.0.1:0"
                timeouts: { tls_handshake: 300ms }
                http2: { enabled: false }
                tls: { certificates: [ { cert_file: "\(cert.0)", key_file: "\(cert.1)" } ] }
              - name: h2
                address: "127.0.0.1:0"
                timeouts: { tls_handshake: 300ms }
                tls: { certificates: [ { cert_file: "\(cert.0)", key_file: "\(cert.1)" } ] }
            access_log: { destination: "off" }
            routes: [ { cluster: c } ]
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        for listener in ["h1", "h2"] {
            // Silent: no ClientHello at all. The raw client's own read timeout is 20 s; the proxy closes first.
            let silent = try RawHTTPClient(port: proxy.port(of: listener), timeoutSeconds: 20)
            let (_, closed) = silent.readAll()
            #expect(closed, "\(listener): the stalled handshake was not cut off")
            // Half a ClientHello (a TLS record header that promises more).
            let partial = try RawHTTPClient(port: proxy.port(of: listener), timeoutSeconds: 20)
            try partial.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            #expect(partial.readAll().closed, "\(listener): a partial ClientHello held the socket")
        }
    }
}
