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

    static func yaml(listener: String = "", cluster: String = "") -> String {
        """
        listeners: [ { name: l, address: "127.0.0.1:0"\(listener) } ]
        access_log: { destination: "off" }
        routes: [ { cluster: c } ]
        clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ]\(cluster) } ]
        """
    }

    /// The response head is due from the end of the request body: an upload slower than the cluster's
    /// `timeouts.response_header` still gets its answer (before, it got 504 and counted against the host).
    @Test func aSlowUploadIsNotAnUpstreamTimeout() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(
            yaml: Self.yaml(cluster: ", timeouts: { response_header: 300ms }, health_check: { passive: { consecutive_failures: 1 } }"),
            origins: [origin],
            workers: 1
        )
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let c = try RawHTTPClient(port: proxy.port())
        try c.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
        // Not a synchronisation: the time under test. The upload pauses for three response-header timeouts, and
        // the behaviour checked is that no timer fires (there is no event to wait for).
        try await Task.sleep(nanoseconds: 900_000_000)
        try c.send("world")
        let r = c.readResponses(1).first
        #expect(r?.status == 200)
        #expect(r?.body == "10\n")
    }

    /// A client that goes silent mid-body for `timeouts.request_body` gets 408 and is disconnected; the upstream
    /// connection that took the partial body is closed, and the host is not blamed.
    @Test func aSilentUploadGets408() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(
            yaml: Self.yaml(listener: ", timeouts: { request_body: 300ms }", cluster: ", health_check: { passive: { consecutive_failures: 1 } }"),
            origins: [origin],
            workers: 1
        )
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let c = try RawHTTPClient(port: proxy.port(), timeoutSeconds: 10)
        try c.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
        let (text, closed) = c.readAll()
        #expect(text.hasPrefix("HTTP/1.1 408"), "\(text)")
        #expect(closed)
        // The host was not ejected: the next request reaches it.
        let next = try RawHTTPClient(port: proxy.port())
        try next.send("GET /status/200 HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(next.readResponses(1).first?.status == 200)
    }

    /// A request refused while its body is still coming (413 from Content-Length) is answered, then the
    /// connection lingers: what the client still sends is read and discarded, so the client reads the 413
    /// instead of a reset, and the socket closes.
    @Test func refusedUploadsLingerSoTheClientSeesTheAnswer() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: Self.yaml(listener: ", limits: { max_body_bytes: 1KiB }"), origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let body = String(repeating: "b", count: 4 << 20)
        let c = try RawHTTPClient(port: proxy.port(), timeoutSeconds: 10)
        try c.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body)
        let (text, closed) = c.readAll()
        #expect(text.hasPrefix("HTTP/1.1 413"), "\(text.prefix(100))")
        #expect(closed)
        #expect(origin.requestCount == 0)
    }

    /// A request answered locally before its body arrived (a filter or a fixed route answering from the head) still
    /// owes its body: if the client never sends it, `timeouts.request_body` closes the connection.
    @Test func aBodyOwedAfterALocalAnswerIsTimed() async throws {
        let yaml = """
            listeners: [ { name: l, address: "127.0.0.1:0", timeouts: { request_body: 300ms } } ]
            access_log: { destination: "off" }
            routes: [ { respond: { status: 403, body: "no" } } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, workers: 1)
        defer { Task { await proxy.shutdown() } }
        let c = try RawHTTPClient(port: proxy.port(), timeoutSeconds: 20)
        try c.send("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        let (text, closed) = c.readAll()
        #expect(text.hasPrefix("HTTP/1.1 403"))
        #expect(closed, "the connection was held open for a body that never came")
    }

    /// A keep-alive connection whose request was answered inside the read batch that brought it (a local answer,
    /// a cache hit) is idle afterwards, under `timeouts.idle`, not under the request-head timeout: it is not
    /// answered 408 and closed while the client has sent nothing.
    @Test func aConnectionAnsweredInItsReadBatchIsIdleNotReceiving() async throws {
        let yaml = """
            listeners: [ { name: l, address: "127.0.0.1:0", timeouts: { request_header: 300ms, idle: 30s } } ]
            access_log: { destination: "off" }
            routes: [ { respond: { status: 403, body: "no" } } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, workers: 1)
        defer { Task { await proxy.shutdown() } }
        let c = try RawHTTPClient(port: proxy.port(), timeoutSeconds: 10)
        try c.send("GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(c.readResponses(1).first?.status == 403)
        #expect(!c.waitForClose(timeoutSeconds: 1), "closed while idle")
        try c.send("GET /b HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(c.readResponses(1).first?.status == 403)
    }
}
