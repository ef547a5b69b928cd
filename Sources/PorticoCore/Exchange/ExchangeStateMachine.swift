//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore

/// The life of the exchanges on one downstream connection (HTTP/1.1) or stream (HTTP/2), and every deadline in
/// it: events in, actions out, no I/O. `ProxyHandler` feeds it what happened (a request head, a body part, the
/// upstream's head, a tick of the worker's clock) and performs what it answers (forward, discard, answer 408,
/// close, linger). It is the one place that decides when a request is complete, whether the connection outlives
/// the exchange, and which clock runs; the handler keeps the bytes and the upstream connection.
///
/// Like SwiftNIO's own state machines it is a value type with its state in one enum, so impossible combinations
/// (a response that ended but never started, a body deadline after the body ended, a lingering connection with a
/// request in flight) cannot be represented. An event that cannot happen in the current state is an
/// `assertionFailure` (so the tests catch it) and otherwise ignored.
///
/// Runs on the connection's EventLoop (it is owned by its handler); never blocks.
///
/// Deadlines (nginx `client_header_timeout`, `client_body_timeout`, `keepalive_timeout`, `send_timeout`,
/// `lingering_timeout`; HAProxy `timeout http-request`, `timeout http-keep-alive`, `timeout server`):
/// - **idle**: between requests (keep-alive), from the end of the last exchange (or the connection's start);
/// - **request head**: from the first byte of a head that is not complete yet (slowloris);
/// - **request body**: silence between body bytes, and a minimum rate measured over the client's own time (the
///   clock stops while Portico holds reads: backpressure from the upstream or a filter is not the client's fault);
/// - **response head**: from the end of the request body (or from when the upstream stopped taking it), so a slow
///   upload is never an upstream timeout and never counts against the host's health; then **read**, between the
///   upstream's body bytes;
/// - **send**: a streamed answer whose client stopped reading;
/// - **drain**: a response that ends the connection has this long to be flushed, then the **linger**: our side is
///   shut down and the client's bytes are read and dropped for at most this long, so the client reads the
///   response rather than a reset (nginx's lingering close), and a client that never reads cannot hold a socket.
public struct ExchangeStateMachine: Sendable {
    public struct Timeouts: Sendable {
        public var requestHead: TimeAmount
        public var requestBody: TimeAmount
        public var idle: TimeAmount
        /// Bytes per second a request body must average (0: no minimum), after `minBodyRateGrace` of client time.
        public var minBodyRate: Int
        public var minBodyRateGrace: TimeAmount = .seconds(5)
        /// Time for the last response to reach a client before the connection is closed anyway (nginx
        /// `send_timeout` is 60 s between writes; the last response has at most the outbound watermark left).
        public var drain: TimeAmount = .seconds(30)
        public var linger: TimeAmount = .seconds(5)
        /// A streamed answer's client must read on within this.
        public var send: TimeAmount = .seconds(30)

        public init(requestHead: TimeAmount, requestBody: TimeAmount, idle: TimeAmount, minBodyRate: Int) {
            self.requestHead = requestHead
            self.requestBody = requestBody
            self.idle = idle
            self.minBodyRate = minBodyRate
        }
    }

    /// Where the current exchange is, seen from its response.
    public enum Stage: Sendable, Hashable {
        /// Validating, routing, running the request filters (which may suspend or wait for the body).
        case routing
        /// Waiting for an upstream connection: connecting, queued for one, or waiting out a retry's backoff.
        case connecting
        /// The request is going upstream; no response yet.
        case forwarding
        /// The upstream's response is going downstream.
        case relaying
        /// Portico's own answer is going downstream (an error, a filter's answer, a cached response).
        case answering
        /// The response is complete; the request may still be arriving (its body is read and dropped).
        case answered

        public var responseStarted: Bool { self == .relaying || self == .answering || self == .answered }
    }

    struct Exchange: Sendable {
        var stage: Stage = .routing
        var requestEnded = false
        /// Until the request ends (or its deadline fires).
        var body: BodyClock?
        /// Since the upstream connection was attached.
        var upstream: UpstreamClock?
        /// A streamed answer waits for its client to read.
        var sendDeadline: NIODeadline?
        /// The body limit (0: none): the listener's, lowered by the route's.
        var maxBodyBytes: Int
    }

    struct BodyClock: Sendable {
        var deadline: NIODeadline
        /// Body bytes came since the last tick.
        var activity = false
        var bytes = 0
        /// The client's own time sending the body so far, and when it was last counted.
        var clientNanos: Int64 = 0
        var lastCheck: NIODeadline?
    }

    struct UpstreamClock: Sendable {
        var responseHeadTimeout: TimeAmount
        var readTimeout: TimeAmount
        /// nil while the request body is still going up (the response is not due yet).
        var deadline: NIODeadline?
        /// The upstream sent something since the last tick.
        var activity = false
    }

    enum State: Sendable {
        /// Waiting for a request (keep-alive), until the idle deadline.
        case idle(NIODeadline)
        /// Bytes of a request head came; the whole head is due by the deadline.
        case receivingHead(NIODeadline)
        /// One request in flight (later pipelined ones wait in the handler, unread past a bound).
        case active(Exchange)
        /// The connection's last response is being flushed.
        case draining(NIODeadline, requestUnfinished: Bool)
        /// Our side is shut down; the client's bytes are read and dropped until it closes or the deadline.
        case lingering(NIODeadline)
        /// The connection became a byte tunnel (a protocol switch): no HTTP deadlines any more.
        case tunnel
        case closed
    }

    public let proto: ExchangeProtocol
    public var timeouts: Timeouts
    private var state: State
    /// The connection ends after the current exchange: the client asked, a limit, shutdown, an upgrade, an error.
    public private(set) var closesAfterExchange = false
    /// The client said its last request was the last (`Connection: close`, HTTP/1.0 without keep-alive).
    private var clientAskedToClose = false
    /// The client half-closed its side.
    private var inputEnded = false
    /// The upstream sent something since the last tick: a plain flag, set for every part of its response, folded
    /// into the exchange's `UpstreamClock` by the tick (so a body chunk costs a store, not a change of the state).
    private var upstreamActive = false

    public init(proto: ExchangeProtocol, timeouts: Timeouts, now: NIODeadline) {
        self.proto = proto
        self.timeouts = timeouts
        self.state = .idle(now + timeouts.idle)
    }

    /// The connection (or stream) is open: the idle clock starts now.
    public mutating func connectionOpened(now: NIODeadline) {
        self.state = .idle(now + self.timeouts.idle)
    }

    // MARK: What the handler asks

    /// The current exchange's stage (nil between exchanges and once the connection is ending).
    public var stage: Stage? {
        if case .active(let ex) = self.state { return ex.stage }
        return nil
    }

    /// Whether the current exchange's request has been read to its end. Once the machine has left the exchange
    /// (the connection is ending), whether it was.
    public var requestEnded: Bool {
        switch self.state {
        case .active(let ex): return ex.requestEnded
        case .draining(_, let unfinished): return !unfinished
        default: return true
        }
    }

    /// Whether the current exchange's response has begun going downstream (always, once it has been left).
    public var responseStarted: Bool { self.stage?.responseStarted ?? true }

    /// Whether the current exchange's response is complete (always, once it has been left).
    public var responseEnded: Bool {
        guard let stage = self.stage else { return true }
        return stage == .answered
    }

    /// The connection's last response is going out or has gone (draining, lingering): nothing more is read as a
    /// request, answered or timed.
    public var isEnding: Bool {
        switch self.state {
        case .draining, .lingering: return true
        default: return false
        }
    }

    /// Our side is shut down after the last response; what the client still sends is read and dropped.
    public var isLingering: Bool {
        if case .lingering = self.state { return true }
        return false
    }

    /// No request in flight and none arriving: a close now loses nothing.
    public var isIdle: Bool {
        switch self.state {
        case .idle, .receivingHead: return true
        default: return false
        }
    }

    /// Whether reads on the downstream may go on. Reads stay on whenever the bytes have somewhere bounded to go:
    /// withholding `read()` makes NIO drop and re-add the socket's epoll interest (two `epoll_ctl` per request),
    /// so it is only done for real backpressure.
    /// - `queueHasRoom`: the handler's queue of pipelined parts is under its bound;
    /// - `upstreamWritable`: the upstream connection takes more;
    /// - `holdHasRoom`: while routing, the handler may keep more body parts (a filter is not suspended, and waits
    ///   for the body or the held parts are under their bound).
    public func mayRead(
        queueHasRoom: @autoclosure () -> Bool, upstreamWritable: @autoclosure () -> Bool, holdHasRoom: @autoclosure () -> Bool
    ) -> Bool {
        switch self.state {
        case .lingering, .draining: return true  // discarded
        case .idle, .receivingHead, .tunnel, .closed: return queueHasRoom()
        case .active(let ex):
            if ex.requestEnded { return queueHasRoom() }  // pipelined requests wait, bounded
            switch ex.stage {
            case .forwarding, .relaying: return upstreamWritable()
            case .answering, .answered: return true  // the body is dropped
            case .routing, .connecting: return holdHasRoom()
            }
        }
    }

    public enum ConnectionField: Sendable, Hashable {
        case none
        case close
        case keepAlive
    }

    /// The `Connection` field a response head carries (RFC 9112 §9.3, §9.6): `close` on the connection's last
    /// response, `keep-alive` to an HTTP/1.0 client whose connection persists, none in HTTP/2.
    /// `requestHasBody`: the request declared a body. An upstream answer to a bodiless request whose end has not
    /// been read says `close` (what follows cannot be trusted to be a next request); Portico's own answers come
    /// from the head, before its end is read, and keep the connection.
    public func connectionField(http10: Bool, requestHasBody: Bool) -> ConnectionField {
        guard self.proto.hasConnectionFields else { return .none }
        if self.closesAfterExchange || (self.stage == .relaying && !self.requestEnded && !requestHasBody) { return .close }
        return http10 ? .keepAlive : .none
    }

    // MARK: Connection events

    /// Bytes arrived that did not complete a head (the end of a read batch with no request in flight).
    /// `partialHead`: unparsed bytes are waiting; the request-head clock starts (slowloris).
    public mutating func readBatchEnded(now: NIODeadline, partialHead: Bool) {
        guard case .idle = self.state, partialHead else { return }
        self.state = .receivingHead(now + self.timeouts.requestHead)
    }

    /// An HTTP/2 request is held until its framing is known (`content-length` bodies are held whole): it has the
    /// request-head timeout to complete.
    public mutating func requestHeld(now: NIODeadline) {
        self.readBatchEnded(now: now, partialHead: true)
    }

    /// The client half-closed. Returns true when the connection should close now (nothing is in flight, or the
    /// lingering close has what it waited for).
    public mutating func inputClosed() -> Bool {
        self.closesAfterExchange = true
        self.inputEnded = true
        return self.isLingering || self.isIdle
    }

    /// Graceful shutdown: finish what is in flight, take no new request. Returns true when the connection should
    /// close now.
    public mutating func quiesce() -> Bool {
        self.closesAfterExchange = true
        return self.isIdle
    }

    /// The connection will end after the current exchange (an error left the stream unusable, an upgrade, the
    /// response is delimited by the close).
    public mutating func closeAfterExchange() {
        self.closesAfterExchange = true
    }

    /// The connection closed (or the stream ended).
    public mutating func connectionClosed() {
        self.state = .closed
    }

    /// The connection became a tunnel (after a 101): HTTP is over on it.
    public mutating func tunnelStarted() {
        self.state = .tunnel
    }

    // MARK: Request events

    /// A request head arrived and is taken. `clientKeepAlive`: the client did not say this is its last (RFC 9112
    /// §9.6); `lastAllowed`: Portico will not take another on this connection (request limit, shutdown).
    public mutating func requestStarted(now: NIODeadline, clientKeepAlive: Bool, lastAllowed: Bool, maxBodyBytes: Int) {
        switch self.state {
        case .idle, .receivingHead:
            break
        default:
            assertionFailure("request head in state \(self.state)")
        }
        if !clientKeepAlive {
            self.closesAfterExchange = true
            self.clientAskedToClose = true
        } else if lastAllowed {
            self.closesAfterExchange = true
        }
        self.state = .active(Exchange(body: BodyClock(deadline: now + self.timeouts.requestBody), maxBodyBytes: maxBodyBytes))
    }

    /// The route lowered the body limit.
    public mutating func limitRequestBody(to maxBytes: Int) {
        self.modifyExchange { $0.maxBodyBytes = maxBytes }
    }

    public enum RequestAction: Sendable, Hashable {
        /// Keep the part until the upstream is ready (or a filter has decided).
        case hold
        /// Write it upstream.
        case forward
        /// The request was answered; its body is read and dropped.
        case discard
        /// Dropped, and the exchange is complete (response and request ended): log it, take the next.
        case finish
        /// Dropped, and the exchange is complete, but the HTTP/1.1 connection was to end after it (the client
        /// half-closed, shutdown began while the body was still read and dropped): log it, flush what is written,
        /// then report `lastResponseFlushed` (a close or a lingering close).
        case finishAndClose
        /// The body passed its limit before any answer: answer 413 (or reset what started) and close.
        case rejectTooLarge
        /// The body passed its limit after the answer, on a connection that was to persist: close it rather than
        /// read on for an unbounded body.
        case closeConnection
    }

    /// `bytes` of request body arrived.
    public mutating func requestBodyReceived(_ bytes: Int) -> RequestAction {
        guard case .active(var ex) = self.state, !ex.requestEnded else {
            if !self.isEnding { assertionFailure("request body in state \(self.state)") }
            return .discard
        }
        self.state = .closed  // no copy-on-write of the exchange while it is changed
        defer { self.state = .active(ex) }
        ex.body?.activity = true
        ex.body?.bytes += bytes
        if ex.maxBodyBytes > 0, (ex.body?.bytes ?? 0) > ex.maxBodyBytes {
            switch ex.stage {
            case .answering, .answered:
                // Already answered: a connection that closes after its answer keeps discarding (its lingering close
                // is bounded), and so does an HTTP/2 stream (reset once its answer is out); an HTTP/1.1 connection
                // that was to be kept is closed.
                if self.closesAfterExchange || self.proto == .http2 { return .discard }
                self.closesAfterExchange = true
                return .closeConnection
            default:
                return .rejectTooLarge
            }
        }
        return Self.disposition(ex.stage)
    }

    /// The request's end arrived (the last body part, or the head of a bodiless request).
    public mutating func requestEndReceived(now: NIODeadline) -> RequestAction {
        guard case .active(var ex) = self.state, !ex.requestEnded else {
            if !self.isEnding { assertionFailure("request end in state \(self.state)") }
            return .discard
        }
        ex.requestEnded = true
        ex.body = nil
        if ex.stage == .forwarding, let up = ex.upstream, up.deadline == nil {
            // The body is all sent: now the response head is due.
            ex.upstream!.deadline = now + up.responseHeadTimeout
        }
        if ex.stage == .answered {
            if self.closesAfterExchange && self.proto == .http1 {
                self.state = .draining(now + self.timeouts.drain, requestUnfinished: false)
                return .finishAndClose
            }
            self.finishExchange(now: now)
            return .finish
        }
        self.state = .active(ex)
        return Self.disposition(ex.stage)
    }

    private static func disposition(_ stage: Stage) -> RequestAction {
        switch stage {
        case .routing, .connecting: return .hold
        case .forwarding, .relaying: return .forward
        case .answering, .answered: return .discard
        }
    }

    /// Portico held reads and takes them up again: while the body goes up again, no response is due.
    public mutating func readsResumed() {
        self.modifyExchange { ex in
            if ex.stage == .forwarding && !ex.requestEnded { ex.upstream?.deadline = nil }
        }
    }

    // MARK: Upstream events

    /// The exchange waits for an upstream connection (a connect, a place in the queue, a retry's backoff).
    public mutating func upstreamConnecting() {
        self.modifyExchange { ex in
            assert(ex.stage == .routing || ex.stage == .connecting, "connecting in stage \(ex.stage)")
            ex.stage = .connecting
        }
    }

    /// A retry starts over: a new host is picked.
    public mutating func retryStarted() {
        self.modifyExchange { ex in
            assert(ex.stage == .connecting, "retry in stage \(ex.stage)")
            ex.stage = .routing
        }
    }

    /// A try failed before any response byte went downstream; a retry may follow (`upstreamConnecting`).
    public mutating func upstreamFailed() {
        self.modifyExchange { ex in
            assert(!ex.stage.responseStarted, "upstream failed in stage \(ex.stage)")
            ex.upstream = nil
            ex.stage = .connecting
        }
    }

    /// The request's head went upstream on a connection. The response head is due `responseHeadTimeout` after the
    /// request's end (now, if it has ended).
    public mutating func upstreamAttached(now: NIODeadline, responseHeadTimeout: TimeAmount, readTimeout: TimeAmount) {
        self.upstreamActive = false
        self.modifyExchange { ex in
            assert(ex.stage == .routing || ex.stage == .connecting, "attached in stage \(ex.stage)")
            ex.stage = .forwarding
            ex.upstream = UpstreamClock(
                responseHeadTimeout: responseHeadTimeout, readTimeout: readTimeout,
                deadline: ex.requestEnded ? now + responseHeadTimeout : nil)
        }
    }

    /// Anything came from the upstream (pushes the read deadline out at the next tick).
    public mutating func upstreamActivity() {
        self.upstreamActive = true
    }

    /// The upstream's final response head goes downstream (or its 101: the tunnel starts at its end).
    public mutating func upstreamResponseStarted(now: NIODeadline) {
        self.modifyExchange { ex in
            assert(ex.stage == .forwarding, "response head in stage \(ex.stage)")
            ex.stage = .relaying
            if let up = ex.upstream { ex.upstream!.deadline = now + up.readTimeout }
        }
    }

    /// The upstream's response ended. One that ended before its request did (an early 413) leaves the rest of the
    /// body indistinguishable from a next request without reading it all, so the connection closes after it.
    public mutating func upstreamResponseEnded() {
        guard case .active(var ex) = self.state else { return }
        ex.upstream = nil
        if !ex.requestEnded { self.closesAfterExchange = true }
        self.state = .active(ex)
    }

    // MARK: Response events

    /// Portico answers itself.
    public mutating func localResponseStarted() {
        self.modifyExchange { ex in
            assert(!ex.stage.responseStarted, "local answer in stage \(ex.stage)")
            ex.stage = .answering
            ex.upstream = nil
        }
    }

    /// A streamed answer waits for its client to read (`blocked`), or made progress.
    public mutating func answerStream(blocked: Bool, now: NIODeadline) {
        let deadline = blocked ? now + self.timeouts.send : nil
        self.modifyExchange { $0.sendDeadline = deadline }
    }

    public enum ResponseEndAction: Sendable, Hashable {
        /// HTTP/1.1, the connection persists: write the end; it is flushed with the read batch or the upstream's.
        /// `complete`: the request had ended too (log the exchange, take the next); otherwise its body is still
        /// read and dropped, and `requestEndReceived` says `.finish` at its end.
        case keepAlive(complete: Bool)
        /// The connection's last response: write the end and flush it, then report `lastResponseFlushed`. The
        /// exchange is over (log it) whether or not the request had ended.
        case closeAfterFlush
        /// HTTP/2: END_STREAM; the exchange is complete.
        case endStream
        /// HTTP/2, the request still arriving: END_STREAM, then RST_STREAM(NO_ERROR) once it is flushed.
        case endStreamThenReset
    }

    /// The response's end is to be written.
    public mutating func responseEnded(now: NIODeadline) -> ResponseEndAction {
        guard case .active(var ex) = self.state, ex.stage != .answered else {
            assertionFailure("response end in state \(self.state)")
            return .closeAfterFlush
        }
        ex.stage = .answered
        ex.upstream = nil
        ex.sendDeadline = nil
        switch self.proto {
        case .http2:
            self.state = .active(ex)
            guard ex.requestEnded else { return .endStreamThenReset }
            self.finishExchange(now: now)
            return .endStream
        case .http1:
            if self.closesAfterExchange {
                self.state = .draining(now + self.timeouts.drain, requestUnfinished: !ex.requestEnded)
                return .closeAfterFlush
            }
            self.state = .active(ex)
            guard ex.requestEnded else { return .keepAlive(complete: false) }
            self.finishExchange(now: now)
            return .keepAlive(complete: true)
        }
    }

    private mutating func finishExchange(now: NIODeadline) {
        self.state = .idle(now + self.timeouts.idle)
    }

    public enum FlushAction: Sendable, Hashable {
        case close
        /// Shut down our side, read and drop until the client closes or the linger deadline.
        case linger
    }

    /// The connection's last response was flushed (or failed to be). `bytesPending`: the handler holds requests
    /// behind it or the codec holds unparsed bytes. Only a client that may still be sending gets a lingering
    /// close (nginx's `lingering_close on` heuristic): a body not read to its end, bytes behind the last request,
    /// or a close it did not ask for (it may have pipelined requests still in the kernel's buffer, which a plain
    /// close would answer with a reset). Otherwise the socket closes at once.
    public mutating func lastResponseFlushed(now: NIODeadline, success: Bool, bytesPending: Bool) -> FlushAction {
        guard case .draining(_, let requestUnfinished) = self.state else { return .close }
        let mayStillSend = requestUnfinished || bytesPending || !self.clientAskedToClose
        guard success, !self.inputEnded, mayStillSend else { return .close }
        self.state = .lingering(now + self.timeouts.linger)
        return .linger
    }

    // MARK: The clock

    public enum TickAction: Sendable, Hashable {
        case none
        /// The idle, drain or linger deadline passed: close.
        case close
        /// The request head did not complete in time: 408, then close.
        case requestHeadTimeout
        /// The request body stalled or fell below the minimum rate. Never the upstream's fault.
        case requestBodyTimeout(tooSlow: Bool, responseStarted: Bool)
        /// The upstream's response head (retryable, counts against the host) or its next body bytes (the client
        /// sees the connection fail) did not come in time.
        case upstreamTimeout(responseStarted: Bool)
        /// A streamed answer's client stopped reading.
        case sendTimeout
    }

    /// The worker's coarse clock (every 100 ms). `readsHeld`: Portico is holding the downstream's reads (the
    /// upstream does not take the body, a filter suspended, pipelining): that time is not the client's.
    public mutating func tick(now: NIODeadline, readsHeld: Bool) -> TickAction {
        switch self.state {
        case .idle(let deadline):
            return now >= deadline ? .close : .none
        case .receivingHead(let deadline):
            return now >= deadline ? .requestHeadTimeout : .none
        case .draining(let deadline, _), .lingering(let deadline):
            return now >= deadline ? .close : .none
        case .tunnel, .closed:
            return .none
        case .active(var ex):
            self.state = .closed  // no copy-on-write of the exchange while it is changed
            if self.upstreamActive {
                self.upstreamActive = false
                ex.upstream?.activity = true
            }
            let action = self.tick(&ex, now: now, readsHeld: readsHeld)
            self.state = .active(ex)
            return action
        }
    }

    private func tick(_ ex: inout Exchange, now: NIODeadline, readsHeld: Bool) -> TickAction {
        if let d = ex.sendDeadline, now >= d {
            ex.sendDeadline = nil
            return .sendTimeout
        }
        // Body deadlines hold until the body ended, except while a response streams from the upstream (a
        // bidirectional stream); a body still owed after a local answer is timed too.
        if ex.stage != .relaying, var body = ex.body {
            if body.activity || readsHeld {
                body.activity = false
                body.deadline = now + self.timeouts.requestBody
            }
            var tooSlow = false
            if self.timeouts.minBodyRate > 0 && body.bytes > 0 {
                // The rate counts only the client's time: from its first body byte, and not while reads were held.
                if let last = body.lastCheck, !readsHeld { body.clientNanos += (now - last).nanoseconds }
                body.lastCheck = now
                if body.clientNanos > self.timeouts.minBodyRateGrace.nanoseconds {
                    tooSlow = Double(body.bytes) < Double(self.timeouts.minBodyRate) * Double(body.clientNanos) / 1e9
                }
            }
            if tooSlow || now >= body.deadline {
                ex.body = nil
                // A slow client is never counted against the upstream host.
                if !ex.stage.responseStarted { ex.upstream?.deadline = nil }
                return .requestBodyTimeout(tooSlow: tooSlow, responseStarted: ex.stage.responseStarted)
            }
            ex.body = body
        }
        guard var up = ex.upstream else { return .none }
        defer { ex.upstream = up }
        if ex.stage == .forwarding, !ex.requestEnded, readsHeld, up.deadline == nil {
            // The upstream stopped taking the body (reads are held for it): it has the response-head timeout to
            // take it again or answer.
            up.deadline = now + up.responseHeadTimeout
        }
        guard let deadline = up.deadline else { return .none }
        if up.activity && ex.stage == .relaying {
            // Body bytes flowed since the last tick: push the read deadline out.
            up.activity = false
            up.deadline = now + up.readTimeout
            return .none
        }
        guard now >= deadline else { return .none }
        up.deadline = nil
        return .upstreamTimeout(responseStarted: ex.stage.responseStarted)
    }

    // MARK: Parse errors

    public enum ParseErrorAction: Sendable, Hashable {
        /// The connection is ending: what it still receives is dropped.
        case ignore
        /// No request in flight: answer the error (4xx) and close.
        case respond
        /// The request in flight is malformed mid-body: never forward ambiguity; answer or reset, and close.
        case abort
        /// The error is behind requests still being answered: answer it after them.
        case deferred
    }

    /// The decoder found the client's bytes malformed.
    public func parseErrorAction() -> ParseErrorAction {
        switch self.state {
        case .draining, .lingering, .tunnel, .closed: return .ignore
        case .idle, .receivingHead: return .respond
        case .active(let ex):
            if ex.stage == .answered { return .deferred }
            return ex.requestEnded ? .deferred : .abort
        }
    }

    // MARK: Helpers

    /// Changes the exchange in flight in place (no copy of its storage); nothing when there is none.
    private mutating func modifyExchange(_ body: (inout Exchange) -> Void) {
        guard case .active(var ex) = self.state else { return }
        self.state = .closed
        body(&ex)
        self.state = .active(ex)
    }
}
