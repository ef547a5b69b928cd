//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import NIOCore
import NIOPosix
import PorticoControl
import PorticoCore
import PorticoTestSupport
import Testing

/// PROXY protocol (issue 10 §4): received on a listener from trusted peers only, its address the client's
/// everywhere; sent to a cluster's hosts. Against Portico itself and against HAProxy from Debian (`.ci/run`
/// installs it), both as the sender and as the receiver.
@Suite(.serialized) struct ProxyProtocolIntegrationTests {
    static let v2Client203: [UInt8] = ProxyProtocol.v2Signature + [0x21, 0x11, 0x00, 0x0C, 203, 0, 113, 9, 127, 0, 0, 1, 0x30, 0x39, 0x00, 0x50]

    @Test func aListenerTakesTheClientAddressFromTheHeader() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: """
            listeners:
              - { name: lb, address: "127.0.0.1:0", proxy_protocol: { trusted_ips: [ 127.0.0.1/32 ], timeout: 1s } }
              - { name: other, address: "127.0.0.1:0", proxy_protocol: { trusted_ips: [ 10.0.0.0/8 ] } }
            access_log: { destination: "off" }
            routes:
              - { match: { path_prefix: /denied/ }, cluster: c, ip_rules: { deny: [ 203.0.113.0/24 ] } }
              - { cluster: c }
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """, origins: [origin])
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let port = proxy.port(of: "lb")

        // v1, then two requests on the connection: both carry the relayed client.
        let c = try RawHTTPClient(port: port)
        try c.send("PROXY TCP4 203.0.113.7 127.0.0.1 56324 80\r\nGET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        let responses = c.readResponses(2)
        #expect(responses.count == 2 && responses.allSatisfy { $0.status == 200 && $0.body.contains("x-forwarded-for: 203.0.113.7") })
        // v2 (binary), and the route's IP rules see the relayed address.
        let v2 = try RawHTTPClient(port: port)
        try v2.send(Self.v2Client203 + Array("GET /denied/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8))
        #expect(v2.readResponses(1).first?.status == 403)
        // v2 LOCAL (a health check): the socket's address stands.
        let local = try RawHTTPClient(port: port)
        try local.send(ProxyProtocol.v2Signature + [0x20, 0x00, 0x00, 0x00] + Array("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".utf8))
        #expect(local.readResponses(1).first?.body.contains("x-forwarded-for: 127.0.0.1") == true)
        #expect(origin.requestCount == 3)

        // No header, a malformed one, or none in time: closed, nothing forwarded.
        for bytes in ["GET / HTTP/1.1\r\nHost: t\r\n\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n", "PROXY TCP4 1.2"] {
            let (text, closed) = try await offThePool {
                let bad = try RawHTTPClient(port: port)
                try bad.send(bytes)
                return bad.readAll()
            }
            #expect(text.isEmpty && closed, "\(bytes.debugDescription)")
        }
        // A peer outside trusted_ips: closed at once, even with a header.
        let untrusted = try RawHTTPClient(port: proxy.port(of: "other"))
        try? untrusted.send("PROXY TCP4 203.0.113.7 127.0.0.1 1 80\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(untrusted.readAll().text.isEmpty)
        #expect(origin.requestCount == 3)
    }

    @Test func aClusterSendsTheHeaderToItsHosts() async throws {
        // The receiving side is a second Portico with a proxy_protocol listener, in front of the origin.
        let origin = try await TestOrigin.start(name: "o")
        let receiver = try await ProxyHarness.start(yaml: """
            listeners: [ { name: in, address: "127.0.0.1:0", proxy_protocol: { trusted_ips: [ 127.0.0.1/32 ] } } ]
            access_log: { destination: "off" }
            routes: [ { cluster: c } ]
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """, origins: [origin])
        defer { Task { await receiver.shutdown(); await origin.shutdown() } }
        for version in ["v1", "v2"] {
            let sender = try await ProxyHarness.start(yaml: """
                listeners: [ { name: lb, address: "127.0.0.1:0", proxy_protocol: { trusted_ips: [ 127.0.0.1/32 ] } } ]
                access_log: { destination: "off" }
                forwarding: { x_forwarded_for: "off" }
                routes: [ { cluster: inner } ]
                clusters:
                  - name: inner
                    proxy_protocol: \(version)
                    hosts: [ { address: "127.0.0.1:\(receiver.port())" } ]
                    health_check: { active: { path: /, interval: 100ms, jitter: 0s, timeout: 5s, healthy_threshold: 1, unhealthy_threshold: 1 } }
                """)
            // The client 198.51.100.4 (as the first PROXY header says) reaches the origin through both Porticos.
            let c = try RawHTTPClient(port: sender.port())
            try c.send("PROXY TCP4 198.51.100.4 127.0.0.1 4000 80\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            let r = c.readResponses(2)
            #expect(r.count == 2 && r.allSatisfy { $0.status == 200 && $0.body.contains("x-forwarded-for: 198.51.100.4\n") }, "\(version): \(r.map(\.body))")
            // Health probes send a header too (LOCAL / UNKNOWN), so the receiver takes them and they pass.
            let state = await sender.server.hosts.state(for: HostPort(host: "127.0.0.1", port: receiver.port()), cluster: "inner", now: 0)
            let before = origin.requestCount
            try await waitUntil("\(version): probes reach the origin", timeout: .seconds(30)) { origin.requestCount >= before + 3 }
            #expect(state.isActiveHealthy)
            await sender.shutdown()
        }
    }

    // MARK: HAProxy

    static let haproxy = "/usr/sbin/haproxy"

    /// A free loopback port for HAProxy (its config needs a number): bound on port 0, then let go.
    static func freePort() throws -> Int {
        let group = MultiThreadedEventLoopGroup.singleton
        let channel = try ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).wait()
        let port = channel.localAddress!.port!
        try channel.close().wait()
        return port
    }

    /// Runs HAProxy in the foreground with `config` until `body` returns; stopped by its PID.
    static func withHAProxy<T>(_ config: String, ports: [Int], _ body: () async throws -> T) async throws -> T {
        try #require(FileManager.default.isExecutableFile(atPath: Self.haproxy), "HAProxy is not installed (.ci/run installs it: apt-get install -y haproxy)")
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("portico-haproxy-\(UUID().uuidString).cfg")
        try (config + "\n").write(to: file, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.haproxy)
        process.arguments = ["-db", "-f", file.path]
        let log = file.appendingPathExtension("log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        let logHandle = try FileHandle(forWritingTo: log)
        process.standardOutput = logHandle
        process.standardError = logHandle
        try process.run()
        defer {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
            try? FileManager.default.removeItem(at: file)
            try? FileManager.default.removeItem(at: log)
        }
        for port in ports {
            try await waitUntil("HAProxy listens on \(port)") {
                try #require(process.isRunning, "HAProxy exited: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
                return (try? RawHTTPClient(port: port)) != nil
            }
        }
        return try await body()
    }

    /// curl from a chosen loopback source address (so the relayed client differs from every proxy's address).
    static func curl(_ url: String, from source: String) async throws -> String {
        try await offThePool {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            p.arguments = ["-s", "--max-time", "5", "--interface", source, url]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }
    }

    static let haproxyDefaults = """
        global
            maxconn 100
        defaults
            timeout connect 2s
            timeout client 5s
            timeout server 5s
        """

    @Test func haproxySendsPorticoReceives() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: """
            listeners: [ { name: lb, address: "127.0.0.1:0", proxy_protocol: { trusted_ips: [ 127.0.0.3/32 ] } } ]
            access_log: { destination: "off" }
            routes: [ { cluster: c } ]
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """, origins: [origin])
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let (v1, v2) = (try Self.freePort(), try Self.freePort())
        try await Self.withHAProxy("""
            \(Self.haproxyDefaults)
                mode tcp
            listen send_v1
                bind 127.0.0.1:\(v1)
                server portico 127.0.0.1:\(proxy.port()) send-proxy source 127.0.0.3
            listen send_v2
                bind 127.0.0.1:\(v2)
                server portico 127.0.0.1:\(proxy.port()) send-proxy-v2 source 127.0.0.3
            """, ports: [v1, v2]) {
            for port in [v1, v2] {
                let body = try await Self.curl("http://127.0.0.1:\(port)/", from: "127.0.0.5")
                #expect(body.contains("x-forwarded-for: 127.0.0.5"), "\(port): \(body)")
            }
        }
        // Without HAProxy in between, this machine's own 127.0.0.1 is not a trusted peer.
        let direct = try RawHTTPClient(port: proxy.port())
        try? direct.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(direct.readAll().text.isEmpty)
    }

    @Test func porticoSendsHAProxyReceives() async throws {
        let origin = try await TestOrigin.start(name: "o")
        defer { Task { await origin.shutdown() } }
        let (v1, v2) = (try Self.freePort(), try Self.freePort())
        try await Self.withHAProxy("""
            \(Self.haproxyDefaults)
                mode http
            frontend receive
                bind 127.0.0.1:\(v1) accept-proxy
                bind 127.0.0.1:\(v2) accept-proxy
                http-request set-header X-PP-Source %[src]
                default_backend origin
            backend origin
                server o \(origin.address)
            """, ports: [v1, v2]) {
            for (version, port) in [("v1", v1), ("v2", v2)] {
                let proxy = try await ProxyHarness.start(yaml: """
                    listeners: [ { name: main, address: "127.0.0.1:0" } ]
                    access_log: { destination: "off" }
                    routes: [ { cluster: h } ]
                    clusters: [ { name: h, proxy_protocol: \(version), hosts: [ { address: "127.0.0.1:\(port)" } ] } ]
                    """)
                let body = try await Self.curl("http://127.0.0.1:\(proxy.port())/", from: "127.0.0.6")
                #expect(body.contains("x-pp-source: 127.0.0.6"), "\(version): \(body)")
                await proxy.shutdown()
            }
        }
    }
}
