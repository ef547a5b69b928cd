//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import PorticoTestSupport
import Testing

/// `X-Request-ID` (issue 10 §6): made for each request (32 hex digits) or kept from a trusted proxy, sent
/// upstream and back to the client; an untrusted client's own is replaced.
@Suite(.serialized) struct RequestIDTests {
    @Test func madeKeptAndReturned() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let yaml = """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes: [ { cluster: c } ]
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """
        let trusted = yaml + "\nforwarding: { trusted_proxies: [\"127.0.0.1/32\"] }\n"
        for (config, keep) in [(yaml, false), (trusted, true)] {
            let proxy = try await ProxyHarness.start(yaml: config, origins: [origin], workers: 1)
            let c = try RawHTTPClient(port: proxy.port())
            try c.send("GET / HTTP/1.1\r\nHost: t\r\nX-Request-ID: from-the-client-1\r\n\r\n")
            let r = try #require(c.readResponses(1).first)
            let upstream = try #require(r.body.split(separator: "\n").first { $0.hasPrefix("x-request-id: ") }).dropFirst(14)
            #expect(r.header("x-request-id") == String(upstream))
            if keep {
                #expect(upstream == "from-the-client-1")
            } else {
                #expect(upstream.utf8.count == 32 && upstream.allSatisfy { $0.isHexDigit })
                try c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                #expect(c.readResponses(1).first?.header("x-request-id") != r.header("x-request-id"))  // one per request
            }
            await proxy.shutdown()
        }
        await origin.shutdown()
    }
}
