//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1

/// Chunked transfer coding on the way out (RFC 9112 §7.1), shared by the downstream response codec and the
/// upstream request encoder. Body buffers are written as they are, between a chunk-size line and a CRLF (no copy).
/// Runs on the calling handler's EventLoop.
enum ChunkedBodyWriter {
    private static let crlf = ByteBuffer(staticString: "\r\n")
    private static let lastChunk = ByteBuffer(staticString: "0\r\n\r\n")

    /// One chunk; an empty `data` writes nothing (a zero-size chunk would end the body).
    static func writeChunk(_ data: ByteBuffer, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        guard data.readableBytes > 0 else {
            promise?.succeed()
            return
        }
        var size = context.channel.allocator.buffer(capacity: 18)
        size.writeString(String(data.readableBytes, radix: 16))
        size.writeStaticString("\r\n")
        context.write(NIOAny(size), promise: nil)
        context.write(NIOAny(data), promise: nil)
        context.write(NIOAny(Self.crlf), promise: promise)
    }

    /// The last chunk and the trailer section.
    static func writeEnd(trailers: HTTPHeaders?, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        guard let trailers, !trailers.isEmpty else {
            context.write(NIOAny(Self.lastChunk), promise: promise)
            return
        }
        var end = context.channel.allocator.buffer(capacity: 64)
        end.writeStaticString("0\r\n")
        Self.writeFieldLines(trailers, into: &end)
        end.writeStaticString("\r\n")
        context.write(NIOAny(end), promise: promise)
    }

    /// `name: value` lines (heads and trailer sections).
    static func writeFieldLines(_ fields: HTTPHeaders, into buffer: inout ByteBuffer) {
        for (name, value) in fields {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
    }
}
