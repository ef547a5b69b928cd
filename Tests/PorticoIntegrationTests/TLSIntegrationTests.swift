//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import PorticoControl
import PorticoCore
import PorticoEngine
import PorticoTestSupport
import Testing

/// TLS termination with real certificates made in the test and a real NIOSSL client.
@Suite(.serialized) struct TLSIntegrationTests {
    struct Fetched {
        var peerSubject: String
        var response: String
    }

    /// Connects with TLS (SNI `serverName`, verifying against `ca`), sends one GET and reads the whole response.
    static func fetch(port: Int, serverName: String, ca: String, path: String = "/", clientCert: (String, String)? = nil, extraHeaders: String = "") async throws -> Fetched {
        let (channel, collector) = try await Self.connect(port: port, serverName: serverName, ca: ca, clientCert: clientCert)
        try await channel.writeAndFlush(ByteBuffer(string: "GET \(path) HTTP/1.1\r\nHost: \(serverName)\r\n\(extraHeaders)Connection: close\r\n\r\n"))
        let response = try await collector.promise.futureResult.get()
        try? await channel.close()
        return Fetched(peerSubject: collector.peerSubject, response: String(buffer: response))
    }

    /// A TLS connection whose received bytes a `Collector` gathers (completed when the connection closes).
    static func connect(port: Int, serverName: String, ca: String, clientCert: (String, String)? = nil) async throws -> (any Channel, Collector) {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(ca)
        tls.applicationProtocols = ["http/1.1"]
        if let (cert, key) = clientCert {
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
        }
        let context = try NIOSSLContext(configuration: tls)
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: ByteBuffer.self)
        let collector = Collector(promise: promise)
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: serverName))
                    try channel.pipeline.syncOperations.addHandler(collector)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return (channel, collector)
    }

    final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<ByteBuffer>
        var buffer = ByteBuffer()
        var peerSubject = ""
        init(promise: EventLoopPromise<ByteBuffer>) { self.promise = promise }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            // Application data only arrives after the handshake, so the peer's certificate is known here.
            if self.peerSubject.isEmpty,
                let cert = try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).peerCertificate
            {
                self.peerSubject = cert.subjectName.map { "\($0)" }.joined(separator: ",")
            }
            var b = self.unwrapInboundIn(data)
            self.buffer.writeBuffer(&b)
        }
        func channelInactive(context: ChannelHandlerContext) { self.promise.succeed(self.buffer) }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            if self.buffer.readableBytes > 0, error is NIOSSLError { return }  // unclean shutdown after the response
            self.promise.fail(error)
            context.close(promise: nil)
        }
    }

    @Test func sniPicksTheCertificateAndCertificatesReloadFromDisk() async throws {
        let certs = try TestCertificates()
        let a = try certs.issue("a", dnsNames: ["a.test"])
        let b = try certs.issue("b", dnsNames: ["*.b.test"], rsa: true)
        let origin = try await TestOrigin.start(name: "o")
        let yaml = """
            listeners:
              - name: https
                address: "127.0.0.1:0"
                tls:
                  certificates: [ { cert_file: "\(a.0)", key_file: "\(a.1)" }, { cert_file: "\(b.0)", key_file: "\(b.1)" } ]
                  hsts: { max_age: 1d, include_subdomains: true }
                  reload_interval: 200ms
            access_log: { destination: "off" }
            routes: [ { cluster: c } ]
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 2)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let port = proxy.port()

        let fa = try await Self.fetch(port: port, serverName: "a.test", ca: certs.caFile)
        #expect(fa.peerSubject.contains("a.test"))
        #expect(fa.response.hasPrefix("HTTP/1.1 200"))
        #expect(fa.response.contains("Strict-Transport-Security: max-age=86400; includeSubDomains"))
        #expect(fa.response.contains("x-forwarded-proto: https"))
        let fb = try await Self.fetch(port: port, serverName: "deep.b.test", ca: certs.caFile)
        #expect(fb.peerSubject.contains("b.test"))
        // An unknown name gets the default (first) certificate, which a verifying client then rejects.
        await #expect(throws: (any Error).self) { try await Self.fetch(port: port, serverName: "c.test", ca: certs.caFile) }

        // A keep-alive connection made before the certificate changes.
        let (keptChannel, kept) = try await Self.connect(port: port, serverName: "a.test", ca: certs.caFile)
        try await keptChannel.writeAndFlush(ByteBuffer(string: "GET /first HTTP/1.1\r\nHost: a.test\r\n\r\n"))
        for _ in 0..<100 {
            let text = try await keptChannel.eventLoop.submit { String(buffer: kept.buffer) }.get()
            if text.contains("target: /first") { break }
            try await Task.sleep(nanoseconds: 20_000_000)
        }

        // New files on disk are picked up for new connections, without a restart.
        try certs.issue("a", dnsNames: ["a.test"], organization: "Reloaded")
        try await Task.sleep(nanoseconds: 800_000_000)
        let reloaded = try await Self.fetch(port: port, serverName: "a.test", ca: certs.caFile)
        #expect(reloaded.peerSubject.contains("Reloaded"))

        // The connection made before goes on with its certificate: nothing was dropped.
        try await keptChannel.writeAndFlush(ByteBuffer(string: "GET /second HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"))
        let both = String(buffer: try await kept.promise.futureResult.get())
        #expect(both.contains("target: /first") && both.contains("target: /second"))
        #expect(kept.peerSubject.contains("a.test") && !kept.peerSubject.contains("Reloaded"))
    }

    /// One `openssl s_client` connection that sends a GET and waits for the response; saves or reuses the TLS
    /// session in `sessionFile`. Returns s_client's output ("New, TLSv1.3, ..." or "Reused, TLSv1.3, ...").
    static func sClient(port: Int, version: String, sessionFile: String, reuse: Bool, ca: String) throws -> String {
        let request = FileManager.default.temporaryDirectory.appendingPathComponent("portico-req-\(UUID().uuidString)").path
        try "GET /echo HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n".write(toFile: request, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: request) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = ["s_client", version, "-connect", "127.0.0.1:\(port)", "-servername", "a.test", "-CAfile", ca,
                       "-ign_eof", reuse ? "-sess_in" : "-sess_out", sessionFile]
        p.standardInput = FileHandle(forReadingAtPath: request)
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return text
    }

    /// TLS 1.2 and 1.3 sessions resume (tickets; RFC 8446 §2.2, RFC 5077), on any worker: the workers share one
    /// TLS context and so one ticket key.
    @Test func sessionsResumeOnEveryWorker() async throws {
        let certs = try TestCertificates()
        let a = try certs.issue("a", dnsNames: ["a.test"])
        let origin = try await TestOrigin.start(name: "o")
        let yaml = """
            listeners: [ { name: https, address: "127.0.0.1:0", tls: { certificates: [ { cert_file: "\(a.0)", key_file: "\(a.1)" } ] } } ]
            access_log: { destination: "off" }
            routes: [ { cluster: c } ]
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 2)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let port = proxy.port()
        for version in ["-tls1_2", "-tls1_3"] {
            let session = certs.path("session\(version)")
            let first = try Self.sClient(port: port, version: version, sessionFile: session, reuse: false, ca: certs.caFile)
            #expect(first.contains("New, TLSv1.") && first.contains("HTTP/1.1 200"), "\(version): \(first.prefix(300))")
            // Several connections, so that both workers (SO_REUSEPORT spreads them) accept some.
            for _ in 0..<4 {
                let again = try Self.sClient(port: port, version: version, sessionFile: session, reuse: true, ca: certs.caFile)
                #expect(again.contains("Reused, TLSv1.") && again.contains("HTTP/1.1 200"), "\(version): \(again.prefix(300))")
            }
        }

        // A reload that leaves the listener's TLS settings alone keeps its ticket key: sessions still resume.
        let reloaded = yaml.replacingOccurrences(of: "{{origin:o}}", with: origin.address)
            .replacingOccurrences(of: "routes: [ { cluster: c } ]", with: "routes: [ { cluster: c, response_headers: { set: { X-Generation: \"2\" } } } ]")
        let valid = try ConfigLoader.load(text: reloaded, file: nil).get()
        _ = await proxy.server.apply(valid)
        let afterReload = try Self.sClient(port: port, version: "-tls1_3", sessionFile: certs.path("session-tls1_3"), reuse: true, ca: certs.caFile)
        #expect(afterReload.contains("Reused, TLSv1.3") && afterReload.lowercased().contains("x-generation: 2"), "\(afterReload.prefix(400))")
    }

    @Test func mutualTLSPassesTheVerifiedClientToTheUpstream() async throws {
        let certs = try TestCertificates()
        let server = try certs.issue("server", dnsNames: ["api.test"])
        let client = try certs.issue("client", dnsNames: ["client-1"], organization: "Clients", clientAuth: true)
        let origin = try await TestOrigin.start(name: "o")
        func config(_ mode: String) -> String {
            """
            listeners:
              - name: https
                address: "127.0.0.1:0"
                tls:
                  certificates: [ { cert_file: "\(server.0)", key_file: "\(server.1)" } ]
                  client_auth: { mode: \(mode), ca_file: "\(certs.caFile)" }
            access_log: { destination: "off" }
            routes: [ { cluster: c } ]
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """
        }
        let proxy = try await ProxyHarness.start(yaml: config("require"), origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let ok = try await Self.fetch(port: proxy.port(), serverName: "api.test", ca: certs.caFile, clientCert: client)
        #expect(ok.response.hasPrefix("HTTP/1.1 200"))
        #expect(ok.response.contains("x-client-subject: "))
        #expect(ok.response.contains("CN=client-1") || ok.response.contains("client-1"))
        #expect(ok.response.contains("x-client-cert-sha256: "))
        // Without a certificate the handshake fails; other connections are unaffected.
        await #expect(throws: (any Error).self) { try await Self.fetch(port: proxy.port(), serverName: "api.test", ca: certs.caFile) }
        let again = try await Self.fetch(port: proxy.port(), serverName: "api.test", ca: certs.caFile, clientCert: client)
        #expect(again.response.hasPrefix("HTTP/1.1 200"))

        // `request`: a client without a certificate is served anonymously, and a spoofed identity header is dropped.
        let proxy2 = try await ProxyHarness.start(yaml: config("request"), origins: [origin], workers: 1)
        let anonymous = try await Self.fetch(port: proxy2.port(), serverName: "api.test", ca: certs.caFile, path: "/", extraHeaders: "X-Client-Subject: CN=admin\r\n")
        #expect(anonymous.response.hasPrefix("HTTP/1.1 200"))
        #expect(!anonymous.response.contains("x-client-subject"))
        let identified = try await Self.fetch(port: proxy2.port(), serverName: "api.test", ca: certs.caFile, clientCert: client)
        #expect(identified.response.contains("x-client-subject: "))
        await proxy2.shutdown()
    }

    @Test func checkReportsBadTLSFilesWithTheirKeyPaths() async throws {
        let certs = try TestCertificates()
        let good = try certs.issue("good", dnsNames: ["good.test"])
        let other = try certs.issue("other", dnsNames: ["other.test"])
        let expired = try certs.issue("expired", dnsNames: ["old.test"], days: 0)
        try await Task.sleep(nanoseconds: 1_100_000_000)
        let yaml = """
            listeners:
              - name: https
                address: "127.0.0.1:0"
                tls:
                  certificates:
                    - { cert_file: "\(certs.path("missing.pem"))", key_file: "\(good.1)" }
                    - { cert_file: "\(good.0)", key_file: "\(other.1)" }
                    - { cert_file: "\(expired.0)", key_file: "\(expired.1)" }
            routes: [ { respond: { status: 200 } } ]
            """
        guard case .failure(let errors) = ConfigLoader.load(text: yaml, file: "tls.yaml", extraChecks: TLSConfigCheck.errors) else {
            Issue.record("expected errors")
            return
        }
        let text = errors.all.map(\.description)
        #expect(text.contains { $0.contains("listeners[0].tls.certificates[0].cert_file: cannot read") && $0.contains("no such file") })
        #expect(text.contains { $0.contains("listeners[0].tls.certificates[1].key_file: private key") && $0.contains("does not match") })
        #expect(text.contains { $0.contains("listeners[0].tls.certificates[2].cert_file: certificate") && $0.contains("expired") })
        #expect(text.allSatisfy { $0.hasPrefix("tls.yaml:") })
    }

    @Test func upstreamTLSVerifiesTheOriginAndRedirectsToHTTPS() async throws {
        let certs = try TestCertificates()
        let originCert = try certs.issue("origin", dnsNames: ["origin.internal"])
        let origin = try await TestOrigin.start(name: "secure", tls: originCert)
        let yaml = """
            listeners: [ { name: main, address: "127.0.0.1:0" }, { name: other, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes:
              - { match: { path_prefix: /login, listeners: [main] }, redirect: { status: 308, target: "https://$host$request_uri" } }
              - { match: { path_prefix: /login }, respond: { status: 200, body: "login page" } }
              - { match: { path_prefix: /good/ }, cluster: good }
              - { match: { path_prefix: /bad/ }, cluster: bad }
            clusters:
              - { name: good, hosts: [ { address: "\(origin.address)" } ], tls: { ca_file: "\(certs.caFile)", server_name: origin.internal } }
              - { name: bad, hosts: [ { address: "\(origin.address)" } ], tls: { server_name: origin.internal } }
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, workers: 1, logLevel: .critical)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let c = try RawHTTPClient(port: proxy.port(of: "main"))
        try c.send("GET /good/x HTTP/1.1\r\nHost: app.test\r\n\r\n")
        let good = c.readResponses(1).first
        #expect(good?.status == 200)
        #expect(good?.header("x-origin") == "secure")
        // Same origin, but its certificate does not chain to the system roots: no response from it is passed on.
        try c.send("GET /bad/x HTTP/1.1\r\nHost: app.test\r\n\r\n")
        #expect(c.readResponses(1).first?.status == 502)
        let r = try RawHTTPClient(port: proxy.port(of: "main"))
        try r.send("GET /login?next=/a HTTP/1.1\r\nHost: app.test\r\n\r\n")
        let redirect = r.readResponses(1).first
        #expect(redirect?.status == 308)
        #expect(redirect?.header("location") == "https://app.test/login?next=/a")
        // Routes limited to a listener: the same path on the other listener is not redirected.
        let o = try RawHTTPClient(port: proxy.port(of: "other"))
        try o.send("GET /login HTTP/1.1\r\nHost: app.test\r\n\r\n")
        #expect(o.readResponses(1).first?.body == "login page")
    }
}
