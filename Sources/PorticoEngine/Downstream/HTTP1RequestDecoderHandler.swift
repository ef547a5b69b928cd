//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1
import PorticoCore

/// Decodes a downstream HTTP/1.1 connection's bytes with Portico's own strict parser (`HTTP1RequestParser`)
/// into request parts for the `ProxyHandler`.
///
/// Runs on the connection's EventLoop. Body parts are slices of the receive buffer (no copy). Bytes are only
/// copied when a read ends in the middle of a head or chunk line and the next read has to be joined to it.
///
/// A malformed request is reported once with `errorCaught(HTTP1ParseError)` (the `ProxyHandler` answers 400,
/// 414, 431, 501 or 505 and closes) and every later byte is dropped. After a request that switches protocols
/// (Upgrade, CONNECT) parsing stops; when this handler is removed for a tunnel, the bytes it holds are passed on
/// to the handler behind it.
final class HTTP1RequestDecoderHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = NIOAny

    /// After a protocol switch, at most this much of what the client sends is held for the tunnel; reads wait
    /// beyond it (RFC 6455 §4.1: a client should not send before the 101 anyway).
    static let maxHeldAfterSwitch = 16 * 1024

    private var parser: HTTP1RequestParser
    private var buffer: ByteBuffer?
    private var failed = false
    /// A removal from inside the `ProxyHandler` (a tunnel) ends the decoding loop.
    private var removed = false

    init(limits: HTTP1RequestParser.Limits) {
        self.parser = HTTP1RequestParser(limits: limits)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.failed else { return }
        let incoming = Self.unwrapInboundIn(data)
        if var buffered = self.buffer, buffered.readableBytes > 0 {
            self.buffer = nil  // unique while appending
            buffered.writeImmutableBuffer(incoming)
            self.buffer = buffered
        } else {
            self.buffer = incoming
        }
        self.decode(context: context)
    }

    private func decode(context: ChannelHandlerContext) {
        guard var buffer = self.buffer else { return }
        // Not stored while the parser slices it, so the slices never force a copy; stored again before each part
        // is delivered, so a removal from inside the `ProxyHandler` still finds the bytes not yet parsed.
        self.buffer = nil
        while !self.removed && context.channel.isActive {
            let part: HTTP1RequestParser.Part?
            do {
                part = try self.parser.next(&buffer)
            } catch {
                self.failed = true
                context.fireErrorCaught(error)
                return
            }
            guard let part else { break }
            self.buffer = buffer
            switch part {
            case .head(let head):
                context.fireChannelRead(Self.wrapInboundOut(.head(head.makeNIOHead())))
            case .body(let slice):
                context.fireChannelRead(Self.wrapInboundOut(.body(slice)))
            case .end(let trailers):
                context.fireChannelRead(Self.wrapInboundOut(.end(trailers)))
            }
            self.buffer = nil
        }
        guard !self.removed, buffer.readableBytes > 0 || self.parser.isStopped else { return }
        if buffer.readerIndex > 4096 && !self.parser.isStopped {
            // A partial line waits for more bytes: drop what was consumed before the next read is joined to it.
            buffer.discardReadBytes()
        }
        self.buffer = buffer
    }

    func read(context: ChannelHandlerContext) {
        if self.parser.isStopped, let held = self.buffer, held.readableBytes >= Self.maxHeldAfterSwitch {
            return  // the tunnel (or the close after a refused switch) reads again
        }
        context.read()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.removed = true
        // Bytes after a protocol switch belong to the tunnel (not when the pipeline is torn down on close).
        if let rest = self.buffer, rest.readableBytes > 0, self.parser.isStopped, context.channel.isActive {
            self.buffer = nil
            context.fireChannelRead(NIOAny(rest))
            context.fireChannelReadComplete()
        }
    }
}
