//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore

/// Writes a PROXY protocol header as the first bytes of an upstream connection, before TLS starts (it sits next
/// to the socket, so the header goes out before the handlers behind it hear that the connection is active), then
/// leaves the pipeline.
///
/// Runs on the connection's EventLoop.
package final class ProxyProtocolSender: ChannelInboundHandler, RemovableChannelHandler {
    package typealias InboundIn = ByteBuffer
    package typealias OutboundOut = ByteBuffer

    private let header: ByteBuffer

    package init(header: ByteBuffer) {
        self.header = header
    }

    package func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(self.wrapOutboundOut(self.header), promise: nil)
        context.fireChannelActive()
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
