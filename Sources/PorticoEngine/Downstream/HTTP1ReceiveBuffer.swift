//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore

/// The received and not yet parsed bytes of an HTTP/1.1 codec (`HTTP1ServerCodecHandler` downstream,
/// `HTTP1ClientCodecHandler` upstream): what both do with them around their parser. On the connection's EventLoop.
enum HTTP1ReceiveBuffer {
    /// Joins a read to what is left of the previous one (copied only then: a read that starts a head or body part
    /// is parsed in place).
    static func join(_ incoming: ByteBuffer, to buffer: inout ByteBuffer?) {
        if var buffered = buffer, buffered.readableBytes > 0 {
            buffer = nil  // unique while appending
            buffered.writeImmutableBuffer(incoming)
            buffer = buffered
        } else {
            buffer = incoming
        }
    }

    /// After a decoding pass, whether to keep `buffer`: not once everything was parsed (an idle connection holds
    /// no buffer); when a partial line waits for more bytes, what was consumed is dropped first (in place: the
    /// caller's buffer is the only reference).
    static func keepUnparsed(_ buffer: inout ByteBuffer, stopped: Bool) -> Bool {
        guard buffer.readableBytes > 0 || stopped else { return false }
        if buffer.readerIndex > 4096 && !stopped {
            buffer.discardReadBytes()
        }
        return true
    }

    /// When the codec leaves the pipeline after a protocol switch: the bytes it holds belong to the new protocol
    /// and go to the handler behind it (not when the pipeline is torn down on close).
    static func handOn(_ buffer: inout ByteBuffer?, stopped: Bool, context: ChannelHandlerContext) {
        guard let rest = buffer, rest.readableBytes > 0, stopped, context.channel.isActive else { return }
        buffer = nil
        context.fireChannelRead(NIOAny(rest))
        context.fireChannelReadComplete()
    }
}
