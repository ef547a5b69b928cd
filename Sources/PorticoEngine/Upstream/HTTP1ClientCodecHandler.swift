//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1
import PorticoCore

/// Portico's HTTP/1.1 client codec for an upstream connection, one handler for both directions (the client-side
/// twin of `HTTP1ServerCodecHandler`):
///
/// - Outbound, request parts are written exactly as the `ProxyHandler` framed them: a body goes chunked when the
///   head says `Transfer-Encoding: chunked`, and as it is otherwise (the head has its `Content-Length`). Unlike NIO's
///   encoder it never changes the framing fields itself (NIO's drops a TRACE's framing and writes the body raw,
///   which the origin then reads as a next request). Each head is written into the previous one's buffer when the
///   channel is done with it and it is small (`scratch`), else into a new one sized to fit.
/// - Inbound, bytes are parsed by `HTTP1ResponseParser` (strict, RFC 9112) into response parts; it learns from the
///   requests written here which responses answer a HEAD. Body parts are slices of the receive buffer. A malformed
///   response is reported once with `errorCaught` (the connection closes; the client gets 502, or its response is
///   cut off) and every later byte is dropped. After a 101 parsing stops; when this handler is removed for a
///   tunnel, the bytes it holds go to the handler behind it.
/// - The `UpstreamHandler` behind it is called directly both ways (`upstream`, `write(_:promise:)`): an `NIOAny`
///   box, a dynamic cast and a context hop less per part. Nil after it has left: parts then go through the pipeline.
///
/// Runs on the upstream connection's EventLoop (the downstream's).
final class HTTP1ClientCodecHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = ByteBuffer

    var upstream: UpstreamHandler?
    private var context: ChannelHandlerContext?
    private var parser = HTTP1ResponseParser()
    /// Received and not yet parsed (the rest of a head or chunk line).
    private var buffer: ByteBuffer?
    private var failed = false
    /// A removal from inside the `UpstreamHandler`'s owner (a tunnel) ends the decoding loop.
    private var removed = false
    /// The methods of requests written and not yet answered, oldest first.
    private var methods: [HTTPMethod] = []

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.removed = true
        self.upstream = nil
        self.context = nil
        HTTP1ReceiveBuffer.handOn(&self.buffer, stopped: self.parser.isStopped, context: context)
    }

    // MARK: Responses in

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.failed else { return }
        HTTP1ReceiveBuffer.join(Self.unwrapInboundIn(data), to: &self.buffer)
        self.decode(context: context)
    }

    private func decode(context: ChannelHandlerContext) {
        guard var buffer = self.buffer else { return }
        // Not stored while the parser slices it (no copy of the slices); stored again before each part is
        // delivered, so a removal from inside the delivery still finds the bytes not yet parsed.
        self.buffer = nil
        while !self.removed {
            let part: HTTP1ResponseParser.Part?
            do {
                part = try self.parser.next(&buffer, requestMethod: self.methods.first ?? .GET)
            } catch {
                self.failed = true
                context.fireErrorCaught(error)
                return
            }
            guard let part else { break }
            self.buffer = buffer
            self.deliver(part, context: context)
            self.buffer = nil
        }
        guard !self.removed else { return }
        if HTTP1ReceiveBuffer.keepUnparsed(&buffer, stopped: self.parser.isStopped) { self.buffer = buffer }
    }

    private func deliver(_ part: HTTP1ResponseParser.Part, context: ChannelHandlerContext) {
        let response: HTTPClientResponsePart
        switch part {
        case .head(let head): response = .head(head)
        case .body(let slice): response = .body(slice)
        case .end(let trailers):
            if !self.methods.isEmpty { self.methods.removeFirst() }
            response = .end(trailers)
        }
        if let upstream = self.upstream {
            upstream.received(response)
        } else {
            context.fireChannelRead(Self.wrapInboundOut(response))
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let upstream = self.upstream {
            upstream.readComplete()
        } else {
            context.fireChannelReadComplete()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The end of a body delimited by the connection's close (RFC 9112 §6.3, rule 8).
        if !self.failed, !self.removed, let end = self.parser.inputClosed() { self.deliver(end, context: context) }
        context.fireChannelInactive()
    }

    // MARK: Requests out

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        self.write(Self.unwrapOutboundIn(data), context: context, promise: promise)
    }

    /// A request part from the `UpstreamHandler` (directly, or through the pipeline).
    func write(_ part: HTTPClientRequestPart, promise: EventLoopPromise<Void>?) {
        guard let context = self.context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        self.write(part, context: context, promise: promise)
    }

    private var chunked = false

    private func write(_ part: HTTPClientRequestPart, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        switch part {
        case .head(let head):
            self.methods.append(head.method)
            context.write(Self.wrapOutboundOut(self.encode(head, allocator: context.channel.allocator)), promise: promise)
        case .body(let body):
            guard case .byteBuffer(let data) = body else { preconditionFailure("file regions are not sent upstream") }
            guard self.chunked else {
                context.write(Self.wrapOutboundOut(data), promise: promise)
                return
            }
            ChunkedBodyWriter.writeChunk(data, context: context, promise: promise)
        case .end(let trailers):
            guard self.chunked else {
                if let promise { context.write(Self.wrapOutboundOut(ByteBuffer()), promise: promise) }
                return
            }
            self.chunked = false
            ChunkedBodyWriter.writeEnd(trailers: trailers, context: context, promise: promise)
        }
    }

    private func encode(_ head: HTTPRequestHead, allocator: ByteBufferAllocator) -> ByteBuffer {
        self.chunked = false
        var size = head.method.rawValue.utf8.count + head.uri.utf8.count + 16
        for (name, value) in head.headers {
            size += name.utf8.count + value.utf8.count + 4
            if !self.chunked && name.utf8.count == 17 && name.caseInsensitiveASCIIEqual("transfer-encoding") {
                self.chunked = true  // the ProxyHandler writes exactly `chunked` when it frames a body that way
            }
        }
        // The previous head's buffer, reused: once the channel has written it, its storage is this handler's alone
        // and `clear` keeps it, so a kept-alive connection writes its heads without allocating (two allocations
        // per request). Not for downstream connections: an idle one would hold it.
        var buffer = self.scratch ?? allocator.buffer(capacity: size)
        self.scratch = nil
        buffer.clear(minimumCapacity: size)
        buffer.writeString(head.method.rawValue)
        buffer.writeStaticString(" ")
        buffer.writeString(head.uri)
        buffer.writeStaticString(head.version.minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n")
        ChunkedBodyWriter.writeFieldLines(head.headers, into: &buffer)
        buffer.writeStaticString("\r\n")
        // Kept only when small: a pooled connection must not hold the storage of the largest head it ever sent.
        if buffer.capacity <= Self.scratchLimit { self.scratch = buffer }
        return buffer
    }

    static let scratchLimit = 4096

    private var scratch: ByteBuffer?
}
