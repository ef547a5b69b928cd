//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOTLS

/// Closes a downstream TLS connection whose handshake is not complete `timeout` after it was accepted (a client
/// that opens connections and never finishes the handshake would otherwise hold a socket and its TLS state
/// forever), then leaves the pipeline once the handshake succeeds. Sits right behind `NIOSSLServerHandler`.
///
/// Runs on the connection's EventLoop: one scheduled task per connection, cancelled at the handshake.
final class TLSHandshakeTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let timeout: TimeAmount
    private var task: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { self.start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.start(context)
        context.fireChannelActive()
    }

    private func start(_ context: ChannelHandlerContext) {
        guard self.task == nil else { return }
        let channel = context.channel
        self.task = context.eventLoop.assumeIsolated().scheduleTask(in: self.timeout) {
            channel.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            self.task?.cancel()
            self.task = nil
            context.fireUserInboundEventTriggered(event)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.task?.cancel()
        self.task = nil
        context.fireChannelInactive()
    }
}
