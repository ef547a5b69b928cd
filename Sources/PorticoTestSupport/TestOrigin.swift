//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1
import NIOPosix
import NIOHTTP2
import NIOSSL
import NIOWebSocket
import Synchronization

/// A real HTTP/1.1 origin server for tests and for Portico's built-in demo (`demo_origins`). Binds 127.0.0.1
/// (port 0 unless told otherwise) and behaves according to the request path:
///
/// | path | behaviour |
/// |---|---|
/// | `/echo` | the request body back, same framing kind (length or chunked) |
/// | `/status/N` | status N with a short body |
/// | `/bytes/N` | N bytes with Content-Length, streamed with backpressure |
/// | `/chunked/N` | N bytes, chunked |
/// | `/close-delimited/N` | N bytes framed by closing the connection (no length, no chunking) |
/// | `/delay/MS` | the default page after MS milliseconds |
/// | `/die-mid-body` | Content-Length 100000, 1000 bytes, then the connection is reset |
/// | `/die-before-head` | closes the connection without answering |
/// | `/redirect` | 302 to `http://<this origin's address>/landing` |
/// | `/upload` | consumes the body and answers its byte count |
/// | `/continue` | answers `100 Continue` first when asked to (`Expect: 100-continue`) |
/// | `/early-hints` | a 103 then the page |
/// | `/connections` | the number of connections this origin accepted |
/// | `/close-idle/MS` | the page, then the connection is closed MS ms later while idle |
/// | `/garbage-idle/MS` | the page, then MS ms later stray bytes are written on the idle connection |
/// | `/trailers` | a gRPC-shaped response: body, then trailers `grpc-status: 0`, `grpc-message: ok` |
/// | `/arm-drop` | the page; the next request on this connection is dropped (closed, no response) |
/// | `/health` | 200 `ok`, or 503 when `healthy` is false |
/// | anything else | a text page naming the origin, method, target and request headers |
///
/// Every response carries `X-Origin: <name>`, `Server: TestOrigin/1.0` and `X-Powered-By: test` (to check masking).
public final class TestOrigin: Sendable {
    public let name: String
    public let port: Int
    public let host: String
    private let channel: any Channel
    private let group: any EventLoopGroup
    private let ownsGroup: Bool
    let counters: Counters

    final class Counters: Sendable {
        let connections = Atomic<Int>(0)
        let requests = Atomic<Int>(0)
        let healthy = Atomic<Bool>(true)
        let bodyBytesWritten = Atomic<Int>(0)
        let streamsFinished = Atomic<Int>(0)
        /// `/respond?…&gate=NAME` responses holding the second half of their body until `release(NAME)`: the
        /// body, how much of it went out, and how to send more (on the response's loop).
        let gates = Mutex<[String: [HeldBody]]>([:])
    }

    struct HeldBody {
        var body: [UInt8]
        var sent: Int
        /// Sends bytes (and the end, with `end`), or closes the connection when given nil.
        let send: @Sendable (ArraySlice<UInt8>?, _ end: Bool) -> Void
    }

    /// Lets the responses held at `gate` go on: the rest of their body, or with `die`, a close mid-body; with
    /// `bytes`, only that many more bytes (the rest stays held at the gate, at once: a release that follows
    /// finds it there).
    public func release(_ gate: String, bytes: Int? = nil, die: Bool = false) {
        let sends = self.counters.gates.withLock { gates -> [(@Sendable (ArraySlice<UInt8>?, Bool) -> Void, ArraySlice<UInt8>?, Bool)] in
            guard var held = gates.removeValue(forKey: gate) else { return [] }
            var out: [(@Sendable (ArraySlice<UInt8>?, Bool) -> Void, ArraySlice<UInt8>?, Bool)] = []
            for i in held.indices {
                let h = held[i]
                if die {
                    out.append((h.send, nil, false))
                } else if let bytes {
                    let end = min(h.body.count, h.sent + bytes)
                    out.append((h.send, h.body[h.sent..<end], false))
                    held[i].sent = end
                } else {
                    out.append((h.send, h.body[h.sent...], true))
                }
            }
            if bytes != nil && !die { gates[gate] = held }
            return out
        }
        for (send, slice, end) in sends { send(slice, end) }
    }

    /// Connections accepted so far.
    public var connectionCount: Int { self.counters.connections.load(ordering: .relaxed) }
    /// Requests received so far.
    public var requestCount: Int { self.counters.requests.load(ordering: .relaxed) }
    /// Body bytes `/bytes`, `/chunked` and `/close-delimited` handed to the socket so far (they write only while
    /// the connection is writable, so this shows whether the reader keeps up).
    /// `/stream` responses whose second event went out.
    public var streamsFinished: Int { self.counters.streamsFinished.load(ordering: .relaxed) }
    public var bodyBytesWritten: Int { self.counters.bodyBytesWritten.load(ordering: .relaxed) }
    /// `/health` answers 503 while false.
    public var healthy: Bool {
        get { self.counters.healthy.load(ordering: .relaxed) }
        set { self.counters.healthy.store(newValue, ordering: .relaxed) }
    }

    public var address: String { "\(self.host):\(self.port)" }

    private init(name: String, host: String, port: Int, channel: any Channel, group: any EventLoopGroup, ownsGroup: Bool, counters: Counters) {
        self.name = name
        self.host = host
        self.port = port
        self.channel = channel
        self.group = group
        self.ownsGroup = ownsGroup
        self.counters = counters
    }

    /// Starts an origin. With no `group`, it runs on its own single EventLoop.
    /// - Parameter tls: certificate and key files (PEM): the origin then speaks HTTPS.
    /// - Parameter webSockets: whether `/ws` upgrades; without it, upgrade requests get ordinary responses.
    /// - Parameter http2: speak HTTP/2 only (h2c with prior knowledge, or h2 with `tls`).
    public static func start(name: String, host: String = "127.0.0.1", port: Int = 0, group: (any EventLoopGroup)? = nil, tls: (cert: String, key: String)? = nil, webSockets: Bool = true, http2: Bool = false) async throws -> TestOrigin {
        let ownGroup = group == nil
        let sslContext = try tls.map { t in
            var config = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(t.cert).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: t.key, format: .pem))
            )
            config.applicationProtocols = http2 ? ["h2"] : ["http/1.1"]
            return try NIOSSLContext(configuration: config)
        }
        let group = group ?? MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let counters = Counters()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.allowRemoteHalfClosure, value: false)
            .childChannelInitializer { channel in
                counters.connections.add(1, ordering: .relaxed)
                return channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                    }
                    if http2 {
                        _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                            mode: .server,
                            connectionConfiguration: .init(),
                            streamConfiguration: .init()
                        ) { stream in
                            stream.eventLoop.makeCompletedFuture {
                                try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTP1ServerCodec())
                                try stream.pipeline.syncOperations.addHandler(OriginHandler(name: name, counters: counters))
                            }
                        }
                        return
                    }
                    // `/ws` upgrades to a WebSocket that echoes text and binary messages and answers pings;
                    // `/ws-stalled` upgrades and then never reads (for backpressure tests).
                    let upgrader = NIOWebSocketServerUpgrader(
                        maxFrameSize: 1 << 22,
                        shouldUpgrade: { channel, head in
                            channel.eventLoop.makeSucceededFuture(head.uri.hasPrefix("/ws") ? HTTPHeaders([("X-Origin", name)]) : nil)
                        },
                        upgradePipelineHandler: { channel, head in
                            channel.eventLoop.makeCompletedFuture {
                                let origin = try channel.pipeline.syncOperations.handler(type: OriginHandler.self)
                                _ = channel.pipeline.syncOperations.removeHandler(origin)
                                if head.uri.hasPrefix("/ws-stalled") {
                                    try channel.syncOptions?.setOption(.autoRead, value: false)
                                } else {
                                    try channel.pipeline.syncOperations.addHandler(WebSocketEchoHandler())
                                }
                            }
                        }
                    )
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: webSockets ? (upgraders: [upgrader], completionHandler: { _ in }) : nil,
                        withErrorHandling: true
                    )
                    try channel.pipeline.syncOperations.addHandler(OriginHandler(name: name, counters: counters))
                }
            }
            .bind(host: host, port: port).get()
        let bound = channel.localAddress?.port ?? port
        return TestOrigin(name: name, host: host, port: bound, channel: channel, group: group, ownsGroup: ownGroup, counters: counters)
    }

    public func shutdown() async {
        try? await self.channel.close()
        if self.ownsGroup { try? await self.group.shutdownGracefully() }
    }
}

private final class OriginHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let name: String
    let counters: TestOrigin.Counters
    private var head: HTTPRequestHead?
    private var mode: Mode = .normal
    private var uploadBytes = 0
    private var pump: Pump?
    private var dropNext = false

    enum Mode {
        case normal
        case echo(chunked: Bool)
        case upload
    }

    struct Pump {
        var remaining: Int
        var chunked: Bool
        var closeAfter: Bool
    }

    init(name: String, counters: TestOrigin.Counters) {
        self.name = name
        self.counters = counters
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.counters.requests.add(1, ordering: .relaxed)
            if self.dropNext {
                context.close(promise: nil)
                return
            }
            self.head = head
            self.uploadBytes = 0
            let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
            if path == "/echo" {
                let chunked = !head.headers.contains(name: "content-length")
                self.mode = .echo(chunked: chunked)
                var headers = self.baseHeaders()
                if let cl = head.headers.first(name: "content-length") { headers.add(name: "Content-Length", value: cl) }
                if let ct = head.headers.first(name: "content-type") { headers.add(name: "Content-Type", value: ct) }
                context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
            } else if path == "/upload" {
                self.mode = .upload
            } else if path == "/continue", head.headers.first(name: "expect")?.lowercased() == "100-continue" {
                self.mode = .upload
                context.writeAndFlush(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .continue))), promise: nil)
            } else {
                self.mode = .normal
            }
        case .body(let buffer):
            switch self.mode {
            case .echo: context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            case .upload: self.uploadBytes += buffer.readableBytes
            case .normal: break
            }
        case .end:
            guard let head = self.head else { return }
            switch self.mode {
            case .echo:
                context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            case .upload:
                self.respond(context: context, head: head, status: .ok, body: "\(self.uploadBytes)\n")
            case .normal:
                self.route(context: context, head: head)
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    private func baseHeaders() -> HTTPHeaders {
        var h = HTTPHeaders()
        h.add(name: "X-Origin", value: self.name)
        h.add(name: "Server", value: "TestOrigin/1.0")
        h.add(name: "X-Powered-By", value: "test")
        return h
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead, status: HTTPResponseStatus, body: String, extra: HTTPHeaders = [:]) {
        var headers = self.baseHeaders()
        headers.add(contentsOf: extra)
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        if head.isKeepAlive {
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            context.writeAndFlush(self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }

    private func route(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let path = head.uri.split(separator: "?").first.map(String.init) ?? head.uri
        let parts = path.split(separator: "/").map(String.init)
        switch (parts.first ?? "", parts.count > 1 ? parts[1] : "") {
        case ("status", let code):
            let status = HTTPResponseStatus(statusCode: Int(code) ?? 500)
            if status.code == 204 || status.code == 304 {
                var headers = self.baseHeaders()
                headers.add(name: "ETag", value: "\"x\"")
                context.writeAndFlush(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
                context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            } else {
                self.respond(context: context, head: head, status: status, body: "status \(status.code) from \(self.name)\n")
            }
        case ("bytes", let n):
            self.startPump(context: context, head: head, bytes: Int(n) ?? 0, chunked: false, closeDelimited: false)
        case ("chunked", let n):
            self.startPump(context: context, head: head, bytes: Int(n) ?? 0, chunked: true, closeDelimited: false)
        case ("close-delimited", let n):
            self.startPump(context: context, head: head, bytes: Int(n) ?? 0, chunked: false, closeDelimited: true)
        case ("delay", let ms):
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(Int64(ms) ?? 0)) {
                let (handler, context) = loopBound.value
                handler.respond(context: context, head: head, status: .ok, body: "delayed page from \(handler.name)\n")
            }
        case ("die-mid-body", _):
            var headers = self.baseHeaders()
            headers.add(name: "Content-Length", value: "100000")
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(repeating: UInt8(ascii: "x"), count: 1000)))))
                .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        case ("die-before-head", _):
            context.close(promise: nil)
        case ("redirect", _):
            let local = context.channel.localAddress
            let location = "http://\(local?.ipAddress ?? "127.0.0.1"):\(local?.port ?? 0)/landing"
            var extra = HTTPHeaders()
            extra.add(name: "Location", value: location)
            self.respond(context: context, head: head, status: .found, body: "see \(location)\n", extra: extra)
        case ("early-hints", _):
            var hints = HTTPHeaders()
            hints.add(name: "Link", value: "</style.css>; rel=preload; as=style")
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .init(statusCode: 103), headers: hints))), promise: nil)
            self.respond(context: context, head: head, status: .ok, body: "page after hints\n")
        case ("close-idle", let ms), ("garbage-idle", let ms):
            self.respond(context: context, head: head, status: .ok, body: "page from \(self.name)\n")
            let garbage = parts[0] == "garbage-idle"
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(Int64(ms) ?? 0)) {
                let context = bound.value
                if garbage {
                    // Raw bytes below the HTTP encoder, as a broken upstream would send them.
                    if let encoder = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self) {
                        encoder.writeAndFlush(NIOAny(IOData.byteBuffer(context.channel.allocator.buffer(string: "HTTP/1.1 200 OK\r\n\r\nstray"))), promise: nil)
                    }
                } else {
                    context.close(promise: nil)
                }
            }
        case ("trailers", _):
            var headers = self.baseHeaders()
            headers.add(name: "Content-Type", value: "application/grpc")
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: [0, 0, 0, 0, 2, 8, 1])))), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.end(HTTPHeaders([("grpc-status", "0"), ("grpc-message", "ok")]))), promise: nil)
        case ("respond", _):
            // `/respond?status=N&size=N&h=Name:%20value&chunked=1&delay=MS&gate=NAME`: a text body of `size` bytes (compressible,
            // deterministic: `TestOrigin.text(size:)`) with the fields given, for the cache and compression tests.
            var status = HTTPResponseStatus.ok
            var size = 0
            var chunked = false
            var headers = self.baseHeaders()
            for (key, value) in Self.query(head.uri) {
                switch key {
                case "status": status = HTTPResponseStatus(statusCode: Int(value) ?? 200)
                case "size": size = Int(value) ?? 0
                case "chunked": chunked = value == "1"
                case "h":
                    if let colon = value.firstIndex(of: ":") {
                        headers.add(name: String(value[..<colon]), value: String(value[value.index(after: colon)...].drop(while: { $0 == " " })))
                    }
                default: break
                }
            }
            // Which request this is (the cache tests see whether a 304 freshened a stored response), and a 304
            // when the request's If-None-Match names the ETag given (RFC 9110 §13.1.2).
            headers.add(name: "X-Origin-Request", value: String(self.counters.requests.load(ordering: .relaxed)))
            if let etag = headers.first(name: "etag"), head.headers[canonicalForm: "if-none-match"].contains(where: { $0 == etag[...] }) {
                status = .notModified
                size = 0
            }
            if !chunked && status != .notModified { headers.add(name: "Content-Length", value: String(size)) }
            let delay = Self.query(head.uri).first { $0.0 == "delay" }.flatMap { Int64($0.1) } ?? 0
            let gate = Self.query(head.uri).first { $0.0 == "gate" }?.1
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(delay)) { [status, size] in
                let (handler, context) = bound.value
                context.write(handler.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
                if let gate, head.method != .HEAD && size > 1 {
                    // The first half now, the rest when the test releases the gate (or a close, with `die`).
                    let text = Array(TestOrigin.text(size: size).utf8)
                    let loop = context.eventLoop
                    let held = TestOrigin.HeldBody(body: text, sent: text.count / 2) { bytes, end in
                        loop.execute {
                            let (handler, context) = bound.value
                            guard let bytes else { return context.close(promise: nil) }
                            context.write(handler.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: bytes)))), promise: nil)
                            if end { context.write(handler.wrapOutboundOut(.end(nil)), promise: nil) }
                            context.flush()
                        }
                    }
                    handler.counters.gates.withLock { $0[gate, default: []].append(held) }
                    context.writeAndFlush(handler.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: text[..<(text.count / 2)])))), promise: nil)
                    return
                }
                if head.method != .HEAD && size > 0 {
                    context.write(handler.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: TestOrigin.text(size: size))))), promise: nil)
                }
                context.writeAndFlush(handler.wrapOutboundOut(.end(nil)), promise: nil)
            }
        case ("stream", let ms):
            // A server-sent event stream: one event now, the second and the end after `ms` milliseconds.
            var headers = self.baseHeaders()
            headers.add(name: "Content-Type", value: "text/event-stream")
            context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))), promise: nil)
            context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: "data: first\n\n")))), promise: nil)
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(Int64(ms) ?? 0)) {
                let (handler, context) = bound.value
                handler.counters.streamsFinished.add(1, ordering: .relaxed)
                context.write(handler.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: "data: second\n\n")))), promise: nil)
                context.writeAndFlush(handler.wrapOutboundOut(.end(nil)), promise: nil)
            }
        case ("arm-drop", _):
            self.dropNext = true
            self.respond(context: context, head: head, status: .ok, body: "armed\n")
        case ("connections", _):
            self.respond(context: context, head: head, status: .ok, body: "\(self.counters.connections.load(ordering: .relaxed))\n")
        case ("health", _):
            let ok = self.counters.healthy.load(ordering: .relaxed)
            self.respond(context: context, head: head, status: ok ? .ok : .serviceUnavailable, body: ok ? "ok\n" : "unhealthy\n")
        default:
            var body = "Hello from \(self.name)\nmethod: \(head.method.rawValue)\ntarget: \(head.uri)\n"
            for (n, v) in head.headers { body += "\(n.lowercased()): \(v)\n" }
            self.respond(context: context, head: head, status: .ok, body: body)
        }
    }

    /// The query's `key=value` pairs, percent-decoded (`+` is a space).
    static func query(_ uri: String) -> [(String, String)] {
        guard let q = uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return [] }
        return q.split(separator: "&").map { pair in
            let kv = pair.split(separator: "=", maxSplits: 1)
            return (decode(kv[0]), kv.count > 1 ? decode(kv[1]) : "")
        }
        func decode(_ s: Substring) -> String {
            var out: [UInt8] = []
            var bytes = Array(s.utf8)[...]
            while let b = bytes.popFirst() {
                if b == UInt8(ascii: "%"), bytes.count >= 2, let v = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16) {
                    out.append(v)
                    bytes = bytes.dropFirst(2)
                } else {
                    out.append(b == UInt8(ascii: "+") ? UInt8(ascii: " ") : b)
                }
            }
            return String(decoding: out, as: UTF8.self)
        }
    }

    private func startPump(context: ChannelHandlerContext, head: HTTPRequestHead, bytes: Int, chunked: Bool, closeDelimited: Bool) {
        var headers = self.baseHeaders()
        headers.add(name: "Content-Type", value: "application/octet-stream")
        var version = head.version
        if closeDelimited {
            version = .http1_0
            headers.add(name: "Connection", value: "close")
        } else if !chunked {
            headers.add(name: "Content-Length", value: String(bytes))
        } else {
            headers.add(name: "Transfer-Encoding", value: "chunked")
        }
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: version, status: .ok, headers: headers))), promise: nil)
        if head.method == .HEAD {
            context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        self.pump = Pump(remaining: bytes, chunked: chunked, closeAfter: closeDelimited || !head.isKeepAlive)
        self.continuePump(context: context)
    }

    private func continuePump(context: ChannelHandlerContext) {
        guard var pump = self.pump else { return }
        let chunk = context.channel.allocator.buffer(repeating: UInt8(ascii: "a"), count: 64 * 1024)
        while pump.remaining > 0 && context.channel.isWritable {
            let n = min(pump.remaining, chunk.readableBytes)
            context.write(self.wrapOutboundOut(.body(.byteBuffer(chunk.getSlice(at: chunk.readerIndex, length: n)!))), promise: nil)
            self.counters.bodyBytesWritten.add(n, ordering: .relaxed)
            pump.remaining -= n
        }
        if pump.remaining == 0 {
            self.pump = nil
            if pump.closeAfter {
                context.writeAndFlush(self.wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            } else {
                context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            }
        } else {
            self.pump = pump
            context.flush()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { self.continuePump(context: context) }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Echoes WebSocket messages (RFC 6455): text and binary back as they came, ping answered with pong, close with
/// close.
private final class WebSocketEchoHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        var payload = frame.unmaskedData
        switch frame.opcode {
        case .text, .binary, .continuation:
            context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: frame.fin, opcode: frame.opcode, data: payload)), promise: nil)
        case .ping:
            context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: payload)), promise: nil)
        case .connectionClose:
            let code = payload.readInteger(as: UInt16.self) ?? 1000
            var reply = context.channel.allocator.buffer(capacity: 2)
            reply.writeInteger(code)
            context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: reply)))
                .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        default:
            break
        }
    }
}

extension TestOrigin {
    /// `size` bytes of text that compresses like prose: numbered lines of a pangram.
    public static func text(size: Int) -> String {
        var out = ""
        out.reserveCapacity(size + 64)
        var n = 0
        while out.utf8.count < size {
            out += "line \(n): the quick brown fox jumps over the lazy dog\n"
            n += 1
        }
        return String(out.utf8.prefix(size))!
    }
}
