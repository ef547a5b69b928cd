//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import PorticoCore

/// The streams of one downstream HTTP/2 connection, on the connection's own channel: each stream is an entry in a
/// table and a `ProxyHandler`, not a child channel with a pipeline (issue 8 §4: a child channel, its pipeline,
/// contexts, promises and buffers were about half of the 32 allocations an HTTP/2 stream cost).
///
/// Runs on the connection's EventLoop, behind `NIOHTTP2Handler` (created without a stream multiplexer, so every
/// stream's frames and events come down the pipeline here) and its connection manager. NIOHTTP2 still does all
/// the protocol work and every defence: frame and HPACK parsing, the stream state machine, header validation,
/// `content-length` checks, flow-control accounting and the rapid-reset, CONTINUATION, control-frame and HPACK
/// limits. What a multiplexer did, this table does:
/// - **Mapping.** A stream's frames become the HTTP/1-style parts `ProxyHandler` reads and its response parts
///   become frames (`HTTP2StreamMapping`, RFC 9113 §8.3). An RFC 8441 extended CONNECT for WebSocket is handed on as
///   an HTTP/1.1 upgrade, its early DATA held until the upstream says 101, then relayed (`HTTP2TunnelHandler`).
/// - **Inbound flow control.** NIOHTTP2 reports windows but sends no WINDOW_UPDATE without a multiplexer: the table
///   tops up the connection's window as DATA arrives and each stream's as its consumer takes it
///   (`HTTP2InboundWindow`). A consumer that pauses (its upstream is not writable) gets nothing more: its DATA waits
///   in the entry and its window stays shut, which is the backpressure the client feels.
/// - **Outbound writability.** A stream is writable while its DATA not yet sent (NIOHTTP2 holds DATA beyond the
///   peer's windows) stays under the stream configuration's watermarks, counted down as NIOHTTP2 writes frames
///   (`NIOHTTP2FrameDelegate`), and the connection is writable.
/// - **Lifecycle.** An entry lives from its first HEADERS until NIOHTTP2 says the stream closed (`StreamClosedEvent`:
///   both ends sent END_STREAM, or a reset either way) or the connection goes; its consumer is told then.
///   `reset` sends RST_STREAM for a stream its handler abandons. A stream error (NIOHTTP2 resets the stream and
///   fires the error) ends that stream only; connection errors go on to `HTTP2ConnectionErrorHandler`.
final class HTTP2StreamTable: ChannelDuplexHandler, NIOHTTP2FrameDelegate {
    typealias InboundIn = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    /// What reads a stream: the proxy, or (after a WebSocket upgrade) the tunnel to the upstream.
    fileprivate enum Consumer {
        case proxy(ProxyHandler)
        case tunnel(HTTP2TunnelHandler)
    }

    private enum Tunnel {
        case none
        /// An extended CONNECT went to the proxy as an upgrade; DATA waits in `pending` for the upstream's 101.
        case awaiting
        case open
    }

    /// A class, not a struct in the dictionary: mutating a struct value in place goes through the dictionary's
    /// `_modify` accessor, whose coroutine frame (this entry is large) was a heap allocation per mutation.
    private final class Entry {
        var consumer: Consumer
        var receivedHead = false
        var tunnel = Tunnel.none
        /// The consumer withheld its read: parts wait in `pending` and the stream's window stays shut.
        var paused = false
        var pending: [HTTPServerRequestPart] = []
        /// Flow-controlled bytes in `pending`.
        var pendingBytes = 0
        var window: HTTP2InboundWindow
        /// DATA bytes written and not yet sent by NIOHTTP2.
        var outboundBytes = 0
        var writable = true
        /// Got parts in the current read batch (in `batch`).
        var inBatch = false
        /// END_STREAM was written.
        var ended = false
        /// The stream's last DATA, written at the next write or flush: an END_STREAM right behind it goes in the
        /// same frame (a small response is HEADERS and one DATA frame, not a third, empty one).
        var held: (buffer: ByteBuffer, promise: EventLoopPromise<Void>?)?
        let id: HTTP2StreamID

        init(id: HTTP2StreamID, consumer: Consumer, window: HTTP2InboundWindow) {
            self.id = id
            self.consumer = consumer
            self.window = window
        }
    }

    private let worker: WorkerState
    private let listener: ListenerSettings
    private let peer: DownstreamPeer
    private let streamWindow: Int
    private let highWatermark: Int
    private let lowWatermark: Int

    private var context: ChannelHandlerContext!
    private var streams: [HTTP2StreamID: Entry] = [:]
    private var connectionWindow: HTTP2InboundWindow
    /// Streams that got parts in the current read batch, and a spare array swapped with it (both keep their
    /// capacity: no allocation per batch).
    private var batch: [HTTP2StreamID] = []
    private var spareBatch: [HTTP2StreamID] = []
    /// Entries holding their last DATA until the next flush, and a spare array swapped with it.
    private var holding: [Entry] = []
    private var spareHolding: [Entry] = []
    /// Streams that became writable while frames were being written, told once the write is over.
    private var becameWritable: [HTTP2StreamID] = []
    private var notifying = false
    /// A frame is being written by this table (so a RST_STREAM seen by the frame delegate is ours).
    private var writing = false
    /// The connection is being flushed by this table.
    private var flushing = false
    /// WINDOW_UPDATEs due while NIOHTTP2 was inside a write or flush (`writeWindowUpdate`).
    private var deferredWindowUpdates: [(HTTP2StreamID, Int)] = []
    /// NIOHTTP2 reset this stream itself: the error it fires next is that stream's, not the connection's.
    private var streamInError: HTTP2StreamID?
    /// Streams this table reset whose close NIOHTTP2 has not reported yet (the RST_STREAM may wait in its buffer
    /// while the connection is not writable): their frames are dropped, and their RST_STREAM is not an error's.
    private var resetting: Set<HTTP2StreamID> = []

    init(worker: WorkerState, listener: ListenerSettings, peer: DownstreamPeer,
         connection: NIOHTTP2Handler.ConnectionConfiguration, stream: NIOHTTP2Handler.StreamConfiguration) {
        self.worker = worker
        self.listener = listener
        self.peer = peer
        self.streamWindow = stream.targetWindowSize
        self.highWatermark = stream.outboundBufferSizeHighWatermark
        self.lowWatermark = stream.outboundBufferSizeLowWatermark
        self.connectionWindow = HTTP2InboundWindow(targetSize: connection.targetWindowSize)
    }

    var eventLoop: any EventLoop { self.context.eventLoop }
    var channel: any Channel { self.context.channel }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    // MARK: Inbound frames

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = self.unwrapInboundIn(data)
        let id = frame.streamID
        self.streamInError = nil
        switch frame.payload {
        case .headers(let headers):
            if self.streams[id] == nil {
                guard id != .rootStream, self.resetting.isEmpty || !self.resetting.contains(id) else { return }
                let handler = ProxyHandler(worker: self.worker, listener: self.listener, stream: (self, id), peer: self.peer)
                self.streams[id] = Entry(id: id, consumer: .proxy(handler), window: HTTP2InboundWindow(targetSize: self.streamWindow))
                handler.downstreamOpened()
            }
            // The client's side is done: no WINDOW_UPDATE for it any more (NIOHTTP2 refuses one on a stream half
            // closed by the peer, RFC 9113 §5.1, as a stream error).
            if headers.endStream { self.streams[id]!.window.closed = true }
            self.receiveHeaders(id, headers)
        case .data(let data):
            guard let entry = self.streams[id], case .byteBuffer(let buffer) = data.data else { return }
            if data.endStream { entry.window.closed = true }
            let size = buffer.readableBytes + (data.paddingBytes.map { $0 + 1 } ?? 0)
            if data.endStream && buffer.readableBytes == 0 {
                self.deliver(id, .end(nil), flowControlled: size)
                return
            }
            self.deliver(id, .body(buffer), flowControlled: size)
            if data.endStream { self.deliver(id, .end(nil), flowControlled: 0) }
        default:
            // RST_STREAM ends a stream through `StreamClosedEvent`; WINDOW_UPDATE reaches the writers through the
            // frame delegate; the connection's own frames are NIOHTTP2's.
            break
        }
        self.notifyWritable()
    }

    private func receiveHeaders(_ id: HTTP2StreamID, _ headers: HTTP2Frame.FramePayload.Headers) {
        let entry = self.streams[id]!
        guard !entry.receivedHead else {
            // Trailers (RFC 9113 §8.1); a tunnel has none.
            if entry.tunnel == .none {
                self.deliver(id, .end(HTTP2StreamMapping.regularFields(headers.headers)), flowControlled: 0)
            }
            return
        }
        entry.receivedHead = true
        var block = headers.headers
        var endStream = headers.endStream
        if HTTP2StreamMapping.hasProtocol(block), let upgrade = HTTP2StreamMapping.webSocketRequest(from: block) {
            // RFC 8441: the request goes on as an HTTP/1.1 WebSocket upgrade, ended (the tunnel's bytes are not its
            // body); what the client sends before the upstream's 101 waits.
            block = upgrade
            entry.tunnel = .awaiting
            if endStream { entry.pending.append(.end(nil)) }
            endStream = true
        }
        switch HTTP2StreamMapping.requestHead(block, endStream: endStream) {
        case .success(let head):
            self.deliver(id, .head(head), flowControlled: 0, force: true)
            if endStream { self.deliver(id, .end(nil), flowControlled: 0, force: true) }
        case .failure(let missing):
            // Without `:method` (NIOHTTP2's validation lets no request through without it).
            entry.consumer.failed(missing)
        }
    }

    /// Hands a part to the stream's consumer, or holds it while the consumer is paused (or a tunnel is not open
    /// yet). `force`: the request head of an extended CONNECT, which is the proxy's even while DATA waits.
    private func deliver(_ id: HTTP2StreamID, _ part: HTTPServerRequestPart, flowControlled size: Int, force: Bool = false) {
        guard let entry = self.streams[id] else { return }
        if !force && (entry.paused || entry.tunnel == .awaiting) {
            if entry.tunnel == .awaiting && entry.pendingBytes + size > Self.maxHeldTunnelBytes {
                // The client sends more before the upgrade is answered than a tunnel may hold.
                return self.reset(id, .enhanceYourCalm)
            }
            entry.pending.append(part)
            entry.pendingBytes += size
            entry.window.bufferedFrameReceived(size: size)
            return
        }
        if !entry.inBatch {
            entry.inBatch = true
            self.batch.append(id)
        }
        entry.consumer.received(part)
    }

    /// Client bytes held before the upstream accepted a WebSocket (RFC 8441 lets the client send after its
    /// HEADERS). Beyond this the stream is reset.
    static let maxHeldTunnelBytes = 64 * 1024

    func channelReadComplete(context: ChannelHandlerContext) {
        self.streamInError = nil
        swap(&self.batch, &self.spareBatch)
        for id in self.spareBatch {
            guard let entry = self.streams[id] else { continue }
            entry.inBatch = false
            entry.consumer.readComplete()
            self.readSatisfied(id)
        }
        self.spareBatch.removeAll(keepingCapacity: true)
        self.notifyWritable()
        context.fireChannelReadComplete()
    }

    /// A read batch was handed to the stream's consumer: like a channel with auto-read, it reads on unless the
    /// consumer withholds its `read()` (backpressure).
    private func readSatisfied(_ id: HTTP2StreamID) {
        guard let entry = self.streams[id] else { return }
        entry.paused = true
        entry.consumer.wantsRead()
    }

    /// The consumer's `read()`: parts held while it was paused are handed on (their window reopens), and later
    /// ones go straight through.
    func read(_ id: HTTP2StreamID) {
        guard let entry = self.streams[id], entry.paused, entry.tunnel != .awaiting else { return }
        entry.paused = false
        guard !entry.pending.isEmpty else { return }
        var parts: [HTTPServerRequestPart] = []
        swap(&parts, &entry.pending)
        let bytes = entry.pendingBytes
        entry.pendingBytes = 0
        for part in parts {
            // The consumer may end the stream (or become a tunnel's) as it reads.
            guard let current = self.streams[id] else { return }
            current.consumer.received(part)
        }
        guard let after = self.streams[id] else { return }
        if let increment = after.window.bufferedFrameEmitted(size: bytes) {
            self.writeWindowUpdate(id, increment)
        }
        after.consumer.readComplete()
        self.readSatisfied(id)
        self.notifyWritable()
    }

    // MARK: Events

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let closed as StreamClosedEvent:
            if let entry = self.streams.removeValue(forKey: closed.streamID) {
                self.dropHeld(entry)
                entry.consumer.closed()
            } else if !self.resetting.isEmpty {
                self.resetting.remove(closed.streamID)
            }
        case let window as NIOHTTP2WindowUpdatedEvent:
            guard let size = window.inboundWindowSize else { break }
            if window.streamID == .rootStream {
                if let increment = self.connectionWindow.newWindowSize(size) { self.writeWindowUpdate(.rootStream, increment) }
            } else if let entry = self.streams[window.streamID], let increment = entry.window.newWindowSize(size) {
                self.writeWindowUpdate(window.streamID, increment)
            }
        case let change as NIOHTTP2BulkStreamWindowChangeEvent:
            // Our SETTINGS_INITIAL_WINDOW_SIZE took effect: the open streams' windows moved by `delta`.
            for id in Array(self.streams.keys) {
                if let increment = self.streams[id]?.window.initialWindowSizeChanged(delta: change.delta) {
                    self.writeWindowUpdate(id, increment)
                }
            }
        default:
            break
        }
        self.notifyWritable()
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let id = self.streamInError {
            // NIOHTTP2 reset the stream for this error (RFC 9113 §5.4.2): the rest of the connection goes on.
            self.streamInError = nil
            return self.fail(id, error, reset: nil)
        }
        if let streamError = error as? NIOHTTP2Errors.StreamError {
            // A frame this table wrote broke the stream's rules (a response body longer than its content-length):
            // NIOHTTP2 refused it and reset nothing. The stream ends; the connection goes on.
            return self.fail(streamError.streamID, streamError.baseError, reset: .internalError)
        }
        context.fireErrorCaught(error)
    }

    /// Ends a stream over an error: its entry goes first (what the consumer does about the error, such as
    /// closing, finds nothing more to reset), the stream is reset unless NIOHTTP2 did, and the consumer hears the
    /// error, then the close. The stream's `StreamClosedEvent` comes when its RST_STREAM is out.
    private func fail(_ id: HTTP2StreamID, _ error: any Error, reset code: HTTP2ErrorCode?) {
        guard let entry = self.streams.removeValue(forKey: id) else { return }
        self.dropHeld(entry)
        self.resetting.insert(id)
        if let code {
            self.writeFrame(HTTP2Frame(streamID: id, payload: .rstStream(code)), promise: nil)
            self.flushConnection()
        }
        entry.consumer.failed(error)
        entry.consumer.closed()
    }

    func channelInactive(context: ChannelHandlerContext) {
        let streams = self.streams
        self.streams = [:]
        for entry in streams.values {
            self.dropHeld(entry)
            entry.consumer.closed()
        }
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            for (id, entry) in self.streams where entry.writable { self.becameWritable.append(id) }
            self.notifyWritable()
        }
        context.fireChannelWritabilityChanged()
    }

    // MARK: Outbound

    func isWritable(_ id: HTTP2StreamID) -> Bool {
        (self.streams[id]?.writable ?? false) && self.context.channel.isWritable
    }

    func bufferedBytes(_ id: HTTP2StreamID) -> Int {
        self.streams[id]?.outboundBytes ?? 0
    }

    /// A response part of stream `id`, as a frame. A stream that is gone fails the promise.
    func write(_ id: HTTP2StreamID, _ part: HTTPServerResponsePart, promise: EventLoopPromise<Void>?) {
        guard let entry = self.streams[id], !entry.ended else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        var payload: HTTP2Frame.FramePayload
        var promise = promise
        switch part {
        case .head(let head):
            self.releaseHeld(entry)
            payload = .headers(.init(headers: HTTP2StreamMapping.block(status: head.status.code, head.headers)))
        case .body(let body):
            entry.outboundBytes += body.readableBytes
            self.releaseHeld(entry)
            if case .byteBuffer(let buffer) = body {
                // Held until the next write or flush (NIOHTTP2 sends no DATA before a flush anyway).
                entry.held = (buffer, promise)
                self.holding.append(entry)
                if entry.writable && entry.outboundBytes > self.highWatermark { entry.writable = false }
                return
            }
            payload = .data(.init(data: body))
        case .end(let trailers):
            entry.ended = true
            if let trailers {
                self.releaseHeld(entry)
                payload = .headers(.init(headers: HTTP2StreamMapping.block(status: nil, trailers), endStream: true))
            } else if let held = entry.held, held.promise == nil || promise == nil {
                // END_STREAM on the stream's last DATA.
                entry.held = nil
                payload = .data(.init(data: .byteBuffer(held.buffer), endStream: true))
                promise = promise ?? held.promise
            } else {
                self.releaseHeld(entry)
                payload = .data(.init(data: .byteBuffer(Self.empty), endStream: true))
            }
        }
        self.writeFrame(HTTP2Frame(streamID: id, payload: payload), promise: promise)
        if entry.writable && entry.outboundBytes > self.highWatermark {
            entry.writable = false
        }
        self.notifyWritable()
    }

    /// Writes the DATA the entry holds, if any.
    private func releaseHeld(_ entry: Entry) {
        guard let held = entry.held else { return }
        entry.held = nil
        self.writeFrame(HTTP2Frame(streamID: entry.id, payload: .data(.init(data: .byteBuffer(held.buffer)))), promise: held.promise)
    }

    /// A stream that ends (reset, closed) drops the DATA it holds.
    private func dropHeld(_ entry: Entry) {
        guard let held = entry.held else { return }
        entry.held = nil
        held.promise?.fail(ChannelError.ioOnClosedChannel)
    }

    /// The payload of an END_STREAM without trailers: shared (`ByteBuffer()` allocates storage each time).
    private static let empty = ByteBuffer()

    func flush() {
        if !self.holding.isEmpty {
            swap(&self.holding, &self.spareHolding)
            for entry in self.spareHolding where self.streams[entry.id] === entry {
                self.releaseHeld(entry)
            }
            self.spareHolding.removeAll(keepingCapacity: true)
        }
        self.flushConnection()
        self.notifyWritable()
    }

    /// Sends RST_STREAM for a stream still in the table; NIOHTTP2 closes it, and the consumer hears `closed`.
    func reset(_ id: HTTP2StreamID, _ code: HTTP2ErrorCode) {
        guard let entry = self.streams[id] else { return }
        self.dropHeld(entry)
        self.resetting.insert(id)
        self.writeFrame(HTTP2Frame(streamID: id, payload: .rstStream(code)), promise: nil)
        self.flushConnection()
        // NIOHTTP2 reports the close as it writes the frame (`resetting` then forgets it); while the frame waits
        // in its buffer, the entry goes and the stream's frames are dropped.
        if let entry = self.streams.removeValue(forKey: id) {
            self.dropHeld(entry)
            entry.consumer.closed()
        }
    }

    /// The upstream side of a tunnel ended: END_STREAM if not sent yet, and the stream is reset if the client's
    /// side is still open (nothing more can be answered).
    func endTunnel(_ id: HTTP2StreamID) {
        guard let entry = self.streams[id] else { return }
        guard !entry.ended else { return self.reset(id, .noError) }
        // The reset waits until END_STREAM is out: NIOHTTP2 drops DATA still waiting for a window or a flush when
        // its stream is reset, and the upstream's last bytes (a WebSocket close) would be lost.
        let written = self.context.eventLoop.makePromise(of: Void.self)
        self.write(id, .end(nil), promise: written)
        self.flush()
        written.futureResult.assumeIsolated().whenComplete { [self] _ in self.reset(id, .noError) }
    }

    /// After the upstream's 101: the stream's bytes go to and come from `upstream`, whose pipeline gets a
    /// `HTTP2TunnelHandler`. What the client sent before waits for `releaseTunnel`.
    func startTunnel(_ id: HTTP2StreamID, upstream: any Channel) throws {
        guard let entry = self.streams[id], entry.tunnel == .awaiting else { throw ChannelError.ioOnClosedChannel }
        let tunnel = HTTP2TunnelHandler(table: self, streamID: id)
        try upstream.pipeline.syncOperations.addHandler(tunnel)
        entry.consumer = .tunnel(tunnel)
        entry.tunnel = .open
        entry.paused = true
    }

    /// Hands what the client sent before the tunnel to it, in the next EventLoop turn: this runs inside the
    /// upstream decoder's read, and the decoder, whose removal the caller has asked for already, leaves the
    /// upstream pipeline only after that read (until then it would take the bytes for HTTP messages).
    func releaseTunnel(_ id: HTTP2StreamID) {
        let bound = NIOLoopBound(self, eventLoop: self.context.eventLoop)
        self.context.eventLoop.execute { bound.value.read(id) }
    }

    /// Sends a WINDOW_UPDATE, or queues it while NIOHTTP2 is inside a write or flush of this table's (the window
    /// events come from there too): a frame written and flushed from inside NIOHTTP2's flush is not flushed (it
    /// guards against recursion), and a connection closed right after, as a graceful shutdown does once its last
    /// stream ends, then lost the response the outer flush had not sent yet.
    private func writeWindowUpdate(_ id: HTTP2StreamID, _ increment: Int) {
        if self.writing || self.flushing {
            self.deferredWindowUpdates.append((id, increment))
            return
        }
        self.writeFrame(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: increment)), promise: nil)
        self.context.flush()
    }

    private func writeDeferredWindowUpdates() {
        guard !self.deferredWindowUpdates.isEmpty, !self.writing, !self.flushing else { return }
        let updates = self.deferredWindowUpdates
        self.deferredWindowUpdates.removeAll(keepingCapacity: true)
        for (id, increment) in updates where id == .rootStream || self.streams[id].map({ !$0.window.closed }) == true {
            self.writeFrame(HTTP2Frame(streamID: id, payload: .windowUpdate(windowSizeIncrement: increment)), promise: nil)
        }
        self.flushConnection()
    }

    private func writeFrame(_ frame: HTTP2Frame, promise: EventLoopPromise<Void>?) {
        let wasWriting = self.writing
        self.writing = true
        self.context.write(self.wrapOutboundOut(frame), promise: promise)
        self.writing = wasWriting
        self.writeDeferredWindowUpdates()
    }

    private func flushConnection() {
        let wasFlushing = self.flushing
        self.flushing = true
        self.context.flush()
        self.flushing = wasFlushing
        self.writeDeferredWindowUpdates()
    }

    /// Called by NIOHTTP2 as it writes each frame (any stream's, possibly long after it was handed over).
    func wroteFrame(_ frame: HTTP2Frame) {
        switch frame.payload {
        case .data(let data):
            let id = frame.streamID
            guard let entry = self.streams[id] else { return }
            entry.outboundBytes -= data.data.readableBytes
            if !entry.writable && entry.outboundBytes <= self.lowWatermark {
                entry.writable = true
                self.becameWritable.append(id)
            }
        case .rstStream where !self.writing && (self.resetting.isEmpty || !self.resetting.contains(frame.streamID)):
            // NIOHTTP2's own reset for a stream error, which it fires right after.
            self.streamInError = frame.streamID
        case .goAway:
            // A connection error's GOAWAY: the error that follows is the connection's.
            self.streamInError = nil
        default:
            break
        }
    }

    /// Tells the streams that became writable, once the write or read that freed them is over.
    private func notifyWritable() {
        guard !self.notifying, !self.becameWritable.isEmpty else { return }
        self.notifying = true
        while let id = self.becameWritable.popLast() {
            self.streams[id]?.consumer.writabilityChanged()
        }
        self.notifying = false
    }
}

extension HTTP2StreamTable.Consumer {
    func received(_ part: HTTPServerRequestPart) {
        switch self {
        case .proxy(let handler): handler.received(part)
        case .tunnel(let tunnel): tunnel.received(part)
        }
    }

    func readComplete() {
        switch self {
        case .proxy(let handler): handler.readBatchComplete()
        case .tunnel(let tunnel): tunnel.readComplete()
        }
    }

    func wantsRead() {
        switch self {
        case .proxy(let handler): handler.downstreamWantsRead()
        case .tunnel(let tunnel): tunnel.wantsRead()
        }
    }

    func writabilityChanged() {
        switch self {
        case .proxy(let handler): handler.downstreamWritabilityChanged()
        case .tunnel(let tunnel): tunnel.downstreamWritable()
        }
    }

    func closed() {
        switch self {
        case .proxy(let handler): handler.downstreamClosed()
        case .tunnel(let tunnel): tunnel.downstreamClosed()
        }
    }

    func failed(_ error: any Error) {
        switch self {
        case .proxy(let handler): handler.downstreamFailed(error)
        case .tunnel(let tunnel): tunnel.downstreamClosed()
        }
    }
}
