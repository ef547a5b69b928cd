//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOEmbedded
import Testing

@testable import PorticoEngine

/// What reaches the TLS handler: small writes joined per flush, large ones passed through, order and promises kept.
@Suite struct TLSWriteCoalescingHandlerTests {
    func writes(_ channel: EmbeddedChannel) throws -> [ByteBuffer] {
        var out: [ByteBuffer] = []
        while let b = try channel.readOutbound(as: ByteBuffer.self) { out.append(b) }
        return out
    }

    @Test func smallWritesBecomeOneAndLargeOnesPassInOrder() throws {
        let channel = EmbeddedChannel(handler: TLSWriteCoalescingHandler())
        var completed = 0
        let p1 = channel.eventLoop.makePromise(of: Void.self)
        let p2 = channel.eventLoop.makePromise(of: Void.self)
        p1.futureResult.whenSuccess { completed += 1 }
        p2.futureResult.whenSuccess { completed += 1 }

        channel.write(ByteBuffer(string: "HTTP/1.1 200 OK\r\n\r\n"), promise: p1)
        channel.write(ByteBuffer(string: "hello"), promise: p2)
        #expect(try self.writes(channel).isEmpty)  // nothing before the flush
        channel.flush()
        #expect(try self.writes(channel).map { String(buffer: $0) } == ["HTTP/1.1 200 OK\r\n\r\nhello"])
        #expect(completed == 2)

        // A large write sends what was gathered first, then itself, uncopied.
        let large = ByteBuffer(repeating: 0x61, count: TLSWriteCoalescingHandler.limit)
        channel.write(ByteBuffer(string: "head"), promise: nil)
        channel.write(large, promise: nil)
        channel.write(ByteBuffer(string: "tail"), promise: nil)
        channel.flush()
        let out = try self.writes(channel)
        #expect(out.map(\.readableBytes) == [4, TLSWriteCoalescingHandler.limit, 4])
        #expect(out.map { String(buffer: $0.getSlice(at: $0.readerIndex, length: 4)!) } == ["head", "aaaa", "tail"])

        // Gathered bytes never exceed one record's worth: a full buffer goes on before the next write.
        for _ in 0..<5 { channel.write(ByteBuffer(repeating: 0x62, count: 6000), promise: nil) }
        channel.flush()
        let chunks = try self.writes(channel)
        #expect(chunks.allSatisfy { $0.readableBytes < TLSWriteCoalescingHandler.limit })
        #expect(chunks.reduce(0) { $0 + $1.readableBytes } == 30_000)
        _ = try channel.finish()
    }

    /// Records the writes and the close that reach it (where the TLS handler would be).
    final class Recorder: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var events: [String] = []
        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            self.events.append("write " + String(buffer: self.unwrapOutboundIn(data)))
            context.write(data, promise: promise)
        }
        func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
            self.events.append("close")
            context.close(mode: mode, promise: promise)
        }
    }

    @Test func closeHandsOnWhatWasGatheredFirst() throws {
        let recorder = Recorder()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(recorder)
        try channel.pipeline.syncOperations.addHandler(TLSWriteCoalescingHandler())
        channel.write(ByteBuffer(string: "last "), promise: nil)
        channel.write(ByteBuffer(string: "words"), promise: nil)
        channel.close(promise: nil)
        #expect(recorder.events == ["write last words", "close"])
    }
}
