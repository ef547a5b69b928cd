//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1
import PorticoCore

/// Writes request parts to an HTTP/1.1 upstream exactly as the `ProxyHandler` framed them: a body goes chunked
/// when the head says `Transfer-Encoding: chunked`, and as it is otherwise (the head has its `Content-Length`).
/// Unlike NIO's encoder it never changes the framing fields itself (NIO's drops a TRACE's framing and writes the
/// body raw, which the origin then reads as a next request).
///
/// Runs on the upstream connection's EventLoop (the downstream's); each head is written into the previous one's
/// buffer when the channel is done with it and it is small (`scratch`), else into a new one sized to fit.
final class HTTP1RequestEncoderHandler: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = ByteBuffer

    private var chunked = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch Self.unwrapOutboundIn(data) {
        case .head(let head):
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
