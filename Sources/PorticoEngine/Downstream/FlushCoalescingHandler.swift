//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore

/// Coalesces the flushes of an HTTP/2 connection into one per EventLoop tick.
///
/// Responses of many streams arrive from different upstream connections, each ending with a flush that NIOHTTP2
/// passes straight to the connection (it only defers flushes during its own reads). Each would cost a TLS record
/// and a `write(2)`. Sitting below `NIOHTTP2Handler`, this handler lets writes through and turns the flushes of one
/// tick into a single flush at the end of it (`eventLoop.execute` runs after the tick's I/O events).
final class FlushCoalescingHandler: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private var scheduled = false

    func flush(context: ChannelHandlerContext) {
        guard !self.scheduled else { return }
        self.scheduled = true
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = bound.value
            guard handler.scheduled else { return }
            handler.scheduled = false
            context.flush()
        }
    }

    /// Whatever was written goes out before the connection closes (a GOAWAY, the last stream's response).
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if self.scheduled {
            self.scheduled = false
            context.flush()
        }
        context.close(mode: mode, promise: promise)
    }
}
