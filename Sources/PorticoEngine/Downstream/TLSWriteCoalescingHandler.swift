//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore

/// Joins the small writes between two flushes into one buffer before they reach `NIOSSLServerHandler`.
///
/// Runs on the connection's EventLoop, directly behind the TLS handler. NIOSSL turns every write into its own
/// `SSL_write`, so its own TLS record (RFC 8446 §5): an HTTP/1.1 response is a record for the head and one for the
/// body, and an HTTP/2 flush of ten streams is twenty records, each with its header, tag and AEAD seal, and with
/// the per-write bookkeeping of NIOSSL and BoringSSL. nginx fills one buffer before it encrypts
/// (`ssl_buffer_size`, 16k); so does this handler: writes smaller than `limit` are copied into one buffer, which
/// goes on at the flush, or once it reaches `limit`. A larger write first sends what was gathered, then passes
/// through without a copy, so the order never changes. Promises of gathered writes complete with the one write
/// that carries them.
final class TLSWriteCoalescingHandler: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A TLS record carries at most 16 KiB of plaintext (RFC 8446 §5.1).
    static let limit = 16 * 1024

    private var gathered: ByteBuffer?
    private var promises: [EventLoopPromise<Void>] = []

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = self.unwrapOutboundIn(data)
        guard buffer.readableBytes < Self.limit else {
            self.sendGathered(context: context)
            context.write(data, promise: promise)
            return
        }
        if let size = self.gathered?.readableBytes, size + buffer.readableBytes < Self.limit {
            self.append(buffer, allocator: context.channel.allocator)
        } else {
            // A first write, or one that would overfill the record: kept as it is (a lone write, the common case
            // for a flush, is never copied).
            self.sendGathered(context: context)
            self.gathered = buffer
        }
        if let promise { self.promises.append(promise) }
    }

    func flush(context: ChannelHandlerContext) {
        self.sendGathered(context: context)
        context.flush()
    }

    /// Whatever was gathered goes out before the connection closes (a last response, a GOAWAY).
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        self.sendGathered(context: context)
        context.close(mode: mode, promise: promise)
    }

    /// Teardown: writes never flushed are lost, as they would be in the channel itself.
    func handlerRemoved(context: ChannelHandlerContext) {
        self.gathered = nil
        let promises = self.promises
        self.promises = []
        for p in promises { p.fail(ChannelError.ioOnClosedChannel) }
    }

    private func append(_ buffer: ByteBuffer, allocator: ByteBufferAllocator) {
        var current = self.gathered!
        self.gathered = nil
        if current.writableBytes < buffer.readableBytes {
            // The first write was kept as it came (perhaps a slice of a larger buffer): copy it once into a
            // buffer with room for the rest of the record.
            var fresh = allocator.buffer(capacity: Self.limit)
            fresh.writeImmutableBuffer(current)
            current = fresh
        }
        current.writeImmutableBuffer(buffer)
        self.gathered = current
    }

    private func sendGathered(context: ChannelHandlerContext) {
        guard let buffer = self.gathered else { return }
        self.gathered = nil
        let promise: EventLoopPromise<Void>?
        switch self.promises.count {
        case 0:
            promise = nil
        case 1:
            promise = self.promises[0]
        default:
            let all = context.eventLoop.makePromise(of: Void.self)
            let waiting = self.promises
            all.futureResult.whenComplete { result in
                for p in waiting { p.completeWith(result) }
            }
            promise = all
        }
        self.promises.removeAll(keepingCapacity: true)
        context.write(self.wrapOutboundOut(buffer), promise: promise)
    }
}
