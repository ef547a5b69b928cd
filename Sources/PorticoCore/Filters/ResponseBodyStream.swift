//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore
import Synchronization

/// A response body produced elsewhere while requests answer with it (`FilterResponse.bodyStream`): the cache's
/// collapsed misses send the leading request's response as it arrives.
///
/// One producer (on its own EventLoop) appends parts and then finishes or fails it; any number of readers, each
/// on its own EventLoop and at its own pace, read the parts from the start. The producer never waits for a
/// reader: every part is kept until the stream is released, so it is only for bodies of bounded size (the cache
/// streams only responses whose `Content-Length` is within its object limit). The lock is held for an array
/// append or slice only.
public final class ResponseBodyStream: Sendable {
    private struct State {
        var parts: [ByteBuffer] = []
        var bytes = 0
        var end: Read?
        var waiting: [(any EventLoop, @Sendable () -> Void)] = []

        mutating func takeWaiting() -> [(any EventLoop, @Sendable () -> Void)] {
            guard !self.waiting.isEmpty else { return [] }
            defer { self.waiting.removeAll() }
            return self.waiting
        }
    }

    /// What a reader gets.
    public enum Read: Sendable {
        /// Parts after the reader's position (then at the end of them).
        case data([ByteBuffer])
        /// Nothing new yet: `notify` runs on the reader's EventLoop when there is.
        case wait
        /// Complete: every part was read.
        case end
        /// The producer failed (its upstream closed mid-body): the reader must fail its response, never end it.
        case failed
    }

    private let state = Mutex(State())

    public init() {}

    /// The producer's next part.
    public func append(_ part: ByteBuffer) {
        let waiting = self.state.withLock { s in
            s.parts.append(part)
            s.bytes += part.readableBytes
            return s.takeWaiting()
        }
        Self.wake(waiting)
    }

    /// The body is complete.
    public func finish() { self.end(.end) }

    /// The body will not be complete. Does nothing after `finish`.
    public func fail() { self.end(.failed) }

    private func end(_ how: Read) {
        let waiting = self.state.withLock { s -> [(any EventLoop, @Sendable () -> Void)] in
            guard s.end == nil else { return [] }
            s.end = how
            return s.takeWaiting()
        }
        Self.wake(waiting)
    }

    /// The parts from `position` on, advancing it; when there are none and the body is not over, `notify` (if
    /// given: a reader asks once per wait) is kept and run once on `eventLoop` when there is news.
    public func read(from position: inout Int, eventLoop: any EventLoop, notify: (@Sendable () -> Void)?) -> Read {
        self.state.withLock { s in
            if position < s.parts.count {
                defer { position = s.parts.count }
                return .data(Array(s.parts[position...]))
            }
            if let end = s.end { return end }
            if let notify { s.waiting.append((eventLoop, notify)) }
            return .wait
        }
    }

    /// The whole body as one buffer (one part is returned as it is; more are copied into one).
    public func joined() -> ByteBuffer {
        self.state.withLock { s in
            if s.parts.count == 1 { return s.parts[0] }
            var out = ByteBuffer()
            out.reserveCapacity(s.bytes)
            for p in s.parts { out.writeImmutableBuffer(p) }
            return out
        }
    }

    private static func wake(_ waiting: [(any EventLoop, @Sendable () -> Void)]) {
        for (loop, notify) in waiting { loop.execute(notify) }
    }
}
