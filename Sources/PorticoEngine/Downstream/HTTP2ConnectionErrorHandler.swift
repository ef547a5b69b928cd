//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import NIOHTTP2

/// The last handler of a downstream HTTP/2 connection: closes the connection on a connection error.
///
/// Runs on the connection's EventLoop. When NIOHTTP2 detects a connection error (a protocol violation, or one of
/// its denial-of-service limits: rapid reset, CONTINUATION or control-frame floods, an oversized header block) it
/// writes GOAWAY with the error code (RFC 9113 §5.4.1) and fires the error, but leaves closing to the pipeline.
/// Without this handler a flooding client would keep its connection, and its memory, after the GOAWAY.
/// Stream errors end their stream only (`HTTP2StreamTable` keeps them) and never reach here.
final class HTTP2ConnectionErrorHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Protocol violations and floods are worth a line; a client vanishing without close_notify is not.
        self.logger.log(
            level: error is any NIOHTTP2Error ? .info : .debug,
            "closing HTTP/2 connection",
            metadata: ["reason": "\(error)", "downstream": "\(context.remoteAddress.map { "\($0)" } ?? "-")"]
        )
        context.close(promise: nil)
    }
}
