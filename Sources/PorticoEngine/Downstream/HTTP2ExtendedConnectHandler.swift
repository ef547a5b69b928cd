//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHPACK
import NIOHTTP2

/// WebSocket over HTTP/2 (RFC 8441) on one downstream stream, forwarded to an HTTP/1.1 upstream as a classic
/// WebSocket upgrade (RFC 6455 §4.1).
///
/// Runs on the stream channel's EventLoop (the connection's), in front of `HTTP2ServerStreamCodec`, which puts it
/// there when a stream's HEADERS carry `:protocol` (no other stream has it); for any protocol but WebSocket it
/// leaves the pipeline again after the HEADERS. For an extended CONNECT (`:method CONNECT`, `:protocol
/// websocket`, RFC 8441 §4) it:
/// 1. rewrites the request into what an HTTP/1.1 WebSocket client sends: `GET`, `Upgrade: websocket`, a fresh
///    `Sec-WebSocket-Key` (HTTP/2 clients send none), the client's `Sec-WebSocket-Version` / `-Protocol` /
///    `-Extensions`; marked as ended, since the tunnel's bytes are not an HTTP body. `ProxyHandler` then treats
///    it as any WebSocket upgrade and answers the upstream's 101 with `:status 200` (RFC 8441 §5);
/// 2. holds DATA frames that arrive before the tunnel is up (bounded, 64 KiB);
/// 3. once `ProxyHandler` has joined the stream to the upstream connection (`startTunnel`), turns DATA frames
///    into bytes and bytes into DATA frames; the client's END_STREAM becomes a half-close of the upstream
///    connection, and the upstream's end becomes END_STREAM (RFC 8441 §4: a TCP FIN maps to END_STREAM).
///
/// Flow control stays NIOHTTP2's: the stream's window opens as this handler reads, and the `GlueHandler` behind it
/// stops reading while the upstream is not writable.
final class HTTP2ExtendedConnectHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias InboundOut = NIOAny
    /// Bytes from the glue once tunnelling; before that, frames from the codec pass through unexamined.
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = HTTP2Frame.FramePayload

    private enum State {
        /// Before the request's HEADERS. An ordinary request takes this handler out of the pipeline.
        case passThrough
        /// An extended CONNECT was forwarded; DATA waits in `held` for the upstream's answer.
        case awaitingTunnel
        /// Bytes flow both ways.
        case tunnel
    }

    private var state = State.passThrough
    /// Client bytes not yet passed to the tunnel, and whether the client's END_STREAM came after them.
    private var held: [ByteBuffer] = []
    private var heldBytes = 0
    private var inputEnded = false
    /// `held` is handed on in a later EventLoop turn (see `startTunnel`).
    private var releaseScheduled = false
    private var outputClosed = false

    /// Client bytes held before the upstream accepted (RFC 8441 lets the client send after its HEADERS). Beyond
    /// this the stream is reset.
    static let maxHeldBytes = 64 * 1024

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let payload = self.unwrapInboundIn(data)
        switch self.state {
        case .passThrough:
            if case .headers(let headers) = payload, let rewritten = Self.webSocketRequest(from: headers.headers) {
                self.state = .awaitingTunnel
                self.inputEnded = headers.endStream
                context.fireChannelRead(NIOAny(HTTP2Frame.FramePayload.headers(.init(headers: rewritten, endStream: true))))
                return
            }
            context.fireChannelRead(data)
            // An ordinary request: nothing more to do here, so leave the stream's pipeline (every later frame, and
            // every response write, would pass through otherwise).
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        case .awaitingTunnel, .tunnel:
            guard case .data(let frame) = payload, case .byteBuffer(let buffer) = frame.data else { return }
            if case .tunnel = self.state, !self.releaseScheduled {
                if buffer.readableBytes > 0 { context.fireChannelRead(NIOAny(buffer)) }
                if frame.endStream {
                    context.fireChannelReadComplete()
                    context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
                }
                return
            }
            self.heldBytes += buffer.readableBytes
            guard self.heldBytes <= Self.maxHeldBytes else {
                context.close(promise: nil)
                return
            }
            if buffer.readableBytes > 0 { self.held.append(buffer) }
            self.inputEnded = self.inputEnded || frame.endStream
        }
    }

    /// Called by `ProxyHandler` once the handlers behind this one carry bytes (the upstream said 101). Bytes from
    /// the glue are framed from now on; the client's held bytes follow in the next EventLoop turn, because this
    /// runs inside the upstream decoder's read, and that decoder leaves the upstream pipeline only when its read
    /// is over (until then it would take the bytes for HTTP messages).
    func startTunnel(context: ChannelHandlerContext) {
        guard case .awaitingTunnel = self.state else { return }
        self.state = .tunnel
        guard !self.held.isEmpty || self.inputEnded else { return }
        self.releaseScheduled = true
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = bound.value
            handler.releaseHeld(context: context)
        }
    }

    private func releaseHeld(context: ChannelHandlerContext) {
        self.releaseScheduled = false
        let held = self.held
        self.held = []
        for buffer in held { context.fireChannelRead(NIOAny(buffer)) }
        if !held.isEmpty { context.fireChannelReadComplete() }
        if self.inputEnded { context.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .tunnel = self.state else {
            context.write(data, promise: promise)
            return
        }
        let buffer = self.unwrapOutboundIn(data)
        context.write(self.wrapOutboundOut(.data(.init(data: .byteBuffer(buffer)))), promise: promise)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if case .tunnel = self.state, !self.outputClosed {
            // The upstream ended its side: END_STREAM, so the client sees a clean end of the tunnel.
            self.outputClosed = true
            context.writeAndFlush(self.wrapOutboundOut(.data(.init(data: .byteBuffer(ByteBuffer()), endStream: true))), promise: nil)
            if mode == .output {
                promise?.succeed(())
                return
            }
        }
        context.close(mode: mode, promise: promise)
    }

    /// The HTTP/1.1 WebSocket handshake request for an RFC 8441 extended CONNECT, or nil for any other request.
    /// Other `:protocol` values are left to `ProxyHandler`, which refuses CONNECT.
    static func webSocketRequest(from h: HPACKHeaders) -> HPACKHeaders? {
        guard h.first(name: ":method") == "CONNECT", h.first(name: ":protocol")?.lowercased() == "websocket" else { return nil }
        var out = HPACKHeaders()
        out.reserveCapacity(h.count + 3)
        out.add(name: ":method", value: "GET")
        for (name, value, indexing) in h where name.utf8.first == UInt8(ascii: ":") && name != ":method" && name != ":protocol" {
            out.add(name: name, value: value, indexing: indexing)
        }
        for (name, value, indexing) in h where name.utf8.first != UInt8(ascii: ":") && name != "sec-websocket-key" {
            out.add(name: name, value: value, indexing: indexing)
        }
        out.add(name: "upgrade", value: "websocket")
        out.add(name: "sec-websocket-key", value: Self.randomKey())
        return out
    }

    /// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64 (RFC 6455 §4.1).
    static func randomKey() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) } + [0, 0]
        var out: [UInt8] = []
        out.reserveCapacity(24)
        for i in stride(from: 0, to: 18, by: 3) {
            let n = Int(bytes[i]) << 16 | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
            out += [alphabet[n >> 18 & 63], alphabet[n >> 12 & 63], alphabet[n >> 6 & 63], alphabet[n & 63]]
        }
        out[22] = UInt8(ascii: "=")
        out[23] = UInt8(ascii: "=")
        return String(decoding: out, as: UTF8.self)
    }
}
