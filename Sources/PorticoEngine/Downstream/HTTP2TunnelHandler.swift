//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1
import NIOHTTP2

/// WebSocket over HTTP/2 (RFC 8441) once the upstream said 101: joins one downstream stream to its upstream
/// connection as a byte stream, the HTTP/2 half of what `GlueHandler` does for HTTP/1.1.
///
/// Sits last in the upstream connection's pipeline (behind an `IdleStateHandler`, which sees both directions: the
/// upstream's reads and the client's bytes written to it) and is the stream's consumer in `HTTP2StreamTable`; both
/// run on the downstream connection's EventLoop. The client's DATA is written to the upstream, and the upstream's
/// bytes become DATA; the client's END_STREAM half-closes the upstream connection, and the upstream's end becomes
/// END_STREAM (RFC 8441 §4: a TCP FIN maps to END_STREAM). Backpressure both ways: the upstream is not read while
/// the stream is not writable, and the stream's DATA is not taken (its window stays shut) while the upstream is
/// not writable.
final class HTTP2TunnelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let table: HTTP2StreamTable
    private let streamID: HTTP2StreamID
    private var context: ChannelHandlerContext?
    /// The upstream's `read()` waits for the stream to be writable.
    private var upstreamReadPending = false
    /// The stream's read waits for the upstream to be writable.
    private var streamReadPending = false

    init(table: HTTP2StreamTable, streamID: HTTP2StreamID) {
        self.table = table
        self.streamID = streamID
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    // MARK: Upstream to client

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.table.write(self.streamID, .body(.byteBuffer(self.unwrapInboundIn(data))), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.table.flush()
    }

    func read(context: ChannelHandlerContext) {
        if self.table.isWritable(self.streamID) {
            context.read()
        } else {
            self.upstreamReadPending = true
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.table.endTunnel(self.streamID)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        if let e = event as? ChannelEvent, case .inputClosed = e {
            // The upstream ended its side: END_STREAM, the client may still send.
            self.table.write(self.streamID, .end(nil), promise: nil)
            self.table.flush()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable && self.streamReadPending {
            self.streamReadPending = false
            self.table.read(self.streamID)
        }
        context.fireChannelWritabilityChanged()
    }

    // MARK: Client to upstream (calls from the table)

    func received(_ part: HTTPServerRequestPart) {
        guard let context = self.context else { return }
        switch part {
        case .body(let buffer):
            context.write(self.wrapOutboundOut(buffer), promise: nil)
        case .end:
            // The client's END_STREAM: the upstream's write side ends, the response side goes on.
            context.flush()
            context.close(mode: .output, promise: nil)
        case .head:
            break
        }
    }

    func readComplete() {
        self.context?.flush()
    }

    func wantsRead() {
        if self.context?.channel.isWritable ?? false {
            self.table.read(self.streamID)
        } else {
            self.streamReadPending = true
        }
    }

    func downstreamWritable() {
        if self.upstreamReadPending, let context = self.context {
            self.upstreamReadPending = false
            context.read()
        }
    }

    /// The stream or its connection is gone.
    func downstreamClosed() {
        self.context?.close(promise: nil)
    }
}
