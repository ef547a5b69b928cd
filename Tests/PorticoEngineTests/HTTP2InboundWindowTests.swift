//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Testing

@testable import PorticoEngine

/// When the stream table sends WINDOW_UPDATE (RFC 9113 §6.9), as a value: once per half window, never for bytes a
/// paused consumer still holds, never once the stream is closed.
@Suite struct HTTP2InboundWindowTests {
    @Test func topsUpOnceTheWindowIsHalfSpent() {
        var w = HTTP2InboundWindow(targetSize: 1000)
        #expect(w.newWindowSize(1000) == nil)
        #expect(w.newWindowSize(600) == nil)  // more than half left
        #expect(w.newWindowSize(500) == 500)  // half: back to the target
        #expect(w.newWindowSize(0) == 1000)
    }

    @Test func heldBytesReopenTheWindowOnlyWhenHandedOn() {
        var w = HTTP2InboundWindow(targetSize: 1000)
        // 700 bytes arrived while the consumer was paused: the window is 300, but nothing was consumed.
        w.bufferedFrameReceived(size: 700)
        #expect(w.newWindowSize(300) == nil)
        // Handed on: the window may open again.
        #expect(w.bufferedFrameEmitted(size: 700) == 700)
    }

    @Test func aClosedWindowSendsNothing() {
        var w = HTTP2InboundWindow(targetSize: 1000)
        w.closed = true
        #expect(w.newWindowSize(0) == nil)
        w.bufferedFrameReceived(size: 10)
        #expect(w.bufferedFrameEmitted(size: 10) == nil)
    }

    @Test func aSettingsChangeMovesTheTargetAndTheWindow() {
        var w = HTTP2InboundWindow(targetSize: 65_535)
        #expect(w.initialWindowSizeChanged(delta: 1000) == nil)  // no size reported yet
        #expect(w.newWindowSize(40_000) == nil)
        // Our SETTINGS raised the initial window by 983,041 (to 1 MiB): the target and the window move together.
        #expect(w.initialWindowSizeChanged(delta: 983_041) == nil)
        #expect(w.newWindowSize(100) != nil)
    }

    @Test func aNegativeWindowIsClosedWithinAnInt32() {
        var w = HTTP2InboundWindow(targetSize: 1000)
        #expect(w.newWindowSize(-500) == 1500)
        var big = HTTP2InboundWindow(targetSize: Int(Int32.max))
        #expect(big.newWindowSize(-10) == Int(Int32.max))
    }
}
