//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore

/// Writes a PROXY protocol header as the first bytes of an upstream connection, then leaves the pipeline.
///
/// It sits next to the socket. NIO completes a connect's future before it tells the pipeline the channel is
/// active, so the request may be written before `channelActive`: writes that arrive first are held and go out
/// after the header. TLS starts in `channelActive` of the handler behind this one, so the header precedes the
/// ClientHello too.
///
/// Runs on the connection's EventLoop.
package final class ProxyProtocolSender: ChannelDuplexHandler, RemovableChannelHandler {
    package typealias InboundIn = ByteBuffer
    package typealias OutboundIn = ByteBuffer
    package typealias OutboundOut = ByteBuffer

    private let header: ByteBuffer
    private var held: [(NIOAny, EventLoopPromise<Void>?)] = []
    private var flushHeld = false
    private var sent = false

    package init(header: ByteBuffer) {
        self.header = header
    }

    package func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.send(context) }
    }

    package func channelActive(context: ChannelHandlerContext) {
        self.send(context)
        context.fireChannelActive()
    }

    package func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if self.sent { return context.write(data, promise: promise) }
        self.held.append((data, promise))
    }

    package func flush(context: ChannelHandlerContext) {
        if self.sent { return context.flush() }
        self.flushHeld = true
    }

    private func send(_ context: ChannelHandlerContext) {
        guard !self.sent else { return }
        self.sent = true
        context.write(self.wrapOutboundOut(self.header), promise: nil)
        for (data, promise) in self.held { context.write(data, promise: promise) }
        self.held = []
        context.flush()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    package func channelInactive(context: ChannelHandlerContext) {
        for (_, promise) in self.held { promise?.fail(ChannelError.ioOnClosedChannel) }
        self.held = []
        context.fireChannelInactive()
    }
}
