//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import PorticoTestSupport
import Testing

/// `ip_rules` through real listeners: a listener refuses at accept (the connection closes, nothing is answered),
/// a route answers 403, and behind a trusted proxy the forwarded client address is the one checked.
@Suite(.serialized) struct IPRulesIntegrationTests {
    @Test func listenerAndRouteRules() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let yaml = """
            listeners:
              - { name: closed, address: "127.0.0.1:0", ip_rules: { deny: ["127.0.0.0/8"] } }
              - { name: open, address: "127.0.0.1:0", ip_rules: { allow: ["127.0.0.1", "::1"] } }
            access_log: { destination: "off" }
            forwarding: { trusted_proxies: ["127.0.0.1/32"] }
            routes:
              - { match: { path_prefix: /office/ }, cluster: c, ip_rules: { allow: ["192.0.2.0/24"] } }
              - { cluster: c }
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let refused = try RawHTTPClient(port: proxy.port(of: "closed"))
        try? refused.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        let (text, closed) = refused.readAll()
        #expect(text.isEmpty && closed)

        func get(_ path: String, _ fields: [String] = []) throws -> Int? {
            let c = try RawHTTPClient(port: proxy.port(of: "open"))
            try c.send("GET \(path) HTTP/1.1\r\nHost: t\r\n" + fields.map { $0 + "\r\n" }.joined() + "\r\n")
            return c.readResponses(1).first?.status
        }
        #expect(try get("/") == 200)
        #expect(try get("/office/x") == 403)
        // 127.0.0.1 is a trusted proxy: the office address it forwards is the client.
        #expect(try get("/office/x", ["X-Forwarded-For: 192.0.2.10"]) == 200)
        #expect(try get("/office/x", ["X-Forwarded-For: 192.0.2.10, 198.51.100.7"]) == 403)
        #expect(origin.requestCount == 2)  // the refused ones never reached it
    }
}
