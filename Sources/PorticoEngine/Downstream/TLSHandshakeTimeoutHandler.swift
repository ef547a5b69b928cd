//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOSSL
import NIOTLS

/// Closes a downstream TLS connection whose handshake is not complete `timeout` after it was accepted (a client
/// that opens connections and never finishes the handshake would otherwise hold a socket and its TLS state
/// forever), then leaves the pipeline once the handshake succeeds. Sits right behind `NIOSSLServerHandler`.
///
/// Also counts handshakes by TLS version, and failures (errors and timeouts), in the worker's metrics.
///
/// Runs on the connection's EventLoop: one scheduled task per connection, cancelled at the handshake.
final class TLSHandshakeTimeoutHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let timeout: TimeAmount
    private var task: Scheduled<Void>?
    private let metrics: WorkerMetrics?
    private let listenerSlot: Int
    private var failed = false

    init(timeout: TimeAmount, metrics: WorkerMetrics? = nil, listenerSlot: Int = 0) {
        self.timeout = timeout
        self.metrics = metrics
        self.listenerSlot = listenerSlot
    }

    private func countFailure() {
        guard !self.failed, let m = self.metrics else { return }
        self.failed = true
        m.listeners[m.listener(self.listenerSlot)].tlsFailures += 1
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.countFailure()
        context.fireErrorCaught(error)
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
        self.task = context.eventLoop.assumeIsolated().scheduleTask(in: self.timeout) { [self] in
            self.countFailure()
            channel.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            self.task?.cancel()
            self.task = nil
            if let m = self.metrics {
                let version = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self).tlsVersion
                let index = version == .tlsv12 ? 0 : version == .tlsv13 ? 1 : 2
                m.listeners[m.listener(self.listenerSlot)].tlsHandshakes[index] += 1
            }
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
