//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1
import NIOHTTP2

/// Where a `ProxyHandler` reads its requests from and writes its responses to, on the downstream connection's
/// EventLoop: its own place in an HTTP/1.1 connection's pipeline, or one stream of an HTTP/2 connection's
/// `HTTP2StreamTable` (streams have no channel of their own: ARCHITECTURE.md §2, issue 8 §4).
///
/// A two-case enum rather than a protocol: the HTTP/1.1 case, on every response part of every request, is a
/// switch and a direct call, and neither case allocates.
enum Downstream {
    /// HTTP/1.1: the handler's context in the connection's pipeline, and the codec in front of it, which takes
    /// response parts directly.
    case connection(ChannelHandlerContext, HTTP1ServerCodecHandler)
    /// HTTP/2: a stream of the connection's table.
    case stream(HTTP2StreamTable, HTTP2StreamID)

    var eventLoop: any EventLoop {
        switch self {
        case .connection(let context, _): context.eventLoop
        case .stream(let table, _): table.eventLoop
        }
    }

    /// The client's connection (an HTTP/2 stream's is the one its table runs on).
    var channel: any Channel {
        switch self {
        case .connection(let context, _): context.channel
        case .stream(let table, _): table.channel
        }
    }

    /// Whether a response part written now is taken without growing a buffer past its high watermark.
    var isWritable: Bool {
        switch self {
        case .connection(let context, _): context.channel.isWritable
        case .stream(let table, let id): table.isWritable(id)
        }
    }

    /// Bytes written and not yet sent (the socket's buffer; an HTTP/2 stream's DATA waiting for its windows).
    var bufferedBytes: Int {
        switch self {
        case .connection(let context, _): (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? Int.max
        case .stream(let table, let id): table.bufferedBytes(id)
        }
    }

    func write(_ part: HTTPServerResponsePart, promise: EventLoopPromise<Void>?) {
        switch self {
        case .connection(_, let codec): codec.write(part, promise: promise)
        case .stream(let table, let id): table.write(id, part, promise: promise)
        }
    }

    func flush() {
        switch self {
        case .connection(let context, _): context.flush()
        case .stream(let table, _): table.flush()
        }
    }

    func writeAndFlush(_ part: HTTPServerResponsePart, promise: EventLoopPromise<Void>?) {
        self.write(part, promise: promise)
        self.flush()
    }

    /// More request parts may come (the handler's `read()`).
    func read() {
        switch self {
        case .connection(let context, _): context.read()
        case .stream(let table, let id): table.read(id)
        }
    }

    /// Closes the connection (HTTP/1.1; `.output` shuts down our side only) or resets the stream if it is still
    /// open (HTTP/2, RST_STREAM CANCEL; `mode` does not apply).
    func close(mode: CloseMode = .all, promise: EventLoopPromise<Void>?) {
        switch self {
        case .connection(let context, _): context.close(mode: mode, promise: promise)
        case .stream(let table, let id):
            table.reset(id, .cancel)
            promise?.succeed(())
        }
    }

    /// HTTP/2: ends a stream whose answer is complete but whose request is not, with RST_STREAM NO_ERROR (the
    /// client stops sending without failing the response it got, RFC 9113 §8.1). HTTP/1.1: nothing.
    func resetAfterAnswer() {
        if case .stream(let table, let id) = self { table.reset(id, .noError) }
    }
}
