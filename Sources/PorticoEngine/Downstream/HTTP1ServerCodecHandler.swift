//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1
import PorticoCore

/// Portico's HTTP/1.1 server codec for a downstream connection, one handler for both directions:
///
/// - Inbound, bytes are parsed by `HTTP1RequestParser` (strict, RFC 9112) into request parts for the
///   `ProxyHandler`. Body parts are slices of the receive buffer (no copy); bytes are only copied when a read ends
///   in the middle of a head or chunk line and the next read has to be joined to it. A malformed request is
///   reported once with `errorCaught(HTTP1ParseError)` (the `ProxyHandler` answers 400, 414, 431, 501 or 505 and
///   closes) and every later byte is dropped. After a request that switches protocols (Upgrade, CONNECT) parsing
///   stops; when this handler is removed for a tunnel, the bytes it holds go to the handler behind it.
/// - Outbound, response parts are written with the framing RFC 9112 §6.3 requires, which depends on the request
///   (this handler saw it): no body for HEAD, 1xx, 204 and 304; `Content-Length` passed on; otherwise chunked to
///   an HTTP/1.1 client, and close-delimited to an HTTP/1.0 one (the `ProxyHandler` then closes). Body buffers are
///   written as they are, with chunk framing around them.
/// - The `ProxyHandler` behind it is called directly both ways (`proxy`, `write(_:promise:)`); the pipeline carries
///   only the connection's events, errors and, after a protocol switch, the tunnel's bytes.
///
/// Runs on the connection's EventLoop.
final class HTTP1ServerCodecHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = ByteBuffer

    /// After a protocol switch, at most this much of what the client sends is held for the tunnel; reads wait
    /// beyond it (RFC 6455 §4.1: a client should not send before the 101 anyway).
    static let maxHeldAfterSwitch = 16 * 1024

    private var parser: HTTP1RequestParser
    private var buffer: ByteBuffer?
    private var failed = false
    /// A removal from inside the `ProxyHandler` (a tunnel) ends the decoding loop.
    private var removed = false

    /// The methods of requests passed on and not answered yet, oldest first (pipelining answers in order). An
    /// array: an empty one allocates nothing, and more than one waits only while a client pipelines.
    private var methods: [HTTPMethod] = []
    /// The handler behind this one, called directly: a request part, or a response part coming back, is a method
    /// call instead of a trip through the pipeline (an `NIOAny` box, a dynamic cast and a context hop each, five
    /// times per request). Nil once it has left (a tunnel): parts then go through the pipeline.
    var proxy: ProxyHandler?
    private var context: ChannelHandlerContext?
    private enum BodyFraming {
        case none
        case raw
        case chunked
    }
    private var framing = BodyFraming.none

    init(limits: HTTP1RequestParser.Limits) {
        self.parser = HTTP1RequestParser(limits: limits)
    }

    /// Bytes received and not yet parsed into requests (a pipelined request, the rest of a body).
    var hasBufferedInput: Bool { (self.buffer?.readableBytes ?? 0) > 0 }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    // MARK: Requests in

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.failed else { return }
        HTTP1ReceiveBuffer.join(Self.unwrapInboundIn(data), to: &self.buffer)
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
            let request: HTTPServerRequestPart
            switch part {
            case .head(let head):
                self.methods.append(head.method)
                request = .head(head.makeNIOHead())
            case .body(let slice):
                request = .body(slice)
            case .end(let trailers):
                request = .end(trailers)
            }
            if let proxy = self.proxy {
                proxy.received(request)
            } else {
                context.fireChannelRead(Self.wrapInboundOut(request))
            }
            self.buffer = nil
        }
        guard !self.removed else { return }
        if HTTP1ReceiveBuffer.keepUnparsed(&buffer, stopped: self.parser.isStopped) { self.buffer = buffer }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if let proxy = self.proxy {
            proxy.readBatchComplete()
        } else {
            context.fireChannelReadComplete()
        }
    }

    func read(context: ChannelHandlerContext) {
        if self.parser.isStopped, let held = self.buffer, held.readableBytes >= Self.maxHeldAfterSwitch {
            return  // the tunnel (or the close after a refused switch) reads again
        }
        context.read()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.removed = true
        self.proxy = nil
        self.context = nil
        HTTP1ReceiveBuffer.handOn(&self.buffer, stopped: self.parser.isStopped, context: context)
    }

    // MARK: Responses out

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        self.write(Self.unwrapOutboundIn(data), context: context, promise: promise)
    }

    /// A response part from the `ProxyHandler` (directly, or through the pipeline).
    func write(_ part: HTTPServerResponsePart, promise: EventLoopPromise<Void>?) {
        guard let context = self.context else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        self.write(part, context: context, promise: promise)
    }

    private func write(_ part: HTTPServerResponsePart, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        switch part {
        case .head(let head):
            context.write(Self.wrapOutboundOut(self.encode(head, allocator: context.channel.allocator)), promise: promise)
        case .body(let body):
            switch self.framing {
            case .raw:
                context.write(Self.wrapOutboundOut(Self.buffer(body)), promise: promise)
            case .chunked:
                ChunkedBodyWriter.writeChunk(Self.buffer(body), context: context, promise: promise)
            case .none:
                // A body where none may go (HEAD, 204, 304): never sent, it would be read as the next response.
                promise?.succeed()
            }
        case .end(let trailers):
            let framing = self.framing
            self.framing = .none
            guard framing == .chunked else {
                if let promise { context.write(Self.wrapOutboundOut(ByteBuffer()), promise: promise) }
                return
            }
            ChunkedBodyWriter.writeEnd(trailers: trailers, context: context, promise: promise)
        }
    }

    /// The head with the framing its request and status call for (RFC 9112 §6.3, RFC 9110 §8.6).
    private func encode(_ head: HTTPResponseHead, allocator: ByteBufferAllocator) -> ByteBuffer {
        // Changed only where the framing needs it: the fields are shared with `head`, so a change copies them.
        var headers = head.headers
        let code = head.status.code
        if code < 200 {
            // 1xx (and 101, before a tunnel): no body, no framing fields; the request is still to be answered.
            self.framing = .none
            if code != 101 { Self.removeFraming(&headers, keepLength: false) }
        } else {
            let method = self.methods.isEmpty ? .GET : self.methods.removeFirst()
            if method == .HEAD || code == 304 {
                // The length describes the representation a GET would get; there is no body.
                self.framing = .none
                Self.removeFraming(&headers, keepLength: true)
            } else if code == 204 {
                self.framing = .none
                Self.removeFraming(&headers, keepLength: false)
            } else if headers.contains(name: "content-length") {
                self.framing = .raw
                Self.removeFraming(&headers, keepLength: true)
            } else if head.version.major == 1 && head.version.minor >= 1 {
                self.framing = .chunked
                headers.replaceOrAdd(name: "Transfer-Encoding", value: "chunked")
            } else {
                // An HTTP/1.0 client learns the end of the body from the close.
                self.framing = .raw
                Self.removeFraming(&headers, keepLength: true)
            }
        }
        // Sized for the whole head, so it is written without growing.
        let phrase = head.status.reasonPhrase
        var size = 32 + phrase.utf8.count
        for (name, value) in headers { size += name.utf8.count + value.utf8.count + 4 }
        var buffer = allocator.buffer(capacity: size)
        if head.version.minor == 0 {
            buffer.writeStaticString("HTTP/1.0 ")
        } else {
            buffer.writeStaticString("HTTP/1.1 ")
        }
        buffer.writeString(String(code))
        buffer.writeStaticString(" ")
        buffer.writeString(phrase)
        buffer.writeStaticString("\r\n")
        ChunkedBodyWriter.writeFieldLines(headers, into: &buffer)
        buffer.writeStaticString("\r\n")
        return buffer
    }

    private static func removeFraming(_ headers: inout HTTPHeaders, keepLength: Bool) {
        if !keepLength && headers.contains(name: "content-length") { headers.remove(name: "content-length") }
        if headers.contains(name: "transfer-encoding") { headers.remove(name: "transfer-encoding") }
    }

    private static func buffer(_ data: IOData) -> ByteBuffer {
        switch data {
        case .byteBuffer(let b): return b
        case .fileRegion: preconditionFailure("file regions are not sent downstream")
        }
    }
}
