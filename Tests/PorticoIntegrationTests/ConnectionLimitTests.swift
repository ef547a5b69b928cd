//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import PorticoCore
import PorticoTestSupport
import Testing

/// Connection caps per listener (issue 10 §2): in all, per client address, and new connections per second per
/// address. Over a cap a connection is closed at once, before anything is read or answered.
@Suite(.serialized) struct ConnectionLimitTests {
    static func yaml(_ limits: String) -> String {
        """
        listeners: [ { name: main, address: "127.0.0.1:0", limits: { \(limits) } } ]
        access_log: { destination: "off" }
        routes: [ { cluster: c } ]
        clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
        """
    }

    /// A connection that was admitted answers; a refused one is closed with nothing said.
    static func admitted(_ c: RawHTTPClient) throws -> Bool {
        try c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        return c.readResponses(1).first?.status == 200
    }

    @Test func perAddressAndTotalCaps() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: Self.yaml("max_connections_per_ip: 2"), origins: [origin], workers: 2)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let first = try RawHTTPClient(port: proxy.port())
        let second = try RawHTTPClient(port: proxy.port())
        #expect(try Self.admitted(first) && Self.admitted(second))
        let third = try RawHTTPClient(port: proxy.port())
        #expect(!(try Self.admitted(third)))
        // When one closes, a new one is admitted (the count is shared by both workers).
        _ = consume first
        try await waitUntil("a closed connection frees its place") {
            (try? Self.admitted(try RawHTTPClient(port: proxy.port()))) == true
        }
        _ = second
    }

    @Test func totalCap() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: Self.yaml("max_connections: 3"), origins: [origin], workers: 2)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let open = try (0..<3).map { _ in try RawHTTPClient(port: proxy.port()) }
        for c in open { #expect(try Self.admitted(c)) }
        #expect(!(try Self.admitted(try RawHTTPClient(port: proxy.port()))))
    }

    @Test func newConnectionRate() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: Self.yaml("max_connection_rate_per_ip: 3"), origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        // Ten at once: the burst (one second's worth, 3) gets in, most of the rest not. (A token may refill while
        // they are made, so "at most 4".)
        var accepted = 0
        for _ in 0..<10 {
            let c = try RawHTTPClient(port: proxy.port())
            try c.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            if c.readResponses(1).first?.status == 200 { accepted += 1 }
        }
        #expect(accepted >= 3 && accepted <= 4, "\(accepted)")
    }

    @Test func limiterUnit() {
        let limiter = ConnectionLimiter()
        let a = IPAddressBytes("192.0.2.1")!, b = IPAddressBytes("192.0.2.2")!
        let limits = ConnectionLimiter.Limits(maxConnections: 3, maxPerAddress: 2, ratePerAddress: 0)
        #expect(limiter.admit(a, limits: limits, now: 0) == nil && limiter.admit(a, limits: limits, now: 0) == nil)
        #expect(limiter.admit(a, limits: limits, now: 0) == .maxPerAddress)
        #expect(limiter.admit(b, limits: limits, now: 0) == nil)
        #expect(limiter.admit(b, limits: limits, now: 0) == .maxConnections)
        limiter.release(a, limits: limits, now: 0)
        #expect(limiter.admit(b, limits: limits, now: 0) == nil && limiter.openConnections == 3)
        #expect(limiter.takeRefusals() == 2 && limiter.takeRefusals() == 0)
        let rate = ConnectionLimiter.Limits(ratePerAddress: 2)
        let c = IPAddressBytes("2001:db8::1")!
        #expect(limiter.admit(c, limits: rate, now: 0) == nil && limiter.admit(c, limits: rate, now: 0) == nil)
        #expect(limiter.admit(c, limits: rate, now: 100_000_000) == .rate)  // 0.1 s: 0.2 tokens back
        #expect(limiter.admit(c, limits: rate, now: 600_000_000) == nil)  // 0.6 s: 1.2 tokens back
    }
}
