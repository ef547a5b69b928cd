//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import PorticoControl
import PorticoCore
import PorticoTestSupport
import Testing

/// The real proxy (in process) in front of real origins, on 127.0.0.1 port 0, driven by AsyncHTTPClient and a
/// raw socket client.
@Suite(.serialized) struct ProxyIntegrationTests {
    static func config(_ extra: String = "", cluster: String = "hosts: [ { address: \"{{origin:a}}\" } ]", timeouts: String = "") -> String {
        """
        listeners: [ { name: main, address: "127.0.0.1:0", limits: { max_header_bytes: 4KiB, max_body_bytes: 1MiB, max_uri_bytes: 512 } } ]
        access_log: { destination: "off" }
        routes:
          - { name: fixed, match: { path: /fixed }, respond: { status: 418, body: "teapot\\n" } }
          - { name: moved, match: { path_prefix: /moved/ }, redirect: { status: 308, target: "https://$host$request_uri" } }
          - { name: all, cluster: c, response_headers: { set: { X-Route: all } } }
        clusters:
          - name: c
            \(cluster)
            \(timeouts)
        \(extra)
        """
    }

    func withProxy(
        origins names: [String] = ["a"],
        yaml: String? = nil,
        _ body: (ProxyHarness, [TestOrigin]) async throws -> Void
    ) async throws {
        var origins: [TestOrigin] = []
        for n in names { origins.append(try await TestOrigin.start(name: n)) }
        let proxy = try await ProxyHarness.start(yaml: yaml ?? Self.config(), origins: origins)
        do {
            try await body(proxy, origins)
        } catch {
            await proxy.shutdown()
            for o in origins { await o.shutdown() }
            throw error
        }
        await proxy.shutdown()
        for o in origins { await o.shutdown() }
    }

    @Test func proxiesAndRewritesHeaders() async throws {
        try await self.withProxy { proxy, _ in
            let response = try await HTTPClient.shared.execute(
                HTTPClientRequest(url: "http://127.0.0.1:\(proxy.port())/hello?x=1"), timeout: .seconds(10))
            #expect(response.status == .ok)
            #expect(response.headers["x-origin"] == ["a"])
            #expect(response.headers["server"].isEmpty)
            #expect(response.headers["x-powered-by"].isEmpty)
            #expect(response.headers["via"] == ["1.1 portico"])
            #expect(response.headers["x-route"] == ["all"])
            let body = String(buffer: try await response.body.collect(upTo: 1 << 20))
            #expect(body.contains("target: /hello?x=1"))
            #expect(body.contains("x-forwarded-for: 127.0.0.1"))
            #expect(body.contains("x-forwarded-proto: http"))
            #expect(body.contains("via: 1.1 portico"))
        }
    }

    @Test func keepAliveToUpstreamIsReused() async throws {
        try await self.withProxy { proxy, origins in
            for _ in 0..<30 {
                let r = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(proxy.port())/"), timeout: .seconds(10))
                _ = try await r.body.collect(upTo: 1 << 20)
            }
            // One pooled connection per worker at most (2 workers), plus none per request.
            #expect(origins[0].connectionCount <= 2)
            #expect(origins[0].requestCount == 30)
        }
    }

    @Test func roundRobinAcrossHostsAndFailover() async throws {
        let dead = try await TestOrigin.start(name: "dead")
        let deadAddress = dead.address
        await dead.shutdown()
        let yaml = Self.config(cluster: "hosts: [ { address: \"{{origin:a}}\" }, { address: \"\(deadAddress)\" }, { address: \"{{origin:b}}\" } ]")
        try await self.withProxy(origins: ["a", "b"], yaml: yaml) { proxy, _ in
            var seen: [String: Int] = [:]
            for _ in 0..<12 {
                let client = try RawHTTPClient(port: proxy.port())
                try client.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                let r = client.readResponses(1)
                #expect(r.first?.status == 200)
                seen[r.first?.header("x-origin") ?? "?", default: 0] += 1
            }
            // The refused host is skipped (nothing was sent to it); both live hosts served.
            #expect(seen["a", default: 0] > 0 && seen["b", default: 0] > 0)
            #expect(seen["a", default: 0] + seen["b", default: 0] == 12)
        }
    }

    @Test func allHostsDownGives502() async throws {
        let dead = try await TestOrigin.start(name: "dead")
        let deadAddress = dead.address
        await dead.shutdown()
        let yaml = Self.config(cluster: "hosts: [ { address: \"\(deadAddress)\" } ]")
        try await self.withProxy(origins: [], yaml: yaml) { proxy, _ in
            let client = try RawHTTPClient(port: proxy.port())
            try client.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            let r = client.readResponses(1)
            #expect(r.first?.status == 502)
        }
    }

    @Test func responseHeaderTimeoutGives504() async throws {
        let yaml = Self.config(timeouts: "timeouts: { response_header: 300ms }")
        try await self.withProxy(yaml: yaml) { proxy, _ in
            let client = try RawHTTPClient(port: proxy.port())
            try client.send("GET /delay/3000 HTTP/1.1\r\nHost: t\r\n\r\n")
            let r = client.readResponses(1)
            #expect(r.first?.status == 504)
        }
    }

    @Test func upstreamDyingMidBodyClosesTheClientConnection() async throws {
        try await self.withProxy { proxy, _ in
            let client = try RawHTTPClient(port: proxy.port())
            try client.send("GET /die-mid-body HTTP/1.1\r\nHost: t\r\n\r\n")
            let (text, closed) = client.readAll()
            #expect(closed)
            #expect(text.hasPrefix("HTTP/1.1 200"))
            #expect(text.contains("Content-Length: 100000"))
            // Far fewer body bytes than announced: the client can tell the response is incomplete.
            #expect(text.utf8.count < 100000)

            let client2 = try RawHTTPClient(port: proxy.port())
            try client2.send("GET /die-before-head HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(client2.readResponses(1).first?.status == 502)
        }
    }

    @Test func malformedAndOversizedRequests() async throws {
        try await self.withProxy { proxy, origins in
            func statusFor(_ request: String) -> String {
                guard let c = try? RawHTTPClient(port: proxy.port()), (try? c.send(request)) != nil else { return "connect failed" }
                let (text, closed) = c.readAll()
                let status = text.split(separator: " ", maxSplits: 2).dropFirst().first.flatMap { Int($0) }
                return "\(status ?? 0) \(closed ? "closed" : "open")"
            }
            #expect(statusFor("GARBAGE\r\n\r\n") == "400 closed")
            #expect(statusFor("GET / HTTP/1.1\r\n\r\n") == "400 closed")  // no Host
            #expect(statusFor("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == "400 closed")
            #expect(statusFor("GET / HTTP/1.1\r\nHost: t\r\nX-Big: \(String(repeating: "x", count: 5000))\r\n\r\n") == "431 closed")
            #expect(statusFor("GET /\(String(repeating: "u", count: 600)) HTTP/1.1\r\nHost: t\r\n\r\n") == "414 closed")
            #expect(statusFor("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n") == "413 closed")
            #expect(statusFor("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n") == "400 closed")
            #expect(origins[0].requestCount == 0)
        }
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        try await self.withProxy { proxy, _ in
            let c = try RawHTTPClient(port: proxy.port())
            try c.send(
                "GET /delay/200 HTTP/1.1\r\nHost: t\r\n\r\nGET /status/201 HTTP/1.1\r\nHost: t\r\n\r\nGET /fixed HTTP/1.1\r\nHost: t\r\n\r\nGET /status/202 HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            let r = c.readResponses(4)
            #expect(r.map(\.status) == [200, 201, 418, 202])
            #expect(r[0].body.contains("delayed page"))
        }
    }

    @Test func headNoContentAndNotModifiedAreFramedRight() async throws {
        try await self.withProxy { proxy, _ in
            let c = try RawHTTPClient(port: proxy.port())
            try c.send(
                "HEAD /bytes/5000 HTTP/1.1\r\nHost: t\r\n\r\nGET /status/204 HTTP/1.1\r\nHost: t\r\n\r\nGET /status/304 HTTP/1.1\r\nHost: t\r\n\r\nGET /bytes/10 HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            let r = c.readResponses(4, headIndexes: [0])
            try #require(r.count == 4)
            #expect(r.map(\.status) == [200, 204, 304, 200])
            #expect(r[0].header("content-length") == "5000")
            #expect(r[0].body.isEmpty)
            #expect(r[3].body == "aaaaaaaaaa")
        }
    }

    @Test func expectContinueAndEarlyHintsAreForwarded() async throws {
        try await self.withProxy { proxy, _ in
            let c = try RawHTTPClient(port: proxy.port())
            try c.send("POST /continue HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
            let interim = c.readResponses(1)
            #expect(interim.first?.status == 100)
            try c.send("hello")
            let final = c.readResponses(1)
            #expect(final.first?.status == 200)
            #expect(final.first?.body == "5\n")

            try c.send("GET /early-hints HTTP/1.1\r\nHost: t\r\n\r\n")
            let r = c.readResponses(2)
            #expect(r.map(\.status) == [103, 200])
            #expect(r.first?.header("link") == "</style.css>; rel=preload; as=style")
        }
    }

    @Test func bodiesStreamBothWaysInEveryFraming() async throws {
        try await self.withProxy { proxy, _ in
            let c = try RawHTTPClient(port: proxy.port())
            try c.send("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
            let chunked = c.readResponses(1)
            #expect(chunked.first?.body == "hello world")
            try c.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nping")
            #expect(c.readResponses(1).first?.body == "ping")
            try c.send("GET /chunked/70000 HTTP/1.1\r\nHost: t\r\n\r\n")
            let big = c.readResponses(1)
            #expect(big.first?.body.utf8.count == 70000)
            // A close-delimited upstream response reaches an HTTP/1.1 client chunked, and keep-alive survives.
            try c.send("GET /close-delimited/3000 HTTP/1.1\r\nHost: t\r\n\r\n")
            let cd = c.readResponses(1)
            #expect(cd.first?.header("transfer-encoding") == "chunked")
            #expect(cd.first?.body.utf8.count == 3000)
            try c.send("GET /fixed HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(c.readResponses(1).first?.status == 418)
        }
    }

    @Test func http10ClientGetsCloseDelimitedBody() async throws {
        try await self.withProxy { proxy, _ in
            let c = try RawHTTPClient(port: proxy.port())
            try c.send("GET /chunked/100 HTTP/1.0\r\n\r\n")
            let (text, closed) = c.readAll()
            #expect(closed)
            #expect(text.hasPrefix("HTTP/1.0 200"))
            #expect(text.hasSuffix(String(repeating: "a", count: 100)))
        }
    }

    @Test func locationPointingAtUpstreamIsRewritten() async throws {
        try await self.withProxy { proxy, origins in
            let c = try RawHTTPClient(port: proxy.port())
            try c.send("GET /redirect HTTP/1.1\r\nHost: app.test\r\n\r\n")
            let r = c.readResponses(1)
            #expect(r.first?.status == 302)
            #expect(r.first?.header("location") == "http://app.test/landing")
            #expect(!(r.first?.header("location")?.contains(String(origins[0].port)) ?? true))
        }
    }

    @Test func redirectAndFixedRoutes() async throws {
        try await self.withProxy { proxy, origins in
            let c = try RawHTTPClient(port: proxy.port())
            try c.send("GET /moved/a?b=1 HTTP/1.1\r\nHost: app.test\r\n\r\nGET /fixed HTTP/1.1\r\nHost: app.test\r\n\r\n")
            let r = c.readResponses(2)
            #expect(r.first?.status == 308)
            #expect(r.first?.header("location") == "https://app.test/moved/a?b=1")
            #expect(r.last?.status == 418)
            #expect(r.last?.body == "teapot\n")
            #expect(origins[0].requestCount == 0)
        }
    }

    @Test func otherUpgradesAreForwardedWithoutTheUpgradeAndClosed() async throws {
        try await self.withProxy { proxy, _ in
            let c = try RawHTTPClient(port: proxy.port())
            try c.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: foo/2\r\n\r\n")
            let (text, closed) = c.readAll()
            #expect(text.hasPrefix("HTTP/1.1 200"))
            #expect(!text.lowercased().contains("upgrade: foo"))
            #expect(closed)
        }
    }

    /// A masked client frame (RFC 6455 §5.2).
    static func wsFrame(opcode: UInt8, _ payload: [UInt8], fin: Bool = true) -> [UInt8] {
        var out: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        let n = payload.count
        if n < 126 {
            out.append(0x80 | UInt8(n))
        } else if n < 65536 {
            out += [0x80 | 126, UInt8(n >> 8), UInt8(n & 0xff)]
        } else {
            out.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((n >> shift) & 0xff)) }
        }
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        out += mask
        for (i, b) in payload.enumerated() { out.append(b ^ mask[i % 4]) }
        return out
    }

    /// Reads one unmasked server frame: (opcode, payload).
    static func readWSFrame(_ c: RawHTTPClient) -> (UInt8, [UInt8])? {
        guard let h = c.readExactly(2) else { return nil }
        var n = Int(h[1] & 0x7f)
        if n == 126, let e = c.readExactly(2) { n = Int(e[0]) << 8 | Int(e[1]) }
        else if n == 127, let e = c.readExactly(8) { n = e.reduce(0) { $0 << 8 | Int($1) } }
        guard let payload = c.readExactly(n) else { return nil }
        return (h[0] & 0x0f, payload)
    }

    /// An upgrade goes on a new upstream connection, even when a pooled one is idle: NIO's upgrader (like other
    /// servers) only switches on a connection's first request, and a switched connection never returns to the pool.
    @Test func webSocketAfterAPooledRequestUsesANewConnection() async throws {
        let origin = try await TestOrigin.start(name: "a")
        let proxy = try await ProxyHarness.start(yaml: Self.config(), origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let plain = try RawHTTPClient(port: proxy.port())
        try plain.send("GET /warm HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        #expect(plain.readResponses(1).first?.status == 200)
        #expect(origin.connectionCount == 1)  // parked in the pool now
        for _ in 0..<2 {
            let c = try RawHTTPClient(port: proxy.port())
            try c.send("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            #expect(c.readUntil("\r\n\r\n")?.hasPrefix("HTTP/1.1 101") == true)
        }
    }

    @Test func webSocketsPassThroughBothWays() async throws {
        try await self.withProxy { proxy, origins in
            let c = try RawHTTPClient(port: proxy.port())
            try c.send("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            let head = try #require(c.readUntil("\r\n\r\n"))
            #expect(head.hasPrefix("HTTP/1.1 101"))
            #expect(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
            #expect(head.lowercased().contains("upgrade: websocket"))
            // Text, binary (large, several TCP segments), ping, then close.
            try c.send(Self.wsFrame(opcode: 1, Array("hello through portico".utf8)))
            let text = Self.readWSFrame(c)
            #expect(text?.0 == 1 && text.map { String(decoding: $0.1, as: UTF8.self) } == "hello through portico")
            let big = (0..<300_000).map { UInt8($0 % 251) }
            try c.send(Self.wsFrame(opcode: 2, big))
            let echoed = Self.readWSFrame(c)
            #expect(echoed?.0 == 2 && echoed?.1 == big)
            try c.send(Self.wsFrame(opcode: 9, Array("ping!".utf8)))
            let pong = Self.readWSFrame(c)
            #expect(pong?.0 == 10 && pong?.1 == Array("ping!".utf8))
            try c.send(Self.wsFrame(opcode: 8, [0x03, 0xe8]))
            let close = Self.readWSFrame(c)
            #expect(close?.0 == 8)
            #expect(c.readAll().closed)
            _ = origins
        }
        // An origin refusing the upgrade (any non-101) is answered as a normal response.
        let plain = try await TestOrigin.start(name: "a", webSockets: false)
        let proxy = try await ProxyHarness.start(yaml: Self.config(), origins: [plain])
        let refused = try RawHTTPClient(port: proxy.port())
        try refused.send("GET /status/403 HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        #expect(refused.readResponses(1).first?.status == 403)
        await proxy.shutdown()
        await plain.shutdown()
    }

    /// The tunnel holds back a fast sender while the other side does not read, and closes when it idles.
    @Test func webSocketTunnelsApplyBackpressureAndIdleTimeout() async throws {
        let handshake = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        try await self.withProxy { proxy, _ in
            // The origin stops reading after its 101: what the client can push is bounded by the socket buffers
            // along the way (a few MiB each), not by the proxy's memory. Without backpressure the proxy would
            // take all 256 MiB at loopback speed.
            let stalled = try RawHTTPClient(port: proxy.port())
            try stalled.send("GET /ws-stalled HTTP/1.1\r\nHost: t\r\n" + handshake)
            #expect(stalled.readUntil("\r\n\r\n")?.hasPrefix("HTTP/1.1 101") == true)
            let accepted = stalled.sendUntilBlocked(total: 256 << 20, seconds: 2)
            #expect(accepted > 0 && accepted < 64 << 20, "the proxy took \(accepted >> 20) MiB from a client its upstream does not read")
        }
        try await self.withProxy(yaml: Self.config(timeouts: "timeouts: { read: 500ms }")) { proxy, _ in
            // Nothing moving for longer than the cluster's read timeout closes the tunnel.
            let idle = try RawHTTPClient(port: proxy.port())
            try idle.send("GET /ws HTTP/1.1\r\nHost: t\r\n" + handshake)
            #expect(idle.readUntil("\r\n\r\n")?.hasPrefix("HTTP/1.1 101") == true)
            let start = ContinuousClock.now
            #expect(idle.readAll().closed)
            #expect(ContinuousClock.now - start < .seconds(3))
        }
    }

    @Test func reloadKeepsTheListenerAndSwitchesRoutes() async throws {
        try await self.withProxy(origins: ["a", "b"]) { proxy, origins in
            let port = proxy.port()
            let c = try RawHTTPClient(port: port)
            try c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(c.readResponses(1).first?.header("x-origin") == "a")
            var yaml = Self.config(cluster: "hosts: [ { address: \"{{origin:b}}\" } ]")
            for o in origins { yaml = yaml.replacingOccurrences(of: "{{origin:\(o.name)}}", with: o.address) }
            let valid = try ConfigLoader.load(text: yaml, file: nil).get()
            let result = await proxy.server.apply(valid)
            #expect((try? result.get()) == 2)
            // Same socket, same keep-alive connection, new routes.
            try c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(c.readResponses(1).first?.header("x-origin") == "b")
            let c2 = try RawHTTPClient(port: port)
            try c2.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(c2.readResponses(1).first?.header("x-origin") == "b")
        }
    }

    @Test func idlePooledConnectionsThatCloseOrTalkAreNeverReused() async throws {
        try await self.withProxy { proxy, origins in
            // Connections the origin accepted, less those the proxy holds open (each worker has its own pool): the
            // ones the proxy has closed.
            let breaker = await proxy.server.hosts.breaker(forCluster: "c")
            let closed = { origins[0].connectionCount - breaker.connections }
            for path in ["/close-idle/50", "/garbage-idle/50"] {
                let before = origins[0].connectionCount
                let closedBefore = closed()
                let c = try RawHTTPClient(port: proxy.port())
                try c.send("GET \(path) HTTP/1.1\r\nHost: t\r\n\r\n")
                #expect(c.readResponses(1).first?.status == 200)
                // 50 ms later the origin closes the parked connection (or writes stray bytes on it); the proxy evicts
                // it and it closes.
                try await waitUntil("the proxy evicts the connection parked after \(path)") { closed() > closedBefore }
                // The parked connection was evicted, so this request goes out on a new one and succeeds.
                for _ in 0..<4 {
                    try c.send("GET /status/201 HTTP/1.1\r\nHost: t\r\n\r\n")
                    let r = c.readResponses(1).first
                    #expect(r?.status == 201)
                    #expect(r?.body.contains("stray") == false)
                }
                #expect(origins[0].connectionCount > before)
            }
        }
    }

    @Test func reusedConnectionFailureIsRetriedOnlyForIdempotentMethods() async throws {
        let yaml = Self.config().replacingOccurrences(of: "listeners: [ { name: main, address: \"127.0.0.1:0\"", with: "workers: 1\nlisteners: [ { name: main, address: \"127.0.0.1:0\"")
        let origin = try await TestOrigin.start(name: "a")
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let c = try RawHTTPClient(port: proxy.port())
        // Arm the pooled connection, then send a GET on it: the origin drops it, the proxy retries on a new one.
        try c.send("GET /arm-drop HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(c.readResponses(1).first?.status == 200)
        try c.send("GET /status/200 HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(c.readResponses(1).first?.status == 200)
        // A POST is not retried: the client gets 502.
        try c.send("GET /arm-drop HTTP/1.1\r\nHost: t\r\n\r\n")
        #expect(c.readResponses(1).first?.status == 200)
        let post = try RawHTTPClient(port: proxy.port())
        try post.send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
        #expect(post.readResponses(1).first?.status == 502)
    }

    @Test func accessLogSaysWhy() async throws {
        let path = "/tmp/portico-access-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).log"
        defer { unlink(path) }
        let yaml = Self.config(timeouts: "timeouts: { response_header: 200ms }")
            .replacingOccurrences(of: "access_log: { destination: \"off\" }", with: "access_log: { format: json, destination: \"\(path)\" }")
        try await self.withProxy(yaml: yaml) { proxy, _ in
            let c = try RawHTTPClient(port: proxy.port())
            try c.send("GET /delay/2000 HTTP/1.1\r\nHost: t\r\nUser-Agent: tester\r\n\r\n")
            #expect(c.readResponses(1).first?.status == 504)
            let c2 = try RawHTTPClient(port: proxy.port())
            try c2.send("GET /status/201 HTTP/1.1\r\nHost: t\r\n\r\n")
            #expect(c2.readResponses(1).first?.status == 201)
            // The worker flushes its buffer every 100 ms.
            try await waitUntil("both requests are in the access log") {
                ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").count >= 2
            }
        }
        let lines = (try String(contentsOfFile: path, encoding: .utf8)).split(separator: "\n")
        #expect(lines.count == 2)
        let timeout = lines.first { $0.contains("\"status\":504") }
        #expect(timeout?.contains("\"reason\":\"upstream_response_header_timeout\"") == true)
        #expect(timeout?.contains("\"user_agent\":\"tester\"") == true)
        #expect(lines.contains { $0.contains("\"status\":201") && $0.contains("\"reason\":null") && $0.contains("\"route\":\"all\"") })
    }

    /// 1 GiB each way through the proxy, with backpressure end to end: the process's resident memory (proxy,
    /// origin and client together) grows by less than 64 MiB.
    @Test func oneGibibyteEachWayWithBoundedMemory() async throws {
        let yaml = """
            listeners: [ { name: main, address: "127.0.0.1:0", limits: { max_body_bytes: 0 } } ]
            access_log: { destination: "off" }
            routes: [ { cluster: c } ]
            clusters: [ { name: c, hosts: [ { address: "{{origin:a}}" } ] } ]
            """
        try await self.withProxy(yaml: yaml) { proxy, _ in
            let size = 1 << 30
            // Without readings (no /proc) the bound below would hold whatever the growth: that is a failure.
            let idle = try #require(residentBytes(), "resident memory cannot be read from /proc/self/statm")
            var peak = idle
            var failedReadings = 0
            func sample() {
                if let bytes = residentBytes() { peak = max(peak, bytes) } else { failedReadings += 1 }
            }
            let r = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://127.0.0.1:\(proxy.port())/bytes/\(size)"), timeout: .seconds(300))
            var received = 0
            for try await chunk in r.body {
                received += chunk.readableBytes
                if received % (64 << 20) < chunk.readableBytes { sample() }
            }
            #expect(received == size)

            var upload = HTTPClientRequest(url: "http://127.0.0.1:\(proxy.port())/upload")
            upload.method = .POST
            let chunk = ByteBuffer(repeating: 0x61, count: 64 * 1024)
            let count = size / chunk.readableBytes
            upload.body = .stream(AsyncStreamOfBuffers(chunk: chunk, count: count, onEvery: 1024) { sample() }, length: .known(Int64(size)))
            let u = try await HTTPClient.shared.execute(upload, timeout: .seconds(300))
            #expect(String(buffer: try await u.body.collect(upTo: 1024)) == "\(size)\n")
            sample()
            #expect(failedReadings == 0, "\(failedReadings) resident memory readings failed")
            #expect(peak - idle < 64 << 20, "resident memory grew by \((peak - idle) >> 20) MiB")
        }
    }
}

/// The process's resident set size, from /proc/self/statm; nil when it cannot be read (no /proc) or reads 0.
func residentBytes() -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return nil }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]), pages > 0 else { return nil }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Waits for something the test can observe (a counter, a state, a file) instead of sleeping for a fixed time:
/// polls `condition` every 10 ms. When it does not hold within `timeout`, records an issue saying what did not
/// happen and throws, so the test stops rather than going on from a state it never reached.
func waitUntil(
    _ what: String,
    timeout: Duration = .seconds(5),
    sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return }
        try #require(ContinuousClock.now < deadline, "not within \(timeout): \(what)", sourceLocation: sourceLocation)
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// `count` copies of one buffer, calling `probe` every `onEvery` buffers.
struct AsyncStreamOfBuffers: AsyncSequence, @unchecked Sendable {
    // @unchecked: `probe` is only called from the one task iterating the sequence.
    typealias Element = ByteBuffer
    let chunk: ByteBuffer
    let count: Int
    var onEvery = Int.max
    var probe: () -> Void = {}

    struct AsyncIterator: AsyncIteratorProtocol {
        let base: AsyncStreamOfBuffers
        var sent = 0
        mutating func next() async -> ByteBuffer? {
            guard self.sent < self.base.count else { return nil }
            self.sent += 1
            if self.sent % self.base.onEvery == 0 { self.base.probe() }
            return self.base.chunk
        }
    }
    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: self) }
}
