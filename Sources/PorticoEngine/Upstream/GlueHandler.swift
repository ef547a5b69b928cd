//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore

/// Joins two channels on the same EventLoop into one byte stream (swift-nio-examples' `GlueHandler`), for
/// connections upgraded past HTTP (WebSocket after a 101). Bytes are forwarded as they arrive, without copying;
/// a side's `read()` is held while the other side is not writable and replayed when it is (backpressure both
/// ways). Either side closing, or `IdleStateHandler` reporting silence, closes both.
final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    private init() {}

    static func matchedPair() -> (GlueHandler, GlueHandler) {
        let a = GlueHandler()
        let b = GlueHandler()
        a.partner = b
        b.partner = a
        return (a, b)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.partner?.partnerWrite(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.partner?.partnerClose()
        self.partner = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        if let e = event as? ChannelEvent, case .inputClosed = e {
            // Half-close: pass the end of this direction on.
            self.partner?.partnerShutdownOutput()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { self.partner?.partnerBecameWritable() }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if let partner = self.partner, partner.isWritable {
            context.read()
        } else {
            self.pendingRead = true
        }
    }

    // MARK: Calls from the partner (same EventLoop)

    private var isWritable: Bool { self.context?.channel.isWritable ?? false }

    private func partnerWrite(_ data: NIOAny) { self.context?.write(data, promise: nil) }
    private func partnerFlush() { self.context?.flush() }
    private func partnerClose() { self.context?.close(promise: nil) }
    private func partnerShutdownOutput() { self.context?.close(mode: .output, promise: nil) }

    private func partnerBecameWritable() {
        if self.pendingRead, let context = self.context {
            self.pendingRead = false
            context.read()
        }
    }
}
