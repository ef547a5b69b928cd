//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import PorticoControl
import PorticoCore
import PorticoEngine
import PorticoTestSupport
import Testing

/// HTTP/2 downstream: h2 by ALPN with a real HTTP/2 client (AsyncHTTPClient), h2c with prior knowledge, and
/// the rapid-reset defence, all against HTTP/1.1 origins.
@Suite(.serialized) struct HTTP2IntegrationTests {
    @Test func h2OverTLSSharesRoutesAndPoolsWithHTTP1() async throws {
        let certs = try TestCertificates()
        let cert = try certs.issue("localhost", dnsNames: ["localhost"])
        let origin = try await TestOrigin.start(name: "o")
        let yaml = """
            listeners:
              - name: https
                address: "127.0.0.1:0"
                tls: { certificates: [ { cert_file: "\(cert.0)", key_file: "\(cert.1)" } ] }
            access_log: { destination: "off" }
            routes:
              - { match: { path: /fixed }, respond: { status: 418, body: "teapot" } }
              - { cluster: c }
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 1)
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(certs.caFile)
        var config = HTTPClient.Configuration(tlsConfiguration: tls)
        config.httpVersion = .automatic
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        let base = "https://localhost:\(proxy.port())"

        do {
            let r = try await client.execute(HTTPClientRequest(url: base + "/page?q=1"), timeout: .seconds(10))
            #expect(r.version == .http2)
            #expect(r.status == .ok)
            let body = String(buffer: try await r.body.collect(upTo: 1 << 20))
            #expect(body.contains("target: /page?q=1"))
            #expect(body.contains("host: localhost:"))
            #expect(body.contains("x-forwarded-proto: https"))
            #expect(r.headers["connection"].isEmpty)

            // Many concurrent streams on one connection, each a separate request upstream; a body both ways.
            try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<50 {
                    group.addTask {
                        let r = try await client.execute(HTTPClientRequest(url: base + "/status/\(200 + i % 3)"), timeout: .seconds(10))
                        _ = try await r.body.collect(upTo: 1 << 20)
                        return Int(r.status.code)
                    }
                }
                var codes: [Int] = []
                for try await c in group { codes.append(c) }
                #expect(codes.count == 50 && codes.allSatisfy { (200...202).contains($0) })
            }
            var post = HTTPClientRequest(url: base + "/echo")
            post.method = .POST
            post.body = .bytes(ByteBuffer(repeating: 0x62, count: 300_000))
            let echoed = try await client.execute(post, timeout: .seconds(10))
            #expect(try await echoed.body.collect(upTo: 1 << 20).readableBytes == 300_000)
            let fixed = try await client.execute(HTTPClientRequest(url: base + "/fixed"), timeout: .seconds(10))
            #expect(fixed.status.code == 418)
        } catch {
            Issue.record("h2 requests failed: \(error)")
        }
        try await client.shutdown()
        // The client's connections close; the proxy's side follows.
        try await waitUntil("the proxy's connections closed after the client left") {
            await proxy.server.engine.openConnections() == 0
        }
        await proxy.shutdown()
        await origin.shutdown()
    }

    /// A raw HTTP/2 client: writes frames itself, reports what the server sent.
    final class FrameRecorder: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTP2Frame
        var frames: [HTTP2Frame.FramePayload] = []
        let closed: EventLoopPromise<Void>
        /// Conditions a test waits for, checked at each frame (`until`); all released when the connection closes.
        private var waiters: [(condition: ([HTTP2Frame.FramePayload]) -> Bool, promise: EventLoopPromise<Void>)] = []
        init(closed: EventLoopPromise<Void>) { self.closed = closed }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            self.frames.append(self.unwrapInboundIn(data).payload)
            self.waiters.removeAll { w in
                guard w.condition(self.frames) else { return false }
                w.promise.succeed(())
                return true
            }
        }
        func channelInactive(context: ChannelHandlerContext) {
            self.closed.succeed(())
            for w in self.waiters { w.promise.succeed(()) }
            self.waiters = []
        }

        /// Waits until the frames received satisfy `condition` (checked as each frame arrives, no polling), the
        /// connection closes, or `timeout` passes (an error); then returns what `result` makes of the frames.
        func until<T: Sendable>(_ channel: any Channel, timeout: TimeAmount = .seconds(5), _ condition: @escaping ([HTTP2Frame.FramePayload]) -> Bool,
                                then result: @escaping ([HTTP2Frame.FramePayload]) -> T) async throws -> T {
            try await channel.eventLoop.flatSubmit { [self] in
                let promise = channel.eventLoop.makePromise(of: Void.self)
                if condition(self.frames) || !channel.isActive {
                    promise.succeed(())
                } else {
                    self.waiters.append((condition, promise))
                    let timer = channel.eventLoop.scheduleTask(in: timeout) { promise.fail(ChannelError.connectTimeout(timeout)) }
                    promise.futureResult.whenComplete { _ in timer.cancel() }
                }
                return promise.futureResult.map { result(self.frames) }
            }.get()
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
    }

    /// A raw HTTP/2 (prior knowledge) connection to the proxy, recording every frame it receives.
    static func connect(port: Int) async throws -> (any Channel, FrameRecorder) {
        let group = MultiThreadedEventLoopGroup.singleton
        let recorder = FrameRecorder(closed: group.next().makePromise(of: Void.self))
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(NIOHTTP2Handler(mode: .client, contentLengthValidation: .disabled))
                    try ch.pipeline.syncOperations.addHandler(recorder)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return (channel, recorder)
    }

    /// What a raw client has received so far: the header blocks, the DATA bytes, and whether DATA ended the stream.
    static func received(_ channel: any Channel, _ recorder: FrameRecorder) async throws -> (heads: [HPACKHeaders], bytes: [UInt8], ended: Bool) {
        try await channel.eventLoop.submit {
            var heads: [HPACKHeaders] = []
            var bytes: [UInt8] = []
            var ended = false
            for p in recorder.frames {
                if case .headers(let h) = p { heads.append(h.headers) }
                if case .data(let d) = p, case .byteBuffer(let b) = d.data {
                    bytes += b.readableBytesView
                    ended = ended || d.endStream
                }
            }
            return (heads, bytes, ended)
        }.get()
    }

    /// An h2c (prior knowledge) listener in front of the one origin `o`.
    static let h2cYAML = """
        listeners: [ { name: h2c, address: "127.0.0.1:0", http2: { cleartext: true } } ]
        access_log: { destination: "off" }
        routes: [ { cluster: c } ]
        clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
        """

    @Test func h2cPriorKnowledgeAndRapidResetIsCutOff() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: Self.h2cYAML, origins: [origin], workers: 1, logLevel: .critical)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }

        func headers(_ path: String) -> HPACKHeaders {
            [":method": "GET", ":path": path, ":scheme": "http", ":authority": "t"]
        }
        /// Sends one GET on stream 1 and returns the `:status` the server answered.
        func status(_ path: String, on channel: any Channel, _ recorder: FrameRecorder) async throws -> String? {
            try await channel.writeAndFlush(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: headers(path), endStream: true))))
            let statusOf: ([HTTP2Frame.FramePayload]) -> String? = { frames in
                frames.compactMap { p -> String? in
                    if case .headers(let h) = p { return h.headers.first(name: ":status") }
                    return nil
                }.first
            }
            return try await recorder.until(channel, { statusOf($0) != nil }, then: statusOf)
        }

        // One well-formed request.
        let (channel, recorder) = try await Self.connect(port: proxy.port())
        #expect(try await status("/status/201", on: channel, recorder) == "201")
        try? await channel.close()

        // Rapid reset (CVE-2023-44487): open and cancel streams in a burst; the server answers with GOAWAY and
        // closes this connection, and others keep working.
        let (attacker, attackRecorder) = try await Self.connect(port: proxy.port())
        for i in 0..<400 {
            let id = HTTP2StreamID(1 + 2 * i)
            attacker.write(HTTP2Frame(streamID: id, payload: .headers(.init(headers: headers("/delay/1000")))), promise: nil)
            attacker.write(HTTP2Frame(streamID: id, payload: .rstStream(.cancel)), promise: nil)
        }
        attacker.flush()
        try await attackRecorder.closed.futureResult.get()
        let goaway = try await attacker.eventLoop.submit {
            attackRecorder.frames.contains { if case .goAway = $0 { return true } else { return false } }
        }.get()
        #expect(goaway)

        let (again, againRecorder) = try await Self.connect(port: proxy.port())
        #expect(try await status("/status/202", on: again, againRecorder) == "202")
        try? await again.close()
    }

    @Test func gracefulShutdownSendsGoawayAndFinishesStreams() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let yaml = """
            listeners: [ { name: h2c, address: "127.0.0.1:0", http2: { cleartext: true } } ]
            access_log: { destination: "off" }
            shutdown_grace: 5s
            routes: [ { cluster: c } ]
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 1, logLevel: .critical)
        let (channel, recorder) = try await Self.connect(port: proxy.port())
        let headers: HPACKHeaders = [":method": "GET", ":path": "/delay/600", ":scheme": "http", ":authority": "t"]
        try await channel.writeAndFlush(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: headers, endStream: true))))
        // The request is in flight once the origin has it.
        try await waitUntil("the origin received the request") { origin.requestCount >= 1 }
        await proxy.shutdown()  // returns once in-flight work is done
        try await recorder.closed.futureResult.get()
        let (goaway, status, data) = try await channel.eventLoop.submit { () -> (Bool, String?, Int) in
            var goaway = false
            var status: String?
            var data = 0
            for p in recorder.frames {
                switch p {
                case .goAway: goaway = true
                case .headers(let h): status = status ?? h.headers.first(name: ":status")
                case .data(let d): if case .byteBuffer(let b) = d.data { data += b.readableBytes }
                default: break
                }
            }
            return (goaway, status, data)
        }.get()
        let kinds = try await channel.eventLoop.submit { recorder.frames.map { "\($0)".prefix(40) } }.get()
        #expect(goaway)
        #expect(status == "200", "frames: \(kinds)")
        #expect(data > 0)
        await origin.shutdown()
    }

    @Test func http2UpstreamsMultiplexOneConnectionPerWorker() async throws {
        let origin = try await TestOrigin.start(name: "h2-origin", http2: true)
        let yaml = """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes: [ { cluster: c } ]
            clusters: [ { name: c, protocol: h2c, hosts: [ { address: "{{origin:h2-origin}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 1, logLevel: .critical)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let clients = try (0..<4).map { _ in try RawHTTPClient(port: proxy.port()) }
        for round in 0..<5 {
            for c in clients { try c.send("GET /status/\(200 + round % 2) HTTP/1.1\r\nHost: t\r\n\r\n") }
            for c in clients {
                let r = c.readResponses(1).first
                #expect(r?.status == 200 + round % 2)
                #expect(r?.header("x-origin") == "h2-origin")
            }
        }
        try clients[0].send("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        #expect(clients[0].readResponses(1).first?.body == "hello")
        // Twenty-one requests, one connection: HTTP/2 multiplexes them.
        #expect(origin.connectionCount == 1)
        #expect(origin.requestCount == 21)
    }

    @Test func trailersPassThroughHTTP2BothSides() async throws {
        let origin = try await TestOrigin.start(name: "grpc", http2: true)
        let yaml = """
            listeners: [ { name: h2c, address: "127.0.0.1:0", http2: { cleartext: true } } ]
            access_log: { destination: "off" }
            routes: [ { cluster: c } ]
            clusters: [ { name: c, protocol: h2c, hosts: [ { address: "{{origin:grpc}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 1, logLevel: .critical)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let (channel, recorder) = try await Self.connect(port: proxy.port())
        let request: HPACKHeaders = [
            ":method": "POST", ":path": "/trailers", ":scheme": "http", ":authority": "t", "content-type": "application/grpc",
            "te": "trailers",
        ]
        channel.write(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: request))), promise: nil)
        try await channel.writeAndFlush(HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(ByteBuffer(bytes: [0, 0, 0, 0, 0])), endStream: true))))
        // Until the response's end (its trailers end the stream) or a reset.
        let blocks = try await recorder.until(channel, { frames in
            frames.contains { p in
                switch p {
                case .headers(let h): return h.endStream
                case .data(let d): return d.endStream
                case .rstStream, .goAway: return true
                default: return false
                }
            }
        }, then: { frames in
            frames.compactMap { p -> HPACKHeaders? in
                if case .headers(let h) = p { return h.headers }
                return nil
            }
        })
        #expect(blocks.first?.first(name: ":status") == "200")
        #expect(blocks.count == 2)
        #expect(blocks.last?.first(name: "grpc-status") == "0")
        #expect(blocks.last?.first(name: "grpc-message") == "ok")
        try? await channel.close()
    }

    /// HTTP/2 → HTTP/1.1 header conversion (RFC 9113 §8.3, §8.2.3): `:authority` becomes Host, split Cookie fields
    /// are joined with "; ", pseudo-headers do not leak, and the upstream sees an HTTP/1.1 request.
    @Test func http2HeadersBecomeAnHTTP1Request() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: Self.h2cYAML, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let (channel, recorder) = try await Self.connect(port: proxy.port())
        let headers = HPACKHeaders([
            (":method", "GET"), (":path", "/page?x=1"), (":scheme", "http"), (":authority", "app.example:8443"),
            ("cookie", "a=1"), ("user-agent", "raw-h2"), ("cookie", "b=2, c"),
        ])
        try await channel.writeAndFlush(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: headers, endStream: true))))
        var body = ""
        for _ in 0..<100 where !body.contains("user-agent") {
            try await Task.sleep(nanoseconds: 20_000_000)
            body = String(decoding: try await Self.received(channel, recorder).bytes, as: UTF8.self)
        }
        #expect(body.contains("target: /page?x=1"))
        #expect(body.contains("host: app.example:8443"))
        #expect(body.contains("cookie: a=1; b=2, c"))
        #expect(!body.contains("cookie: a=1\n"))
        #expect(!body.contains(":authority") && !body.contains(":path") && !body.contains(":scheme"))
        #expect(body.contains("x-forwarded-proto: http"))
        try? await channel.close()
    }

    /// A request with no authority at all (neither `:authority` nor `host`, RFC 9113 §8.3.1) is refused like an
    /// HTTP/1.1 request without Host: a 400, and nothing reaches the origin; a second stream on the connection is
    /// answered as usual.
    @Test func aRequestWithoutAuthorityIsRefused() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: Self.h2cYAML, origins: [origin], workers: 1, logLevel: .critical)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let (channel, recorder) = try await Self.connect(port: proxy.port())
        let headers = HPACKHeaders([(":method", "GET"), (":path", "/admin"), (":scheme", "http")])
        try await channel.writeAndFlush(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: headers, endStream: true))))
        let status = try await recorder.until(channel, { $0.contains { if case .headers = $0 { true } else { false } } }) { frames in
            frames.lazy.compactMap { if case .headers(let h) = $0 { h.headers.first(name: ":status") } else { nil } }.first
        }
        #expect(status == "400")
        #expect(origin.requestCount == 0)
        let ok = HPACKHeaders([(":method", "GET"), (":path", "/status/204"), (":scheme", "http"), (":authority", "t")])
        try await channel.writeAndFlush(HTTP2Frame(streamID: 3, payload: .headers(.init(headers: ok, endStream: true))))
        let statuses = try await recorder.until(channel, { $0.filter { if case .headers = $0 { true } else { false } }.count >= 2 }) { frames in
            frames.compactMap { if case .headers(let h) = $0 { h.headers.first(name: ":status") } else { nil } }
        }
        #expect(statuses == ["400", "204"])
        try? await channel.close()
    }

    /// Per-stream flow control is the backpressure: a client that opens no window gets 64 KiB of a 256 MiB body,
    /// and the proxy stops reading the upstream instead of buffering the rest; the body flows on as the window opens.
    @Test func aStalledStreamHoldsTheUpstreamBack() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: Self.h2cYAML, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        // The raw client's stream window is the default 65,535 bytes, and it sends no WINDOW_UPDATE for now.
        let (channel, recorder) = try await Self.connect(port: proxy.port())
        let headers: HPACKHeaders = [":method": "GET", ":path": "/bytes/\(256 << 20)", ":scheme": "http", ":authority": "t"]
        try await channel.writeAndFlush(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: headers, endStream: true))))
        try await Task.sleep(nanoseconds: 1_500_000_000)
        #expect(try await Self.received(channel, recorder).bytes.count <= 65_535)
        // What the origin could write is bounded by socket buffers (a few MiB), not by the 256 MiB body.
        #expect(origin.bodyBytesWritten < 32 << 20, "the origin wrote \(origin.bodyBytesWritten >> 20) MiB to a proxy whose client reads nothing")

        // Opening the window lets the body flow again.
        try await channel.writeAndFlush(HTTP2Frame(streamID: 0, payload: .windowUpdate(windowSizeIncrement: 4 << 20)))
        try await channel.writeAndFlush(HTTP2Frame(streamID: 1, payload: .windowUpdate(windowSizeIncrement: 4 << 20)))
        var received = 0
        for _ in 0..<100 where received < 4 << 20 {
            try await Task.sleep(nanoseconds: 20_000_000)
            received = try await Self.received(channel, recorder).bytes.count
        }
        #expect(received > 4 << 20 - 65_535 && received <= 4 << 20 + 65_535)
        try? await channel.close()
    }

    /// An upload eight times the stream's receive window: the table's WINDOW_UPDATEs (stream and connection) keep
    /// it flowing to the end, and every byte reaches the origin.
    @Test func anUploadLargerThanTheWindowsFlows() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: Self.h2cYAML, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let (channel, recorder) = try await Self.connect(port: proxy.port())
        let size = 8 << 20
        let head: HPACKHeaders = [":method": "POST", ":path": "/upload", ":scheme": "http", ":authority": "t", "content-length": "\(size)"]
        channel.write(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: head))), promise: nil)
        let chunk = ByteBuffer(repeating: 0x62, count: 16_384)
        for i in 0..<(size / 16_384) {
            // The client's NIOHTTP2Handler holds what its windows do not allow yet.
            channel.write(HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(chunk), endStream: i == size / 16_384 - 1))), promise: nil)
        }
        channel.flush()
        let ended = try await recorder.until(channel, timeout: .seconds(20), { $0.contains { if case .data(let d) = $0 { d.endStream } else { false } } }, then: { _ in true })
        #expect(ended)
        let received = try await Self.received(channel, recorder)
        #expect(received.heads.first?.first(name: ":status") == "200")
        #expect(String(decoding: received.bytes, as: UTF8.self).contains("\(size)"))
        try? await channel.close()
    }

    /// A stream error (DATA that disagrees with `content-length`, RFC 9113 §8.1.1) resets that stream only: the
    /// connection and its other streams go on (RFC 9113 §5.4.2).
    @Test func aStreamErrorResetsOnlyItsStream() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: Self.h2cYAML, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let (channel, recorder) = try await Self.connect(port: proxy.port())
        let post: HPACKHeaders = [":method": "POST", ":path": "/echo", ":scheme": "http", ":authority": "t", "content-length": "10"]
        channel.write(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: post))), promise: nil)
        try await channel.writeAndFlush(HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(ByteBuffer(string: "short")), endStream: true))))
        let reset = try await recorder.until(channel, { $0.contains { if case .rstStream = $0 { true } else { false } } }, then: { frames in
            frames.contains { if case .rstStream = $0 { true } else { false } }
        })
        #expect(reset)
        let get: HPACKHeaders = [":method": "GET", ":path": "/", ":scheme": "http", ":authority": "t"]
        try await channel.writeAndFlush(HTTP2Frame(streamID: 3, payload: .headers(.init(headers: get, endStream: true))))
        let statuses = try await recorder.until(channel, { $0.contains { if case .headers = $0 { true } else { false } } }, then: {
            $0.compactMap { if case .headers(let h) = $0 { h.headers.first(name: ":status") } else { nil } }
        })
        #expect(statuses == ["200"])
        #expect(channel.isActive, "the stream error closed the connection")
        #expect(origin.requestCount == 1, "the refused stream reached the origin")
        try? await channel.close()
    }

    /// An upload that outruns its upstream: the stream pauses (its DATA waits, its window stays shut) and resumes
    /// after the client has ended it. No WINDOW_UPDATE may go out for a stream the client has closed (NIOHTTP2
    /// counts it a stream error), and the connection carries on with the next stream.
    @Test func anUploadThatPausedAfterItsEndKeepsTheConnection() async throws {
        let origin = try await TestOrigin.start(name: "o")
        // The authorization subrequest holds the exchange for 300 ms: the upload's DATA, END_STREAM included,
        // waits in the stream's table entry meanwhile. (The same cluster for both: the subrequest's connection is
        // reused, and its flush resumes the stream's reads before `attach` has returned.)
        let proxy = try await ProxyHarness.start(yaml: """
            listeners: [ { name: h2c, address: "127.0.0.1:0", http2: { cleartext: true } } ]
            access_log: { destination: "off" }
            routes: [ { cluster: c, auth: { forward: { cluster: c, path: /delay/300 } } } ]
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] }, { name: a, hosts: [ { address: "{{origin:o}}" } ] } ]
            """, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let (channel, recorder) = try await Self.connect(port: proxy.port())
        // The server's SETTINGS (a 1 MiB stream window) have arrived, and the client applied them, once the recorder
        // behind the client's NIOHTTP2Handler has seen them.
        _ = try await recorder.until(channel, { $0.contains { if case .settings(.settings) = $0 { true } else { false } } }, then: { _ in true })
        let size = 900_000
        let head: HPACKHeaders = [":method": "POST", ":path": "/upload", ":scheme": "http", ":authority": "t", "content-length": "\(size)"]
        channel.write(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: head))), promise: nil)
        var sent = 0
        while sent < size {
            let n = min(16_384, size - sent)
            sent += n
            channel.write(HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(ByteBuffer(repeating: 0x61, count: n)), endStream: sent == size))), promise: nil)
        }
        channel.flush()
        let first = try await recorder.until(channel, { $0.contains { if case .data(let d) = $0 { d.endStream } else { false } } }, then: { $0 })
        let heads = first.compactMap { if case .headers(let h) = $0 { h.headers } else { nil } }
        #expect(heads.first?.first(name: ":status") == "200")
        #expect(String(decoding: try await Self.received(channel, recorder).bytes, as: UTF8.self).contains("\(size)"))

        try await channel.writeAndFlush(HTTP2Frame(streamID: 3, payload: .headers(.init(headers: [":method": "GET", ":path": "/", ":scheme": "http", ":authority": "t"], endStream: true))))
        let statuses = try await recorder.until(channel, { $0.filter { if case .headers = $0 { true } else { false } }.count >= 2 }, then: {
            $0.compactMap { if case .headers(let h) = $0 { h.headers.first(name: ":status") } else { nil } }
        })
        #expect(statuses == ["200", "200"], "the connection went with the first stream")
        #expect(channel.isActive)
        try? await channel.close()
    }

    /// WebSocket over HTTP/2 (RFC 8441): an extended CONNECT becomes an HTTP/1.1 upgrade to the origin, its 101
    /// a 200, and DATA frames the WebSocket's bytes both ways, until END_STREAM.
    @Test func webSocketOverHTTP2ReachesAnHTTP1Origin() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let plain = try await TestOrigin.start(name: "p", webSockets: false)
        let yaml = """
            listeners: [ { name: h2c, address: "127.0.0.1:0", http2: { cleartext: true } } ]
            access_log: { destination: "off" }
            routes: [ { match: { path_prefix: /status/ }, cluster: p }, { cluster: c } ]
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] }, { name: p, hosts: [ { address: "{{origin:p}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin, plain], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown(); await plain.shutdown() } }

        func connectRequest(_ path: String, protocol proto: String = "websocket") -> HPACKHeaders {
            [":method": "CONNECT", ":protocol": proto, ":scheme": "http", ":path": path, ":authority": "t", "sec-websocket-version": "13"]
        }
        /// Waits until the server's DATA holds a whole WebSocket frame after `offset` bytes; returns it and its end.
        func nextWSFrame(_ channel: any Channel, _ recorder: FrameRecorder, after offset: Int) async throws -> (opcode: UInt8, payload: [UInt8], end: Int)? {
            for _ in 0..<100 {
                let bytes = try await Self.received(channel, recorder).bytes
                if bytes.count >= offset + 2 {
                    var i = offset + 2
                    var n = Int(bytes[offset + 1] & 0x7f)
                    if n == 126, bytes.count >= i + 2 { n = Int(bytes[i]) << 8 | Int(bytes[i + 1]); i += 2 }
                    else if n == 127, bytes.count >= i + 8 { n = bytes[i..<i + 8].reduce(0) { $0 << 8 | Int($1) }; i += 8 }
                    if n < 126 || i > offset + 2, bytes.count >= i + n {
                        return (bytes[offset] & 0x0f, Array(bytes[i..<i + n]), i + n)
                    }
                }
                try await Task.sleep(nanoseconds: 20_000_000)
            }
            return nil
        }
        func data(_ bytes: [UInt8], end: Bool = false) -> HTTP2Frame.FramePayload {
            .data(.init(data: .byteBuffer(ByteBuffer(bytes: bytes)), endStream: end))
        }

        let (channel, recorder) = try await Self.connect(port: proxy.port())
        try await Task.sleep(nanoseconds: 200_000_000)  // the server's SETTINGS (ENABLE_CONNECT_PROTOCOL) arrive
        try await channel.writeAndFlush(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: connectRequest("/ws")))))
        // This raw client opens its receive windows itself (there is no stream channel to do it).
        try await channel.writeAndFlush(HTTP2Frame(streamID: 1, payload: .windowUpdate(windowSizeIncrement: 8 << 20)))
        try await channel.writeAndFlush(HTTP2Frame(streamID: 0, payload: .windowUpdate(windowSizeIncrement: 8 << 20)))
        try await Task.sleep(nanoseconds: 200_000_000)
        let head = try #require(try await Self.received(channel, recorder).heads.first)
        #expect(head.first(name: ":status") == "200")
        #expect(head.first(name: "sec-websocket-accept") == nil && head.first(name: "upgrade") == nil)

        // Text, a large binary message (many DATA frames), ping; then close, which ends the stream.
        try await channel.writeAndFlush(HTTP2Frame(streamID: 1, payload: data(ProxyIntegrationTests.wsFrame(opcode: 1, Array("hello over h2".utf8)))))
        let text = try #require(try await nextWSFrame(channel, recorder, after: 0))
        #expect(text.opcode == 1 && String(decoding: text.payload, as: UTF8.self) == "hello over h2")
        let big = (0..<300_000).map { UInt8($0 % 251) }
        try await channel.writeAndFlush(HTTP2Frame(streamID: 1, payload: data(ProxyIntegrationTests.wsFrame(opcode: 2, big))))
        let binary = try #require(try await nextWSFrame(channel, recorder, after: text.end))
        #expect(binary.opcode == 2 && binary.payload == big)
        try await channel.writeAndFlush(HTTP2Frame(streamID: 1, payload: data(ProxyIntegrationTests.wsFrame(opcode: 9, Array("ping!".utf8)))))
        let pong = try #require(try await nextWSFrame(channel, recorder, after: binary.end))
        #expect(pong.opcode == 10 && pong.payload == Array("ping!".utf8))
        try await channel.writeAndFlush(HTTP2Frame(streamID: 1, payload: data(ProxyIntegrationTests.wsFrame(opcode: 8, [0x03, 0xe8]), end: true)))
        let close = try #require(try await nextWSFrame(channel, recorder, after: pong.end))
        #expect(close.opcode == 8)
        try await Task.sleep(nanoseconds: 200_000_000)
        #expect(try await Self.received(channel, recorder).ended)

        // A refusal (any non-101 upstream answer) is a normal response; other CONNECTs are refused.
        try await channel.writeAndFlush(HTTP2Frame(streamID: 3, payload: .headers(.init(headers: connectRequest("/status/403")))))
        try await channel.writeAndFlush(HTTP2Frame(streamID: 5, payload: .headers(.init(headers: connectRequest("/ws", protocol: "connect-udp")))))
        try await Task.sleep(nanoseconds: 300_000_000)
        let statuses = try await Self.received(channel, recorder).heads.compactMap { $0.first(name: ":status") }
        #expect(statuses.sorted() == ["200", "403", "405"])
        try? await channel.close()

        // A message sent right behind the CONNECT, before the 200, waits for the tunnel and is not lost.
        let (eager, eagerRecorder) = try await Self.connect(port: proxy.port())
        try await Task.sleep(nanoseconds: 200_000_000)
        eager.write(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: connectRequest("/ws")))), promise: nil)
        eager.write(HTTP2Frame(streamID: 1, payload: data(ProxyIntegrationTests.wsFrame(opcode: 1, Array("early".utf8)))), promise: nil)
        try await eager.writeAndFlush(HTTP2Frame(streamID: 1, payload: .windowUpdate(windowSizeIncrement: 1 << 20)))
        let early = try #require(try await nextWSFrame(eager, eagerRecorder, after: 0))
        #expect(early.opcode == 1 && early.payload == Array("early".utf8))
        try? await eager.close()
    }

    /// One raw HTTP/2 frame (RFC 9113 §4.1), for sending what a well-behaved client library refuses to.
    static func frame(type: UInt8, flags: UInt8 = 0, stream: UInt32 = 0, _ payload: [UInt8]) -> [UInt8] {
        let n = payload.count
        return [UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff), type, flags,
                UInt8(stream >> 24 & 0x7f), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)] + payload
    }

    /// Sends `attack` after the connection preface and returns the error code of the server's GOAWAY, if it sent
    /// one and then closed the connection (within the client's 2 s read timeout).
    static func goawayCode(port: Int, _ attack: [UInt8]) throws -> UInt32? {
        let c = try RawHTTPClient(port: port, timeoutSeconds: 2)
        try c.send(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + Self.frame(type: 4, []) + attack)
        let (bytes, closed) = c.readAllBytes()
        guard closed else { return nil }
        var i = 0
        var code: UInt32?
        while i + 9 <= bytes.count {
            let length = Int(bytes[i]) << 16 | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
            if bytes[i + 3] == 7, i + 9 + 8 <= bytes.count {  // GOAWAY: last stream id, then error code
                let p = i + 9 + 4
                code = UInt32(bytes[p]) << 24 | UInt32(bytes[p + 1]) << 16 | UInt32(bytes[p + 2]) << 8 | UInt32(bytes[p + 3])
            }
            i += 9 + length
        }
        return code
    }

    @Test func settingsPingAndContinuationFloodsAndHPACKBombsAreCutOff() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let yaml = """
            listeners: [ { name: h2c, address: "127.0.0.1:0", http2: { cleartext: true, max_header_list_size: 16KiB } } ]
            access_log: { destination: "off" }
            routes: [ { cluster: c } ]
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 1, logLevel: .critical)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let port = proxy.port()
        let enhanceYourCalm: UInt32 = 0xb

        // Settings flood.
        let settings = (0..<260).flatMap { _ in Self.frame(type: 4, [0, 3, 0, 0, 0, 100]) }
        #expect(try Self.goawayCode(port: port, settings) == enhanceYourCalm)

        // Ping flood: every PING asks for an ACK the server must write.
        let pings = (0..<260).flatMap { i in Self.frame(type: 6, [0, 0, 0, 0, 0, 0, UInt8(i >> 8), UInt8(i & 0xff)]) }
        #expect(try Self.goawayCode(port: port, pings) == enhanceYourCalm)

        // CONTINUATION flood (CVE-2024-27316): a header block that never ends.
        let headers = Self.frame(type: 1, flags: 0, stream: 1, [0x82, 0x86])  // :method GET, :scheme http; no END_HEADERS
        let continuations = (0..<2000).flatMap { _ in Self.frame(type: 9, flags: 0, stream: 1, [0x84]) }
        let continuationCode = try Self.goawayCode(port: port, headers + continuations)
        #expect(continuationCode != nil && continuationCode != 0)

        // HPACK bomb: one 4 KiB header put in the dynamic table, then referenced 100 times (1 byte each).
        var block: [UInt8] = [0x82, 0x86, 0x84, 0x41, 0x01, 0x74]  // :method, :scheme, :path, :authority "t"
        block += [0x40, 0x01, 0x78, 0x7f, 0x81, 0x1f] + [UInt8](repeating: 0x61, count: 4096)  // x: 4096 × "a", indexed
        block += [UInt8](repeating: 0xbe, count: 100)  // dynamic table index 62, a hundred times
        let bombCode = try Self.goawayCode(port: port, Self.frame(type: 1, flags: 0x5, stream: 1, block))
        #expect(bombCode != nil && bombCode != 0)
        #expect(origin.requestCount == 0)

        // Others are unaffected.
        let (ok, okRecorder) = try await Self.connect(port: port)
        try await ok.writeAndFlush(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: [":method": "GET", ":path": "/status/204", ":scheme": "http", ":authority": "t"], endStream: true))))
        try await Task.sleep(nanoseconds: 300_000_000)
        let status = try await ok.eventLoop.submit {
            okRecorder.frames.compactMap { p -> String? in
                if case .headers(let h) = p { return h.headers.first(name: ":status") }
                return nil
            }.first
        }.get()
        #expect(status == "204")
        try? await ok.close()
    }
}
