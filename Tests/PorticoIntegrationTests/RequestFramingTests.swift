//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import PorticoTestSupport
import Testing

/// Portico frames every body it forwards (RFC 9112 §6): whatever the client's method, protocol and framing, the
/// origin sees exactly one request per client request. Each case sends a body that is itself an HTTP request; if
/// it were forwarded unframed, the origin would count a second request.
@Suite(.serialized) struct RequestFramingTests {
    static let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

    /// A plain HTTP/1.1 listener (with `listenerExtra` settings) in front of the one origin `o`.
    static func h1YAML(_ listenerExtra: String = "") -> String {
        HTTP2IntegrationTests.h2cYAML.replacingOccurrences(of: ", http2: { cleartext: true }", with: listenerExtra)
    }

    // MARK: HTTP/1.1

    /// RFC 9110 §9.3.8: TRACE must not carry content. An HTTP/1.1 encoder drops a TRACE's framing, so its body would
    /// become the origin's next request: refused with 400 and a close, never forwarded.
    @Test func traceWithABodyIsRefused() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: Self.h1YAML(), origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let bodies = [
            "Content-Length: \(Self.smuggled.utf8.count)\r\n\r\n\(Self.smuggled)",
            "Transfer-Encoding: chunked\r\n\r\n\(String(Self.smuggled.utf8.count, radix: 16))\r\n\(Self.smuggled)\r\n0\r\n\r\n",
        ]
        for body in bodies {
            let c = try RawHTTPClient(port: proxy.port())
            try c.send("TRACE / HTTP/1.1\r\nHost: t\r\n\(body)")
            let (text, closed) = c.readAll()
            #expect(text.hasPrefix("HTTP/1.1 400"), "\(body): \(text)")
            #expect(closed)
        }
        // A TRACE without a body is forwarded.
        let c = try RawHTTPClient(port: proxy.port())
        try c.send("TRACE /status/200 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        #expect(c.readResponses(1).first?.status == 200)
        #expect(origin.requestCount == 1)
    }

    /// Every malformed class the parser refuses (RFC 9112), through the real listener on a raw socket: the
    /// right status, a closed connection, and nothing reaches the origin. Each request is followed by a valid
    /// pipelined one, which must not be served either.
    @Test func malformedRequestsAreRefusedAndNeverForwarded() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(
            yaml: Self.h1YAML(", limits: { max_header_bytes: 2KiB, max_uri_bytes: 256 }"), origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let chunked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        let cases: [(String, Int)] = [
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\u{0}c\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\u{1}c\r\n\r\n", 400),
            ("GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\rX-B: c\r\n\r\n", 400),
            (chunked + "z\r\n", 400),
            (chunked + "5;\r\nhello\r\n0\r\n\r\n", 400),
            (chunked + "5\r\nhelloXX0\r\n\r\n", 400),
            (chunked + "fffffffffffffffff\r\n", 400),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("GET http://b.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n", 400),
            ("GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
            ("TRACE / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", 400),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
            ("GET /\(String(repeating: "u", count: 300)) HTTP/1.1\r\nHost: a\r\n\r\n", 414),
            ("GET / HTTP/1.1\r\nHost: a\r\nX-Big: \(String(repeating: "x", count: 3000))\r\n\r\n", 431),
        ]
        let next = "GET /status/200 HTTP/1.1\r\nHost: a\r\n\r\n"
        for (request, status) in cases {
            let c = try RawHTTPClient(port: proxy.port())
            try c.send(request + next)
            let (text, closed) = c.readAll()
            #expect(text.hasPrefix("HTTP/1.1 \(status) "), "\(request.prefix(80).debugDescription): \(text.prefix(40).debugDescription)")
            #expect(text.components(separatedBy: "HTTP/1.1 ").count == 2, "one answer only for \(request.prefix(80).debugDescription)")
            #expect(closed)
        }
        #expect(origin.requestCount == 0)
    }

    /// RFC 9112 §9.6: requests pipelined behind one whose response closes the connection are not processed, even
    /// when they arrive in the same read (a 404, and a `Connection: close` request to a fixed route).
    @Test func nothingAfterAClosingResponseIsProcessed() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let yaml = """
            listeners: [ { name: l, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes:
              - { match: { hosts: [fixed.test] }, respond: { status: 200, body: "fixed" } }
              - { match: { hosts: [t] }, cluster: c }
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let next = "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
        for first in ["GET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n", "GET / HTTP/1.1\r\nHost: fixed.test\r\nConnection: close\r\n\r\n"] {
            let c = try RawHTTPClient(port: proxy.port())
            try c.send(first + next)
            let (text, closed) = c.readAll()
            #expect(closed)
            #expect(text.components(separatedBy: "HTTP/1.1 ").count == 2, "one response only: \(text)")
        }
        #expect(origin.requestCount == 0)
    }

    /// A request pipelined behind a proxied one and answered with a closing error when its turn comes (a 404): the
    /// proxied one is answered, then the 404, then the connection closes; what follows is never processed.
    @Test func aQueuedRequestWhoseAnswerClosesEndsTheConnection() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let yaml = """
            listeners: [ { name: l, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes: [ { match: { hosts: [t] }, cluster: c } ]
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let c = try RawHTTPClient(port: proxy.port())
        try c.send("GET /status/200 HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: nowhere.test\r\n\r\n"
            + "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc")
        let (text, closed) = c.readAll()
        #expect(closed)
        let statuses = text.components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.prefix(3) }
        #expect(statuses == ["200", "404"], "\(text)")
        #expect(origin.requestCount == 1)
    }

    /// Answers every read with the same raw bytes: an origin that frames its answers its own way.
    final class RawOrigin: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let answer: String
        init(_ answer: String) { self.answer = answer }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            context.writeAndFlush(NIOAny(ByteBuffer(string: self.answer)), promise: nil)
        }
    }

    /// An upstream response whose framing is ambiguous or malformed is never passed on: the client gets 502 and
    /// none of its bytes (nginx refuses the same: "upstream sent "Content-Length" and "Transfer-Encoding" headers at
    /// the same time").
    @Test func ambiguousUpstreamResponsesBecome502() async throws {
        for answer in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            "HTTP/1.1 200 OK\nContent-Length: 5\n\nhello",
            "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 5\r\n\r\nhello",
        ] {
            let origin = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .childChannelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(RawOrigin(answer)) } }
                .bind(host: "127.0.0.1", port: 0).get()
            let yaml = """
                listeners: [ { name: l, address: "127.0.0.1:0" } ]
                access_log: { destination: "off" }
                routes: [ { cluster: c } ]
                clusters: [ { name: c, hosts: [ { address: "127.0.0.1:\(origin.localAddress!.port!)" } ] } ]
                """
            let proxy = try await ProxyHarness.start(yaml: yaml, workers: 1)
            let port = proxy.port()
            let r = try await offThePool { () -> RawResponse? in
                let c = try RawHTTPClient(port: port)
                try c.send("GET /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                return c.readResponses(1).first
            }
            #expect(r?.status == 502, "\(answer.debugDescription): \(String(describing: r))")
            #expect(r?.body.contains("hello") == false)
            await proxy.shutdown()
            try await origin.close()
        }
    }

    /// A response to HEAD carries no body, whatever its fields say (RFC 9110 §9.3.2): an upstream HEAD response
    /// with `Transfer-Encoding: chunked` (or no length at all) reaches the client without a chunked terminator that
    /// the client would read as the start of the next response.
    @Test func headResponsesNeverCarryABody() async throws {
        for answer in [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 5000\r\n\r\n",
        ] {
            let origin = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .childChannelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(RawOrigin(answer)) } }
                .bind(host: "127.0.0.1", port: 0).get()
            let yaml = """
                listeners: [ { name: l, address: "127.0.0.1:0" } ]
                access_log: { destination: "off" }
                routes:
                  - { match: { path: /fixed }, respond: { status: 418, body: "teapot" } }
                  - { cluster: c }
                clusters: [ { name: c, hosts: [ { address: "127.0.0.1:\(origin.localAddress!.port!)" } ] } ]
                """
            let proxy = try await ProxyHarness.start(yaml: yaml, workers: 1)
            let c = try RawHTTPClient(port: proxy.port())
            try c.send("HEAD /x HTTP/1.1\r\nHost: t\r\n\r\nGET /fixed HTTP/1.1\r\nHost: t\r\n\r\n")
            let text = c.readUntil("\r\n\r\nteapot") ?? ""
            let parts = text.components(separatedBy: "\r\n\r\n")
            #expect(parts.count == 3, "\(text.debugDescription)")
            #expect(parts.first?.hasPrefix("HTTP/1.1 200") == true && parts.first?.contains("X-A: 1") == true)
            #expect(parts.dropFirst().first?.hasPrefix("HTTP/1.1 418") == true, "\(text.debugDescription)")
            if answer.contains("5000") { #expect(parts.first?.contains("Content-Length: 5000") == true) }
            await proxy.shutdown()
            try await origin.close()
        }
    }

    /// Pipelined requests before a malformed one are answered first, in order; then the 400, then the close. And
    /// an HTTP/1.0 keep-alive client whose response can only end with the close gets nothing more processed.
    @Test func pipelinedRequestsAroundErrorsAndCloses() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(
            yaml: Self.h1YAML(), origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let c = try RawHTTPClient(port: proxy.port())
        try c.send("GET /delay/200 HTTP/1.1\r\nHost: t\r\n\r\nGET /status/201 HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost : t\r\n\r\n")
        let (text, closed) = c.readAll()
        let statuses = text.components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.prefix(3) }
        #expect(statuses == ["200", "201", "400"], "\(text.debugDescription)")
        #expect(closed)
        #expect(origin.requestCount == 2)

        // A malformed request pipelined behind one in flight is never started: 200, then 400, then the close.
        let behind = try RawHTTPClient(port: proxy.port())
        try behind.send("GET /delay/200 HTTP/1.1\r\nHost: t\r\n\r\nPOST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX")
        let (behindText, behindClosed) = behind.readAll()
        #expect(behindText.components(separatedBy: "HTTP/1.1 ").dropFirst().map { $0.prefix(3) } == ["200", "400"], "\(behindText.debugDescription)")
        #expect(behindClosed)
        #expect(origin.requestCount == 3)

        // An HTTP/1.0 request without Host reaches the HTTP/1.1 origin with one (the host's address).
        let noHost = try RawHTTPClient(port: proxy.port())
        try noHost.send("GET /page HTTP/1.0\r\n\r\n")
        let (noHostText, _) = noHost.readAll()
        #expect(noHostText.contains("host: \(origin.address)"), "\(noHostText.debugDescription)")

        let old = try RawHTTPClient(port: proxy.port())
        try old.send("GET /close-delimited/10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\nPOST /upload HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc")
        let (answer, oldClosed) = old.readAll()
        #expect(answer.hasPrefix("HTTP/1.0 200") && oldClosed)
        #expect(answer.components(separatedBy: "HTTP/1.").count == 2, "\(answer.debugDescription)")
        #expect(origin.requestCount == 5)
    }

    // MARK: HTTP/2 to an HTTP/1.1 origin

    /// An HTTP/2 `content-length` goes upstream in canonical form (NIOHTTP2 accepts "+5"; an origin might not).
    @Test func http2ContentLengthIsWrittenAgain() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: HTTP2IntegrationTests.h2cYAML, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let r = try await self.exchange(port: proxy.port(), [(":method", "POST"), (":path", "/page"), ("content-length", "+5")], data: ["hello"])
        #expect(r.status == "200")
        #expect(r.body.contains("content-length: 5") && !r.body.contains("+5"), "\(r.body)")
    }

    /// Sends one request on a fresh raw HTTP/2 connection (DATA frames as given, the last one ending the stream
    /// unless `endStream` is false) and returns what came back once the stream ended or was reset.
    func exchange(
        port: Int,
        _ headers: [(String, String)],
        data: [String],
        pauseBeforeData: Bool = false,
        awaitReset: Bool = false,
        endStream: Bool = true
    ) async throws -> (status: String?, body: String, reset: Bool, resetCode: HTTP2ErrorCode?) {
        let (channel, recorder) = try await HTTP2IntegrationTests.connect(port: port)
        defer { channel.close(promise: nil) }
        let method = headers.first { $0.0 == ":method" }?.1 ?? "GET"
        let block = HPACKHeaders([(":method", method), (":scheme", "http"), (":authority", "t")] + headers.filter { $0.0 != ":method" })
        try await channel.writeAndFlush(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: block, endStream: data.isEmpty))))
        if pauseBeforeData {
            // The DATA comes in a later read than the HEADERS: a PING sent after them is acknowledged only once the
            // proxy has read and handled everything before it (HTTP/2 frames are processed in order).
            let opaque = HTTP2PingData(withInteger: 42)
            try await channel.writeAndFlush(HTTP2Frame(streamID: 0, payload: .ping(opaque, ack: false)))
            let acknowledged = try await recorder.until(channel, { frames in
                frames.contains { if case .ping(let d, ack: true) = $0 { d == opaque } else { false } }
            }, then: { frames in frames.contains { if case .ping(let d, ack: true) = $0 { d == opaque } else { false } } })
            #expect(acknowledged, "the proxy never acknowledged the PING")
        }
        for (i, d) in data.enumerated() {
            let payload = HTTP2Frame.FramePayload.data(.init(data: .byteBuffer(ByteBuffer(string: d)), endStream: endStream && i == data.count - 1))
            // The proxy may have answered and reset the stream already (an early 400): then this write fails.
            try? await channel.writeAndFlush(HTTP2Frame(streamID: 1, payload: payload))
        }
        // What the client has received: the status, the body, whether the stream ended or was reset.
        let summarize: ([HTTP2Frame.FramePayload]) -> (status: String?, body: String, ended: Bool, reset: Bool, code: HTTP2ErrorCode?) = { frames in
            var status: String?
            var body = ""
            var ended = false
            var reset = false
            var resetCode: HTTP2ErrorCode?
            for p in frames {
                switch p {
                case .headers(let h):
                    status = status ?? h.headers.first(name: ":status")
                    ended = ended || h.endStream
                case .data(let d):
                    if case .byteBuffer(let b) = d.data { body += String(buffer: b) }
                    ended = ended || d.endStream
                case .rstStream(let code):
                    reset = true
                    resetCode = code
                case .goAway: reset = true
                default: break
                }
            }
            return (status, body, ended, reset, resetCode)
        }
        let done: ([HTTP2Frame.FramePayload]) -> Bool = { frames in
            let s = summarize(frames)
            return s.reset || (s.ended && !awaitReset)
        }
        guard let r = try? await recorder.until(channel, done, then: summarize), r.reset || (r.ended && !awaitReset) else {
            return (nil, "", false, nil)
        }
        return (r.status, r.body, r.reset, r.code)
    }

    /// HTTP/2 GET, DELETE and OPTIONS streams with DATA and no `content-length` reach an HTTP/1.1 origin chunked:
    /// one request, its body intact (the origin echoes it), whether the DATA comes with the HEADERS or later.
    @Test func http2BodiesWithoutContentLengthAreChunkedUpstream() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: HTTP2IntegrationTests.h2cYAML, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        var expected = 0
        for method in ["GET", "DELETE", "OPTIONS"] {
            for pause in [false, true] {
                let r = try await self.exchange(port: proxy.port(), [(":method", method), (":path", "/echo")], data: [Self.smuggled, "tail"], pauseBeforeData: pause)
                expected += 1
                #expect(r.status == "200", "\(method) pause=\(pause)")
                #expect(r.body == Self.smuggled + "tail", "\(method) pause=\(pause)")
                #expect(origin.requestCount == expected, "\(method) pause=\(pause): the origin saw \(origin.requestCount - expected + 1) requests")
            }
        }
        // Without DATA: no body, no framing fields upstream.
        let r = try await self.exchange(port: proxy.port(), [(":path", "/page")], data: [])
        #expect(r.status == "200")
        #expect(!r.body.contains("transfer-encoding") && !r.body.contains("content-length"))
    }

    /// A held HTTP/2 request (a small declared body) that stops arriving gets 408 after the listener's
    /// `timeouts.request_header`, and its stream is reset; nothing reaches the origin.
    @Test func aStalledHeldHTTP2RequestTimesOut() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let yaml = HTTP2IntegrationTests.h2cYAML.replacingOccurrences(of: "http2: { cleartext: true }", with: "http2: { cleartext: true }, timeouts: { request_header: 300ms }")
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let (channel, recorder) = try await HTTP2IntegrationTests.connect(port: proxy.port())
        defer { channel.close(promise: nil) }
        let block = HPACKHeaders([(":method", "POST"), (":scheme", "http"), (":authority", "t"), (":path", "/echo"), ("content-length", "10")])
        // One flush for both: a loaded machine could otherwise let the 300 ms pass between the two writes, and the
        // DATA would then be written on a stream the proxy had already reset.
        channel.write(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: block, endStream: false))), promise: nil)
        try await channel.writeAndFlush(HTTP2Frame(streamID: 1, payload: .data(.init(data: .byteBuffer(ByteBuffer(string: "abc")), endStream: false))))
        let (status, reset) = try await recorder.until(channel, timeout: .seconds(10), { frames in
            frames.contains { if case .rstStream = $0 { true } else { false } }
        }, then: { frames in
            var status: String?
            for p in frames { if case .headers(let h) = p { status = status ?? h.headers.first(name: ":status") } }
            return (status, frames.contains { if case .rstStream = $0 { true } else { false } })
        })
        #expect(status == "408")
        #expect(reset)
        #expect(origin.requestCount == 0)
    }

    /// An HTTP/2 TRACE with DATA is refused before anything goes upstream.
    @Test func http2TraceWithDataIsRefused() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: HTTP2IntegrationTests.h2cYAML, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        // The head is held until DATA arrives (no content-length), so the DATA comes in a later read, after which
        // the 400 is written while the stream is still open on the client's side.
        // The client does not end its side: a client that had would see the stream closed by both ends, and the
        // RST_STREAM after it ignored (RFC 9113 §5.1).
        let r = try await self.exchange(
            port: proxy.port(), [(":method", "TRACE"), (":path", "/echo")], data: [Self.smuggled, "more"], pauseBeforeData: true,
            awaitReset: true, endStream: false)
        #expect(r.status == "400")
        // Answered before its body ended: the stream is reset with NO_ERROR, which does not fail the answer
        // (RFC 9113 §8.1).
        #expect(r.resetCode == .noError, "\(String(describing: r.resetCode))")
        #expect(origin.requestCount == 0)
    }

    /// A stream whose DATA disagrees with its `content-length` (RFC 9113 §8.1.1) is reset, and the origin sees
    /// nothing of it: not the head, not the body.
    @Test func http2ContentLengthMismatchNeverReachesTheOrigin() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: HTTP2IntegrationTests.h2cYAML, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let cases: [(length: String, data: [String])] = [
            ("0", [Self.smuggled]),  // declared empty, DATA follows
            ("10", ["short"]),  // fewer bytes than declared
            ("3", ["more than three"]),  // more bytes than declared
        ]
        for c in cases {
            for pause in [false, true] {
                let r = try await self.exchange(port: proxy.port(), [(":method", "POST"), (":path", "/echo"), ("content-length", c.length)], data: c.data, pauseBeforeData: pause)
                #expect(r.reset, "content-length \(c.length) pause=\(pause): \(r)")
                #expect(origin.requestCount == 0, "content-length \(c.length) pause=\(pause)")
            }
        }
        // The same stream with a matching length goes through.
        let r = try await self.exchange(port: proxy.port(), [(":method", "POST"), (":path", "/echo"), ("content-length", "5")], data: ["hello"])
        #expect(r.status == "200" && r.body == "hello")
        #expect(origin.requestCount == 1)
    }
}
