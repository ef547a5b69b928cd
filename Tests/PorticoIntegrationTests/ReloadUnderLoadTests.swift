//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import PorticoControl
import PorticoEngine
import PorticoTestSupport
import Synchronization
import Testing

/// Reloads under load (issue 11 §5): a bounded load loop from several clients while the config is reloaded ten
/// times, by the path SIGHUP takes and by the admin API, adding and removing a listener and changing a cluster's
/// hosts. Nothing fails, and a WebSocket and an HTTP/2 stream opened before the first reload work after the last.
@Suite(.serialized) struct ReloadUnderLoadTests {
    static func config(_ generation: Int, a: TestOrigin, b: TestOrigin, cert: (String, String)) -> String {
        let extra = generation % 2 == 1 ? "\n  - { name: extra, address: \"127.0.0.1:0\" }" : ""
        let hosts = generation % 3 == 2 ? "[ { address: \"\(a.address)\" } ]" : "[ { address: \"\(a.address)\" }, { address: \"\(b.address)\" } ]"
        return """
            admin: { address: "127.0.0.1:0" }
            access_log: { destination: "off" }
            listeners:
              - { name: main, address: "127.0.0.1:0" }
              - { name: https, address: "127.0.0.1:0", tls: { certificates: [ { cert_file: "\(cert.0)", key_file: "\(cert.1)" } ] } }\(extra)
            routes: [ { name: app, cluster: c } ]
            clusters: [ { name: c, hosts: \(hosts) } ]
            """
    }

    @Test func tenReloadsUnderLoadDropNothing() async throws {
        let a = try await TestOrigin.start(name: "a")
        let b = try await TestOrigin.start(name: "b")
        let certs = try TestCertificates()
        let cert = try certs.issue("localhost", dnsNames: ["localhost"])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("portico-reload-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("portico.yaml").path
        try Self.config(0, a: a, b: b, cert: cert).write(toFile: path, atomically: true, encoding: .utf8)
        let proxy = try await ProxyHarness.start(yaml: Self.config(0, a: a, b: b, cert: cert), origins: [a, b], workers: 2, configPath: path)
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(certs.caFile)
        var config = HTTPClient.Configuration(tlsConfiguration: tls)
        config.httpVersion = .automatic
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        let main = proxy.port(of: "main")
        let adminPort = try #require(await proxy.server.adminAddress?.port)

        // A WebSocket through the main listener.
        let ws = try RawHTTPClient(port: main, timeoutSeconds: 10)
        try ws.send("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        #expect(ws.readUntil("\r\n\r\n")?.hasPrefix("HTTP/1.1 101") == true)
        try ws.send(ProxyIntegrationTests.wsFrame(opcode: 1, Array("before".utf8)))
        #expect(ProxyIntegrationTests.readWSFrame(ws).map { String(decoding: $0.1, as: UTF8.self) } == "before")

        // An HTTP/2 stream: a streamed upload whose echo streams back.
        let (upload, writer) = AsyncStream<ByteBuffer>.makeStream()
        var post = HTTPClientRequest(url: "https://localhost:\(proxy.port(of: "https"))/echo")
        post.method = .POST
        post.body = .stream(upload, length: .unknown)
        writer.yield(ByteBuffer(string: "first part;"))
        let echo = try await client.execute(post, timeout: .seconds(60))
        #expect(echo.version == .http2)
        var echoed = echo.body.makeAsyncIterator()
        #expect(try await echoed.next().map { String(buffer: $0) } == "first part;")

        // The load: 5 clients × 500 requests on keep-alive connections.
        let counters = LoadCounters()
        let load = Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<5 {
                    group.addTask {
                        for i in 0..<500 {
                            do {
                                let r = try await client.execute(HTTPClientRequest(url: "http://127.0.0.1:\(main)/item/\(i)"), timeout: .seconds(10))
                                _ = try await r.body.collect(upTo: 1 << 20)
                                if r.status != .ok { counters.failures.withLock { $0.append("status \(r.status.code)") } }
                            } catch {
                                counters.failures.withLock { $0.append("\(error)") }
                            }
                            counters.completed.add(1, ordering: .relaxed)
                        }
                    }
                }
            }
        }

        // Ten reloads spread over the load: odd ones by SIGHUP's path (the file), even ones by the admin API.
        for generation in 1...10 {
            try await waitUntil("the load goes on (\(generation * 200) requests)", timeout: .seconds(30)) {
                counters.completed.load(ordering: .relaxed) >= generation * 200
            }
            let text = Self.config(generation, a: a, b: b, cert: cert)
            if generation % 2 == 1 {
                try text.write(toFile: path, atomically: true, encoding: .utf8)
                guard case .success = await proxy.server.reloadFromFile() else { Issue.record("reload \(generation) refused"); break }
            } else {
                let status = try await offThePool {
                    let c = try RawHTTPClient(port: adminPort, timeoutSeconds: 30)
                    try c.send("POST /config HTTP/1.1\r\nHost: admin\r\nIf-Match: *\r\nContent-Length: \(text.utf8.count)\r\n\r\n\(text)")
                    return c.readResponses(1).first?.status
                }
                #expect(status == 200, "admin reload \(generation)")
            }
            let bound = await proxy.server.engine.boundAddresses
            #expect((bound["extra"] != nil) == (generation % 2 == 1), "generation \(generation): extra listener")
        }
        await load.value
        #expect(counters.completed.load(ordering: .relaxed) == 2500)
        #expect(counters.failures.withLock { $0 }.isEmpty, "\(counters.failures.withLock { $0.prefix(5) })")
        #expect(await proxy.server.engine.generation == 11)

        // Both long-lived exchanges still work.
        try ws.send(ProxyIntegrationTests.wsFrame(opcode: 1, Array("after ten reloads".utf8)))
        #expect(ProxyIntegrationTests.readWSFrame(ws).map { String(decoding: $0.1, as: UTF8.self) } == "after ten reloads")
        writer.yield(ByteBuffer(string: "second part"))
        writer.finish()
        var rest = ""
        while let part = try await echoed.next() { rest += String(buffer: part) }
        #expect(rest == "second part")

        try await client.shutdown()
        await proxy.shutdown()
        await a.shutdown()
        await b.shutdown()
    }
}

private final class LoadCounters: Sendable {
    let completed = Atomic<Int>(0)
    let failures = Mutex<[String]>([])
}
