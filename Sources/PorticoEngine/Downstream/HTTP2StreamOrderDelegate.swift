//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP2

/// Puts a stream's `streamCreated` before its `streamClosed` for the delegate it wraps (the connection manager's,
/// which keeps the open streams for its idle timer and graceful shutdown).
///
/// NIOHTTP2's inline multiplexer activates a new stream's channel (`networkActivationReceived`, which flushes what
/// the stream wrote while its first frames were read) before it tells the delegate the stream was created; a
/// stream that closes in that flush — seen with a stream closed by an error in its first HEADERS, while the
/// HTTP/2 codec was being written — reaches the delegate as closed first. NIO's connection manager then asserts
/// (debug builds: "Can't close stream 1, it wasn't open") or counts the stream open for ever (release builds: the
/// connection's idle timer never starts, and a graceful shutdown waits out its grace period). A close that comes
/// first is held back and passed on right after the creation.
///
/// Runs on the connection's EventLoop (the multiplexer calls it there); `@unchecked Sendable` because its state is
/// only touched there.
final class HTTP2StreamOrderDelegate: NIOHTTP2StreamDelegate, @unchecked Sendable {
    private let inner: any NIOHTTP2StreamDelegate
    /// Streams whose creation was passed on and whose close was not yet.
    private var open: Set<HTTP2StreamID> = []
    /// Streams closed before their creation was passed on.
    private var closedEarly: Set<HTTP2StreamID> = []

    init(_ inner: any NIOHTTP2StreamDelegate) {
        self.inner = inner
    }

    func streamCreated(_ id: HTTP2StreamID, channel: any Channel) {
        self.inner.streamCreated(id, channel: channel)
        if self.closedEarly.remove(id) != nil {
            self.inner.streamClosed(id, channel: channel)
        } else {
            self.open.insert(id)
        }
    }

    func streamClosed(_ id: HTTP2StreamID, channel: any Channel) {
        if self.open.remove(id) != nil {
            self.inner.streamClosed(id, channel: channel)
        } else {
            self.closedEarly.insert(id)
        }
    }
}
