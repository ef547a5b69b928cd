//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//
// The window arithmetic is SwiftNIO HTTP/2's `InboundWindowManager` (Apache-2.0, Copyright (c) 2019 Apple Inc.
// and the SwiftNIO project authors), which is internal to NIOHTTP2.
//===----------------------------------------------------------------------===//

/// When to send WINDOW_UPDATE for one inbound flow-control window (a stream's, or the connection's), as a value:
/// it answers with the increment to send, or nil. Used by `HTTP2StreamTable`, on the connection's EventLoop.
///
/// `NIOHTTP2Handler` tracks the windows (RFC 9113 §6.9) but, without its stream multiplexer, sends no
/// WINDOW_UPDATE itself: it reports each window's new size (`NIOHTTP2WindowUpdatedEvent`) and leaves the update to
/// whoever consumes the DATA. A window is topped back up to its target once it has fallen to half of it, so a
/// busy stream costs one WINDOW_UPDATE per half window, not one per frame. Bytes a stream holds because its
/// consumer paused reading (`bufferedFrameReceived`) do not reopen the window until they are handed on: that is
/// the backpressure an HTTP/2 client feels from a slow upstream.
struct HTTP2InboundWindow {
    private var targetWindowSize: Int32
    /// The window size last reported; nil until the first report.
    private var lastWindowSize: Int?
    /// Flow-controlled bytes received but not yet handed to the consumer.
    private var bufferedBytes = 0
    /// The stream is closed: no more updates.
    var closed = false

    init(targetSize: Int) {
        self.targetWindowSize = Int32(clamping: min(max(targetSize, 0), Int(Int32.max)))
    }

    /// The window is now `newSize` (DATA arrived, or an update was sent).
    mutating func newWindowSize(_ newSize: Int) -> Int? {
        self.lastWindowSize = newSize
        // The size assumes every received byte was consumed; those still held are not.
        return self.increment(windowSize: newSize + self.bufferedBytes)
    }

    /// SETTINGS_INITIAL_WINDOW_SIZE changed by `delta` (our SETTINGS were acknowledged).
    mutating func initialWindowSizeChanged(delta: Int) -> Int? {
        self.targetWindowSize = Int32(clamping: Int(self.targetWindowSize) + delta)
        guard let last = self.lastWindowSize else { return nil }
        return self.newWindowSize(last + delta)
    }

    mutating func bufferedFrameReceived(size: Int) {
        self.bufferedBytes += size
    }

    mutating func bufferedFrameEmitted(size: Int) -> Int? {
        self.bufferedBytes -= size
        assert(self.bufferedBytes >= 0)
        guard let last = self.lastWindowSize else { return nil }
        return self.increment(windowSize: last + self.bufferedBytes)
    }

    private func increment(windowSize: Int) -> Int? {
        if self.closed { return nil }
        let target = Int(self.targetWindowSize)
        if windowSize >= target {
            return nil
        } else if windowSize >= 0 {
            // Only once the window is at most half its target: one update per half window.
            let increment = target - windowSize
            return increment >= windowSize ? increment : nil
        } else {
            // A negative window (the initial size shrank): close the whole gap, within an Int32.
            return min(-windowSize + target, Int(Int32.max))
        }
    }
}
