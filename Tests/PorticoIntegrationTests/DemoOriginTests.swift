//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import PorticoDemoOrigin
import PorticoTestSupport
import Testing

/// The built-in demo origin the bundled config uses (its own module: the shipped binary links no test code).
@Suite struct DemoOriginTests {
    @Test func everyPathAnswers() async throws {
        let origin = try await DemoOrigin.start(name: "demo", host: "127.0.0.1", port: 0)
        defer { Task { await origin.shutdown() } }
        let port = try #require(origin.localAddress?.port)
        func get(_ target: String) throws -> RawResponse {
            let c = try RawHTTPClient(port: port)
            try c.send("GET \(target) HTTP/1.1\r\nHost: t\r\nX-Probe: 1\r\n\r\n")
            return try #require(c.readResponses(1).first)
        }
        let page = try get("/anything?x=1")
        #expect(page.status == 200 && page.header("x-origin") == "demo" && page.body.contains("target: /anything?x=1") && page.body.contains("x-probe: 1"))
        #expect(try get("/health").body == "ok\n")
        #expect(try get("/status/404").status == 404)
        #expect(try get("/delay/10").status == 200)
        let asset = try get("/assets/site.css")
        #expect(asset.header("content-type") == "text/css" && asset.header("cache-control") == "public, max-age=60" && asset.body.utf8.count == 20 * 1024)
        let ws = try RawHTTPClient(port: port)
        try ws.send("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        #expect(ws.readUntil("\r\n\r\n")?.hasPrefix("HTTP/1.1 101") == true)
        try ws.send(ProxyIntegrationTests.wsFrame(opcode: 1, Array("echo".utf8)))
        #expect(ProxyIntegrationTests.readWSFrame(ws).map { String(decoding: $0.1, as: UTF8.self) } == "echo")
    }
}
