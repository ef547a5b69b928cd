//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// The built-in demo origin (`demo_origins` in a config): a small HTTP/1.1 server so the bundled config works with
/// no other software. Not a test double and not on the proxy's path: it runs on its own EventLoop.
///
/// | Path | Answer |
/// |------|--------|
/// | `/` and anything else | a page naming the origin and echoing the request line and fields |
/// | `/health` | 200 `ok` |
/// | `/status/N` | status N |
/// | `/delay/MS` | 200 after MS milliseconds (at most 60 s) |
/// | `/assets/NAME` | 20 KiB of text, cacheable for a minute (`Cache-Control`, `ETag`), typed by extension |
/// | `/ws` | a WebSocket that echoes messages |
public final class DemoOrigin: Sendable {
    public let name: String
    private let channel: any Channel
    private let group: MultiThreadedEventLoopGroup

    public var localAddress: SocketAddress? { self.channel.localAddress }

    public static func start(name: String, host: String, port: Int) async throws -> DemoOrigin {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let upgrader = NIOWebSocketServerUpgrader(
                        shouldUpgrade: { channel, head in
                            channel.eventLoop.makeSucceededFuture(head.uri == "/ws" ? HTTPHeaders([("X-Origin", name)]) : nil)
                        },
                        upgradePipelineHandler: { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                let page = try channel.pipeline.syncOperations.handler(type: DemoHandler.self)
                                _ = channel.pipeline.syncOperations.removeHandler(page)
                                try channel.pipeline.syncOperations.addHandler(DemoWebSocketEcho())
                            }
                        }
                    )
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                        withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }), withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(DemoHandler(name: name))
                }
            }
            .bind(host: host, port: port)
            .get()
        return DemoOrigin(name: name, channel: channel, group: group)
    }

    private init(name: String, channel: any Channel, group: MultiThreadedEventLoopGroup) {
        self.name = name
        self.channel = channel
        self.group = group
    }

    public func shutdown() async {
        try? await self.channel.close()
        try? await self.group.shutdownGracefully()
    }
}

private final class DemoHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let name: String
    private var head: HTTPRequestHead?

    init(name: String) { self.name = name }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head): self.head = head
        case .body: break
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            self.answer(context, head)
        }
    }

    private func answer(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
        let parts = path.split(separator: "/").map(String.init)
        switch (parts.first ?? "", parts.count > 1 ? parts[1] : "") {
        case ("health", _):
            self.respond(context, head, .ok, "ok\n")
        case ("status", let code):
            let status = HTTPResponseStatus(statusCode: Int(code).map { min(max($0, 200), 599) } ?? 200)
            self.respond(context, head, status, "status \(status.code) from \(self.name)\n")
        case ("delay", let ms):
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: .milliseconds(min(Int64(ms) ?? 0, 60_000))) {
                let (handler, context) = bound.value
                handler.respond(context, head, .ok, "delayed page from \(handler.name)\n")
            }
        case ("assets", let file):
            let type: String
            switch file.split(separator: ".").last ?? "" {
            case "css": type = "text/css"
            case "js": type = "application/javascript"
            case "html": type = "text/html; charset=utf-8"
            default: type = "text/plain; charset=utf-8"
            }
            var line = "/* \(file) from \(self.name): the quick brown fox jumps over the lazy dog */\n"
            while line.utf8.count < 20 * 1024 { line += line }
            let extra: HTTPHeaders = ["Cache-Control": "public, max-age=60", "ETag": "\"\(file)-\(self.name)\""]
            self.respond(context, head, .ok, String(decoding: line.utf8.prefix(20 * 1024), as: UTF8.self), contentType: type, extra: extra)
        default:
            var body = "Hello from \(self.name)\nmethod: \(head.method.rawValue)\ntarget: \(head.uri)\n"
            for (n, v) in head.headers { body += "\(n.lowercased()): \(v)\n" }
            self.respond(context, head, .ok, body)
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ body: String,
                         contentType: String = "text/plain; charset=utf-8", extra: HTTPHeaders = [:]) {
        var headers: HTTPHeaders = ["X-Origin": self.name, "Content-Type": contentType, "Content-Length": String(body.utf8.count)]
        headers.add(contentsOf: extra)
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        let done = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
        if !head.isKeepAlive { done.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }
}

/// Echoes text and binary messages, answers pings, and closes when asked.
private final class DemoWebSocketEcho: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary, .continuation:
            context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: frame.fin, opcode: frame.opcode, data: frame.unmaskedData)), promise: nil)
        case .ping:
            context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .connectionClose:
            context.writeAndFlush(self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: frame.unmaskedData)))
                .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        default:
            break
        }
    }
}
