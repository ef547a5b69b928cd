//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import PorticoTestSupport
import Testing

/// Body limits (issue 10 §2): none by default (a streaming proxy), per listener and per route when asked.
@Suite(.serialized) struct BodyLimitTests {
    @Test func defaultUnlimitedAndPerRoute() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let yaml = """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes:
              - { match: { path_prefix: /small/ }, cluster: c, max_body_bytes: 1KiB }
              - { cluster: c }
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        func post(_ path: String, _ size: Int, chunked: Bool = false) throws -> Int? {
            let c = try RawHTTPClient(port: proxy.port(), timeoutSeconds: 10)
            let body = String(repeating: "b", count: size)
            if chunked {
                try c.send("POST \(path) HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\(String(size, radix: 16))\r\n\(body)\r\n0\r\n\r\n")
            } else {
                try c.send("POST \(path) HTTP/1.1\r\nHost: t\r\nContent-Length: \(size)\r\n\r\n\(body)")
            }
            return c.readResponses(1).first?.status
        }
        #expect(try post("/upload", 12 << 20) == 200)  // no default limit (it was 10MiB)
        #expect(try post("/small/upload", 1024) == 200)
        #expect(try post("/small/upload", 1025) == 413)
        #expect(try post("/small/upload", 4096, chunked: true) == 413)
    }
}
