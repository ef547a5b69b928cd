//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import PorticoCore

/// The first handler of a connection on a `proxy_protocol` listener: it reads the PROXY protocol header (v1 or v2),
/// hands the addresses to `onHeader` (which builds the rest of the pipeline behind it: TLS, HTTP), passes on the
/// bytes after the header and leaves the pipeline. A malformed header, or none within the timeout, closes the
/// connection: nothing the client sent is read as HTTP without a header.
///
/// Runs on the connection's EventLoop.
final class ProxyProtocolDecoder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// v2 headers carry TLVs after the addresses; more than this is not a header we want to hold in memory.
    static let maxHeaderBytes = 4096

    private var buffer: ByteBuffer?
    private var timer: Scheduled<Void>?
    private let timeout: TimeAmount
    private let onHeader: (ChannelHandlerContext, ProxyProtocol.Addresses) throws -> Void
    private let onRefused: (String) -> Void
    private var done = false

    init(timeout: TimeAmount, onHeader: @escaping (ChannelHandlerContext, ProxyProtocol.Addresses) throws -> Void,
         onRefused: @escaping (String) -> Void) {
        self.timeout = timeout
        self.onHeader = onHeader
        self.onRefused = onRefused
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(in: self.timeout) {
            let (decoder, context) = loopBound.value
            decoder.refuse(context, "no PROXY protocol header within \(decoder.timeout)")
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.done else { return }
        var incoming = self.unwrapInboundIn(data)
        if self.buffer == nil {
            self.buffer = incoming
        } else {
            self.buffer!.writeBuffer(&incoming)
        }
        switch ProxyProtocol.parse(self.buffer!.readableBytesView) {
        case .incomplete:
            if self.buffer!.readableBytes > Self.maxHeaderBytes { self.refuse(context, "PROXY protocol header too long") }
        case .invalid(let why):
            self.refuse(context, why)
        case .header(let addresses, let length):
            self.done = true
            self.timer?.cancel()
            var rest = self.buffer!
            self.buffer = nil
            rest.moveReaderIndex(forwardBy: length)
            do {
                try self.onHeader(context, addresses)
            } catch {
                context.close(promise: nil)
                return
            }
            guard context.channel.isActive else { return }  // refused by the listener's rules
            if rest.readableBytes > 0 { context.fireChannelRead(self.wrapInboundOut(rest)) }
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    private func refuse(_ context: ChannelHandlerContext, _ why: String) {
        guard !self.done else { return }
        self.done = true
        self.onRefused(why)
        context.close(promise: nil)
    }
}
