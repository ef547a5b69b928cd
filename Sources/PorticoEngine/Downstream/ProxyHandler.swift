//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOSSL
import PorticoCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The downstream end of the proxy: runs every phase of each request (route, filter, select upstream, forward,
/// respond, log) and glues the downstream channel to an `UpstreamHandler` on the same EventLoop.
///
/// Runs on the downstream connection's EventLoop only; never blocks, never awaits, takes no locks. Body parts
/// are the decoder's `ByteBuffer` slices, written to the other side as they are (no copy) and flushed once per
/// read batch.
///
/// Requests are answered strictly in order (RFC 9112 §9.3.2): while one exchange is in flight, parts of later
/// pipelined requests wait in `queued`, and reads are paused, so at most one read batch waits.
///
/// Backpressure both ways (`GlueHandler`): the downstream `read()` is held while the upstream is not writable (or
/// not connected yet); the upstream's `read()` is held while the downstream is not writable.
final class ProxyHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    let worker: WorkerState
    private let listener: ListenerSettings
    /// The connection (HTTP/1.1, set when the handler is added) or the HTTP/2 stream (set at init).
    private var downstream: Downstream!

    private(set) var exchange: Exchange?
    /// An array, not a `CircularBuffer`: an empty array allocates nothing, and an HTTP/2 stream, or an HTTP/1.1
    /// connection that does not pipeline, never queues (at most `maxQueuedParts` are moved on removal).
    private var queued: [HTTPServerRequestPart] = []
    /// A parse error that arrived while an earlier request was still being answered; answered after it.
    private var deferredError: ProxyError?
    /// A `read()` was withheld (backpressure); it is issued when reads may go on.
    private var readPending = false
    private(set) var isClosed = false
    private var requestsServed = 0
    private var needsFlushDownstream = false
    private var needsFlushUpstream = false
    /// Between a downstream `channelRead` and its `channelReadComplete`.
    private var inDownstreamRead = false
    /// An exchange finished inside the current read batch (the batch's bytes may all have been its own).
    private var finishedInReadBatch = false
    /// The HTTP/1.1 codec in front of this handler (nil on an HTTP/2 stream), which calls it directly.
    private let codec: HTTP1ServerCodecHandler?

    /// The verified client certificate (mTLS), read once after the handshake.
    private var clientCertificate: ClientCertificateInfo??
    private(set) var clientIP = "-"
    private var clientTrusted = false

    /// The exchanges' life and every deadline in it: this handler feeds it events and performs its actions.
    var machine: ExchangeStateMachine
    /// The client went while the upstream response is read to its end for others (`completesUpstreamResponse`):
    /// the exchange goes on without a downstream, writing nothing.
    private var detached = false

    var workerSlot = -1

    /// For HTTP/2 streams: the connection's peer, shared by its streams.
    private let peer: DownstreamPeer?

    /// The client's address from a PROXY protocol header, standing for the socket's.
    let proxiedAddress: SocketAddress?

    /// An HTTP/1.1 connection's handler, added to its pipeline behind `codec`, which it joins to itself.
    init(worker: WorkerState, listener: ListenerSettings, codec: HTTP1ServerCodecHandler, proxiedAddress: SocketAddress? = nil) {
        self.worker = worker
        self.listener = listener
        self.codec = codec
        self.peer = nil
        self.proxiedAddress = proxiedAddress
        self.machine = Self.machine(.http1, listener)
    }

    /// An HTTP/2 stream's handler, driven by its connection's `HTTP2StreamTable` (never in a pipeline).
    init(worker: WorkerState, listener: ListenerSettings, stream: (table: HTTP2StreamTable, id: HTTP2StreamID), peer: DownstreamPeer) {
        self.worker = worker
        self.listener = listener
        self.peer = peer
        self.codec = nil
        self.proxiedAddress = peer.proxiedAddress
        self.downstream = .stream(stream.table, stream.id)
        self.machine = Self.machine(.http2, listener)
    }

    private static func machine(_ proto: ExchangeProtocol, _ listener: ListenerSettings) -> ExchangeStateMachine {
        ExchangeStateMachine(
            proto: proto,
            timeouts: .init(requestHead: listener.requestHeaderTimeout, requestBody: listener.requestBodyTimeout,
                            idle: listener.idleTimeout, minBodyRate: listener.minBodyRate),
            now: .uptimeNanoseconds(0))
    }

    /// The PROXY protocol header for a new upstream connection of a cluster that sends one: the client's address
    /// (a received header's, else the socket's) and the listener's.
    func proxyProtocolHeader(_ version: ProxyProtocolVersion) -> ByteBuffer {
        let connection = self.connectionChannel
        return ProxyProtocol.encode(version, source: self.proxiedAddress ?? connection.remoteAddress, destination: connection.localAddress)
    }

    /// The client's connection (an HTTP/2 stream's too).
    private var connectionChannel: any Channel { self.downstream.channel }

    /// Unparsed bytes wait in the HTTP/1.1 codec (part of a next request).
    private var codecHasBufferedInput: Bool {
        self.codec?.hasBufferedInput ?? false
    }

    /// The loop's clock (virtual under `EmbeddedEventLoop`, so timeouts are testable).
    var now: NIODeadline { self.downstream.eventLoop.now }

    var downstreamIsWritable: Bool {
        if self.downstream?.isWritable ?? false { return true }
        guard let ex = self.exchange, ex.context.completesUpstreamResponse else { return false }
        // A response others stream from is read at the upstream's pace, not at this client's: all of it once the
        // client went, and while it is connected up to `fillLead` bytes buffered for it (a client that does not
        // read cannot make Portico hold a whole response per connection; followers are held back only beyond that).
        if self.detached { return true }
        return self.downstream.bufferedBytes < Self.fillLead
    }

    /// How far a response others stream from may run ahead of its own slow client.
    static let fillLead = 1 << 20

    // MARK: Connection lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        // Only an HTTP/1.1 connection's handler is added to a pipeline; an HTTP/2 stream's has no codec.
        self.downstream = .connection(context, self.codec!)
        self.codec!.proxy = self
        if context.channel.isActive { self.downstreamOpened() }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.downstreamOpened()
        context.fireChannelActive()
    }

    /// The connection is up (HTTP/1.1), or the stream's table made this handler (HTTP/2).
    func downstreamOpened() {
        guard self.workerSlot < 0, !self.isClosed else { return }
        let forwarding = self.worker.table.forwarding
        if let peer = self.peer {
            // An HTTP/2 stream: the connection's peer, looked up once for all its streams.
            (self.clientIP, self.clientTrusted) = peer.identity(of: self.downstream.channel, forwarding)
        } else {
            (self.clientIP, self.clientTrusted) = DownstreamPeer.lookUp(self.downstream.channel, forwarding, proxiedAddress: self.proxiedAddress)
        }
        self.machine.connectionOpened(now: self.now)
        self.worker.register(self)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.downstreamClosed()
        context.fireChannelInactive()
    }

    /// The connection or stream is gone (the client closed or reset it, or Portico did).
    func downstreamClosed() {
        self.isClosed = true
        if let ex = self.exchange, ex.context.completesUpstreamResponse, ex.upstream != nil, self.machine.stage == .relaying {
            // Others stream this response: it is read to its end without this client (timed by the tick as
            // before), then logged (`endDetached`).
            self.detached = true
            self.worker.detach(self)
            if ex.error == nil { ex.error = ProxyError(.downstreamClosed, source: .downstream) }
            ex.upstream?.resumeReading()
            return
        }
        self.worker.unregister(self)
        if let ex = self.exchange {
            if !self.machine.responseEnded {
                if ex.error == nil { ex.error = ProxyError(.downstreamClosed, source: .downstream) }
                if !self.machine.responseStarted { ex.status = 499 }
            }
            if let up = ex.upstream {
                ex.upstream = nil
                up.close()
            }
            ex.releaseHost()
            ex.leaveQueue()
            self.log(ex)
            self.exchange = nil
        }
        self.machine.connectionClosed()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            self.quiesce()
            return
        }
        if let e = event as? ChannelEvent, case .inputClosed = e {
            // The client half-closed: finish the current exchange, then close. A last response still going out
            // finishes first.
            if self.machine.inputClosed() { self.closeDownstream() }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Graceful shutdown: finish what is in flight, take no new request.
    func quiesce() {
        if self.machine.quiesce() { self.closeDownstream() }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.downstreamFailed(error)
    }

    /// A parse error (answered), or any other error on the connection or stream (which ends it).
    func downstreamFailed(_ error: any Error) {
        let proxyError: ProxyError
        var status: Int?
        if error is IOError {
            // The connection is gone.
            return self.closeDownstream()
        }
        if self.machine.isEnding {
            return  // what a closing connection still receives is dropped
        }
        if let parse = error as? HTTP1ParseError {
            switch parse.status {
            case 431: proxyError = ProxyError(.headerTooLarge, source: .downstream, context: parse.description)
            case 414: proxyError = ProxyError(.uriTooLong, source: .downstream, context: parse.description)
            default:
                proxyError = ProxyError(.badRequest, source: .downstream, context: parse.description)
                status = parse.status
            }
        } else if let parse = error as? HTTPParserError {
            switch parse {
            case .headerOverflow: proxyError = ProxyError(.headerTooLarge, source: .downstream, context: "\(parse)")
            case .invalidURL: proxyError = ProxyError(.badRequest, source: .downstream, context: "invalid request target")
            default: proxyError = ProxyError(.badRequest, source: .downstream, context: "\(parse)")
            }
        } else if error is ByteToMessageDecoderError {
            proxyError = ProxyError(.badRequest, source: .downstream, context: "\(error)")
        } else {
            // Any other error: the connection cannot go on.
            return self.closeDownstream()
        }
        switch self.machine.parseErrorAction() {
        case .ignore: return  // what a closing connection still receives is dropped
        case .respond: self.respondWithError(proxyError, exchange: nil, status: status)
        case .abort: self.abortExchange(self.exchange!, proxyError)  // a bad chunk: never forward ambiguity
        case .deferred: self.deferError(proxyError)
        }
    }

    /// A parse error behind requests still being answered: it is answered after them. The request it broke (the
    /// queued parts after the last complete request) is never started.
    private func deferError(_ error: ProxyError) {
        self.deferredError = error
        while let last = self.queued.last {
            if case .end = last { break }
            self.queued.removeLast()
        }
    }

    // MARK: Downstream inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.received(self.unwrapInboundIn(data))
    }

    /// A request part from the connection's codec or the stream's table.
    func received(_ part: HTTPServerRequestPart) {
        self.inDownstreamRead = true
        // RFC 9112 §9.6: nothing after a response that closes the connection is processed (pipelined requests
        // behind it included).
        if self.isClosed || self.machine.isEnding || (self.machine.closesAfterExchange && self.exchange == nil && self.queued.isEmpty && self.held == nil) {
            return
        }
        if self.machine.proto.framingFollowsHead && (self.held != nil || self.exchange == nil) {
            if self.holdHTTP2Part(part) { return }
        }
        if self.exchange != nil || !self.queued.isEmpty {
            self.routePartToExchange(part)
        } else {
            self.handleNew(part)
        }
    }

    private func routePartToExchange(_ part: HTTPServerRequestPart) {
        guard let ex = self.exchange else {
            self.queued.append(part)
            return
        }
        if self.machine.requestEnded {
            // A pipelined request: wait for the current one to finish.
            self.queued.append(part)
            return
        }
        self.requestPart(part, ex)
    }

    // MARK: HTTP/2 request framing

    /// An HTTP/2 stream's request while its upstream framing is not known yet (`holdHTTP2Part`).
    private var held: HeldHTTP2Request?

    private struct HeldHTTP2Request {
        var head: HTTPRequestHead
        /// `content-length` was given (≤ `maxHeldBody`): held until the stream ends, with its body.
        var declaredLength: Int?
        var body: [HTTPServerRequestPart] = []
    }

    /// Request bodies of HTTP/2 streams up to this size are held whole before anything goes upstream.
    static let maxHeldBody = 64 * 1024

    /// HTTP/2 frames every body by DATA and END_STREAM, HTTP/1.1 by `Content-Length` or chunked (RFC 9112 §6), so
    /// an HTTP/2 request cannot be forwarded until its framing is known. Portico frames every body it forwards:
    /// - no `content-length` (NIO's codec adds `transfer-encoding: chunked` only for methods that expect a body):
    ///   the head waits for the next part. END_STREAM means no body; DATA, or the end of the read batch with the
    ///   stream still open (a gRPC-style stream may wait for the response first), means a chunked body upstream.
    ///   Without this, a GET, DELETE or TRACE with DATA went upstream unframed: the origin read its body as the
    ///   next request.
    /// - `content-length` up to `maxHeldBody`: the head and body wait for END_STREAM, so a stream whose DATA
    ///   disagrees with its `content-length` (NIOHTTP2 resets it, RFC 9113 §8.1.1) is refused before anything
    ///   goes upstream. Longer bodies stream; a mismatch there closes the upstream connection mid-body, so the
    ///   origin never sees a complete request.
    /// Returns true when the part was taken (held, or released with what it completes).
    private func holdHTTP2Part(_ part: HTTPServerRequestPart) -> Bool {
        guard var held = self.held else {
            guard case .head(let head) = part, !head.headers.contains(name: "upgrade"),
                !head.headers.contains(name: "transfer-encoding")
            else { return false }
            if let cl = head.headers.first(name: "content-length") {
                guard let length = Int(cl), length <= Self.maxHeldBody else { return false }
                self.held = HeldHTTP2Request(head: head, declaredLength: length)
                // A held request is still arriving: it has the request-head timeout to complete.
                self.machine.requestHeld(now: self.now)
            } else {
                self.held = HeldHTTP2Request(head: head, declaredLength: nil)
            }
            return true
        }
        switch part {
        case .head:
            return true  // cannot happen on a stream
        case .body:
            if held.declaredLength == nil {
                self.releaseHeldHTTP2Request(chunked: true)
                return false
            }
            held.body.append(part)
            self.held = held
            return true
        case .end:
            self.releaseHeldHTTP2Request(chunked: false)
            return false
        }
    }

    /// Starts the held request's exchange and hands it the held body parts.
    private func releaseHeldHTTP2Request(chunked: Bool) {
        guard let held = self.held else { return }
        self.held = nil
        self.startExchange(held.head, chunkedUpstream: chunked)
        for part in held.body where self.exchange != nil {
            self.routePartToExchange(part)
        }
    }

    private func handleNew(_ part: HTTPServerRequestPart) {
        switch part {
        case .head(let head):
            self.startExchange(head)
        case .body, .end:
            // Body of a request we already answered and stopped tracking (cannot happen: exchanges live until .end).
            break
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.readBatchComplete()
        context.fireChannelReadComplete()
    }

    /// The end of a read batch: held HTTP/2 heads go on, the request-head deadline starts, and what was written is
    /// flushed once.
    func readBatchComplete() {
        self.inDownstreamRead = false
        if let held = self.held, held.declaredLength == nil {
            // The stream is still open after its HEADERS: a body may follow, or the client waits for the response.
            self.releaseHeldHTTP2Request(chunked: true)
        }
        if self.exchange == nil && self.queued.isEmpty && self.held == nil {
            // Bytes arrived but no complete head yet: the request-header timeout starts now (slowloris). Not when
            // the batch only finished the last exchange: the connection is then idle, not receiving.
            self.machine.readBatchEnded(now: self.now, partialHead: !self.finishedInReadBatch || self.codecHasBufferedInput)
        }
        self.finishedInReadBatch = false
        self.flushPending()
    }

    private func flushPending() {
        if self.needsFlushUpstream {
            self.needsFlushUpstream = false
            self.exchange?.upstream?.flush()
        }
        if self.needsFlushDownstream {
            self.needsFlushDownstream = false
            self.downstream.flush()
        }
    }

    // MARK: Downstream backpressure

    func read(context: ChannelHandlerContext) {
        self.downstreamWantsRead()
    }

    /// The connection or stream would read more: it does unless the request's bytes have nowhere to go.
    func downstreamWantsRead() {
        if self.shouldReadDownstream {
            self.downstream.read()
        } else {
            self.readPending = true
        }
    }

    /// Whether the downstream may read more now. Reads stay on whenever the bytes have somewhere bounded to go:
    /// withholding `read()` makes NIO drop and re-add the socket's epoll interest (two `epoll_ctl` per request,
    /// 13% of the proxy's time in a profile), so it is only done for real backpressure.
    private var shouldReadDownstream: Bool {
        let ex = self.exchange
        // Only the answer the machine's state needs is computed.
        return self.machine.mayRead(
            queueHasRoom: self.queued.count < Self.maxQueuedParts,
            upstreamWritable: ex?.upstream?.isWritable ?? false,
            holdHasRoom: ex.map { !$0.suspended && ($0.bodyWait != nil || $0.pendingBody.count < Self.maxQueuedParts) } ?? false)
    }

    /// At most this many decoded parts (each at most one receive buffer) wait per connection.
    static let maxQueuedParts = 16

    private func resumeDownstreamReadIfPossible() {
        if self.readPending && self.shouldReadDownstream && !self.isClosed {
            self.readPending = false
            // The upstream takes the body again: no response is due until the body has ended.
            self.machine.readsResumed()
            self.downstream.read()
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.downstreamWritabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    func downstreamWritabilityChanged() {
        if self.downstream.isWritable, let ex = self.exchange {
            ex.upstream?.resumeReading()
            if ex.streamedBody != nil { self.pumpBodyStream(ex) }
        }
    }

    // MARK: Phase 1-2: validate and route

    /// `chunkedUpstream`: an HTTP/2 request with a body of unknown length (`holdHTTP2Part`).
    private func startExchange(_ head: HTTPRequestHead, chunkedUpstream: Bool = false) {
        let now = self.now
        let ex = Exchange(head: head, now: now)
        self.exchange = ex
        self.requestsServed += 1
        // The client may say this is its last request (RFC 9112 §9.6): it sends nothing after it. (An HTTP/2 stream
        // carries one request whatever its fields say.)
        self.machine.requestStarted(
            now: now, clientKeepAlive: self.machine.proto == .http2 || HopByHopHeaders.clientKeepsAlive(head.version, head.headers),
            lastAllowed: self.worker.isShuttingDown
                || (self.listener.maxRequestsPerConnection > 0 && self.requestsServed >= self.listener.maxRequestsPerConnection),
            maxBodyBytes: self.listener.maxBodyBytes)
        if self.worker.accessLog != nil {
            ex.referer = head.headers.first(name: "referer")
            ex.userAgent = head.headers.first(name: "user-agent")
        }

        if head.method == .CONNECT {
            // A reverse proxy has no tunnels to offer (WebSocket over HTTP/2 arrives here as an upgrade GET).
            return self.respondWithError(ProxyError(.badRequest, source: .downstream, context: "CONNECT is not supported"), exchange: ex, status: 405)
        }
        // RFC 9112 §3.2: exactly one Host in HTTP/1.1; absolute-form targets carry their own authority.
        // (Scanned without building arrays: this runs for every request.)
        var hostCount = 0
        var hostField: String?
        var hasTransferEncoding = false
        for (name, value) in head.headers {
            if name.caseInsensitiveASCIIEqual("host") {
                hostCount += 1
                if hostField == nil { hostField = value }
            } else if name.caseInsensitiveASCIIEqual("transfer-encoding") {
                hasTransferEncoding = true
            }
        }
        var target = Substring(head.uri)
        var hostText: Substring? = hostField.map { Substring($0) }
        if target.utf8.first != UInt8(ascii: "/") {
            if let (authority, path) = Self.splitAbsoluteForm(target) {
                hostText = authority
                target = path
            } else if head.method == .OPTIONS && target == "*" {
                // server-wide OPTIONS: routed by host, forwarded as is
            } else {
                return self.respondWithError(ProxyError(.badRequest, source: .downstream, context: "invalid request target"), exchange: ex)
            }
        }
        if !self.machine.proto.carries(head.version.major) {
            return self.respondWithError(ProxyError(.badRequest, source: .downstream, context: "unsupported HTTP version"), exchange: ex, status: 505)
        }
        // Host is required from HTTP/1.1 on (RFC 9112 §3.2); HTTP/2 carries it as `:authority` or `host` (RFC 9113
        // §8.3.1).
        if hostCount > 1 || ((head.version.minor >= 1 || head.version.major == 2) && hostText == nil) {
            return self.respondWithError(ProxyError(.badRequest, source: .downstream, context: hostCount > 1 ? "more than one Host" : "missing Host"), exchange: ex)
        }
        if let h = hostText, !Self.isValidHost(h) {
            return self.respondWithError(ProxyError(.badRequest, source: .downstream, context: "invalid Host"), exchange: ex)
        }
        ex.host = hostText.map(String.init)
        if head.uri.utf8.count > self.listener.maxURIBytes {
            return self.respondWithError(ProxyError(.uriTooLong, source: .downstream), exchange: ex)
        }
        // Request smuggling (RFC 9112 §6.1, §6.3): Transfer-Encoding with Content-Length, or a transfer coding
        // other than a final chunked, is refused and the connection closed.
        let te = hasTransferEncoding ? head.headers[canonicalForm: "transfer-encoding"] : []
        if !te.isEmpty {
            if head.headers.contains(name: "content-length") || te.last?.lowercased() != "chunked" || head.version == .http1_0 {
                return self.respondWithError(ProxyError(.badRequest, source: .downstream, context: "ambiguous request framing"), exchange: ex)
            }
        }
        // The declared length, read once (the HTTP/1.1 parser has refused malformed ones; NIOHTTP2 checks its own).
        var declaredLength: Int?
        if te.isEmpty, let cl = head.headers.first(name: "content-length") {
            guard let length = Int(cl), length >= 0 else {
                return self.respondWithError(ProxyError(.badRequest, source: .downstream, context: "invalid Content-Length"), exchange: ex)
            }
            if self.listener.maxBodyBytes > 0 && length > self.listener.maxBodyBytes {
                return self.respondWithError(ProxyError(.bodyTooLarge, source: .downstream), exchange: ex)
            }
            declaredLength = length
        }
        let hasBody = !te.isEmpty || chunkedUpstream || (declaredLength ?? 0) > 0
        if head.method == .TRACE && hasBody {
            // RFC 9110 §9.3.8: a client must not send content in a TRACE request (encoders that follow it drop the
            // framing of one, and the body would reach an origin as the next request).
            return self.respondWithError(ProxyError(.badRequest, source: .downstream, context: "TRACE with a body"), exchange: ex)
        }
        // RFC 9110 §7.8: Upgrade counts only when Connection names it, and never on HTTP/1.0. A request with a body
        // is never switched (its body could not be told apart from the new protocol's bytes). The Connection
        // field is only looked at when there is an Upgrade.
        var upgrade = head.headers.first(name: "upgrade")
        let upgradesWithConnectionField = self.machine.proto.upgradesWithConnectionField
        if upgrade != nil && upgradesWithConnectionField && !Self.connectionNamesUpgrade(head) { upgrade = nil }
        if upgrade != nil && upgradesWithConnectionField && hasBody {
            self.machine.closeAfterExchange()
        } else if upgrade != nil {
            // The decoder stops parsing after an Upgrade request, so this connection ends with this exchange: in a
            // 101 it becomes a tunnel, otherwise it closes after the response. WebSocket (RFC 6455) is forwarded
            // with its upgrade; any other protocol without it (RFC 9110 §7.8 lets a server ignore Upgrade).
            self.machine.closeAfterExchange()
            if upgrade!.lowercased() == "websocket" && head.method == .GET { ex.upgradeProtocol = "websocket" }
        }

        let table = self.worker.table
        let hostKey = hostText.map(normalizedRequestHost) ?? ""
        let path = PathNormalizer.routingPath(target)
        guard let route = table.match(host: hostKey, path: path, method: head.method, headers: head.headers, listener: self.listener.name) else {
            return self.respondWithError(ProxyError(.noRoute, source: .downstream), exchange: ex)
        }
        ex.route = route
        ex.hasBodyFilters = route.filters.hasResponseBodyFilters || self.listener.filters.hasResponseBodyFilters
        if route.maxBodyBytes > 0 {
            let listenerMax = self.listener.maxBodyBytes
            let maxBodyBytes = listenerMax > 0 ? min(listenerMax, route.maxBodyBytes) : route.maxBodyBytes
            self.machine.limitRequestBody(to: maxBodyBytes)
            if let declaredLength, declaredLength > maxBodyBytes {
                return self.respondWithError(ProxyError(.bodyTooLarge, source: .downstream), exchange: ex)
            }
        }

        var context = RequestContext(
            clientIP: self.clientIP,
            clientTrusted: self.clientTrusted,
            scheme: self.listener.scheme,
            host: ex.host,
            listener: self.listener.name,
            route: route.name,
            uri: head.uri,
            method: head.method
        )
        context.eventLoop = self.downstream.eventLoop
        if route.filters.usesSubrequests { context.subrequests = self.worker.subrequests }
        context.requestHeaders = head.headers
        if self.listener.tls?.clientSubjectHeader != nil, let info = self.verifiedClientCertificate() {
            context.clientCertificate = RequestContext.ClientIdentity(subject: info.subject, sha256: info.sha256)
        }
        ex.context = context
        let plan = ForwardPlan(
            uri: target.utf8.count == head.uri.utf8.count ? nil : String(target),
            chunked: !te.isEmpty || chunkedUpstream,
            host: hostText != nil && hostField.map({ $0[...] }) != hostText ? String(hostText!) : nil,
            contentLength: self.machine.proto.rewritesContentLength ? declaredLength : nil
        )
        self.runRequestFilters(ex, head, plan, from: 0)
    }

    /// Whether an HTTP/1.1 request's Connection field lists `upgrade`.
    static func connectionNamesUpgrade(_ head: HTTPRequestHead) -> Bool {
        guard head.version.minor >= 1 else { return false }
        for (name, value) in head.headers where name.caseInsensitiveASCIIEqual("connection") {
            for token in value.split(separator: ",") where token.trimmingOWS().caseInsensitiveASCIIEqual("upgrade") {
                return true
            }
        }
        return false
    }

    /// What phase 6 needs to know about the request line and framing, decided while validating it.
    struct ForwardPlan: Sendable {
        /// The target to send upstream when it differs from the client's (absolute form made origin form).
        var uri: String?
        /// The body goes upstream chunked (the client's was chunked, or an HTTP/2 body of unknown length).
        var chunked: Bool
        /// Host to send when it differs from the client's field (absolute form, HTTP/2 `:authority`).
        var host: String?
        /// An HTTP/2 request's `content-length`, written again in canonical form.
        var contentLength: Int?
    }

    // MARK: Phase 3: request filters

    /// Runs the request filters from `start` (the listener's, then the route's), then the route's action.
    /// A filter may answer, or suspend the request (reads held, nothing sent upstream) until its future completes.
    private func runRequestFilters(_ ex: Exchange, _ head: HTTPRequestHead, _ plan: ForwardPlan, from start: Int) {
        guard let route = ex.route else { return }
        var head = head
        let listenerFilters = self.listener.filters
        var decision: FilterDecision
        var next: Int
        if start < listenerFilters.requestHeadCount {
            (decision, next) = listenerFilters.runRequestHead(&head, &ex.context, from: start)
            if case .proceed = decision {
                (decision, next) = route.filters.runRequestHead(&head, &ex.context, from: 0)
                next += listenerFilters.requestHeadCount
            }
        } else {
            (decision, next) = route.filters.runRequestHead(&head, &ex.context, from: start - listenerFilters.requestHeadCount)
            next += listenerFilters.requestHeadCount
        }
        switch decision {
        case .proceed:
            self.forward(ex, head, plan, route: route)
        case .respond(let response):
            self.respondFromFilter(ex, response)
        case .suspend(let future):
            self.suspend(ex, head, plan, until: future, resumeAt: next)
        case .needBody(let maxBytes, let then):
            self.awaitBody(ex, head, plan, maxBytes: maxBytes, then: then, resumeAt: next)
        }
    }

    /// A filter wants the request body before it decides: reads go on (bounded by `maxBytes`, 413 beyond), the
    /// parts are kept for the upstream, and at the end the filter gets them as one buffer.
    private func awaitBody(_ ex: Exchange, _ head: HTTPRequestHead, _ plan: ForwardPlan, maxBytes: Int,
                           then: @escaping @Sendable (ByteBuffer) -> FilterDecision, resumeAt next: Int) {
        if ex.requestBodyBytes > maxBytes {
            return self.respondWithError(ProxyError(.bodyTooLarge, source: .downstream), exchange: ex)
        }
        var head = head
        if !self.machine.requestEnded, head.version == .http1_1, head.headers.first(name: "expect")?.caseInsensitiveASCIIEqual("100-continue") == true {
            // The client waits for a go-ahead before the body, and no upstream is there yet to give it: Portico
            // does (RFC 9110 §10.1.1), and the upstream is not asked again.
            head.headers.remove(name: "expect")
            self.downstream.writeAndFlush(.head(HTTPResponseHead(version: .http1_1, status: .continue)), promise: nil)
        }
        // Weak: the exchange holds this closure until the body ends; an exchange that ends otherwise (the client
        // goes, a limit or timeout answers) must not be kept alive by it.
        let resume = { [weak self, weak ex, head] in
            guard let self, let ex, self.exchange === ex, self.machine.stage == .routing else { return }
            var body = ByteBuffer()
            for case .body(var part) in ex.pendingBody { body.writeBuffer(&part) }
            switch then(body) {
            case .proceed: self.runRequestFilters(ex, head, plan, from: next)
            case .respond(let response): self.respondFromFilter(ex, response)
            case .suspend(let future): self.suspend(ex, head, plan, until: future, resumeAt: next)
            case .needBody: self.respondWithError(ProxyError(.filterFailed, source: .internal, context: "asked for the body twice"), exchange: ex)
            }
        }
        // Waits for the end of the request, not for a declared body: an HTTP/2 stream may carry DATA without a
        // content-length, and a bodiless request's end follows its head at once.
        if self.machine.requestEnded {
            resume()
        } else {
            ex.bodyWait = (maxBytes, resume)
            self.resumeDownstreamReadIfPossible()
        }
    }

    private func suspend(_ ex: Exchange, _ head: HTTPRequestHead, _ plan: ForwardPlan, until future: EventLoopFuture<FilterDecision>, resumeAt next: Int) {
        ex.suspended = true
        future.hop(to: self.downstream.eventLoop).assumeIsolated().whenComplete { [self] result in
            // The request may have been answered meanwhile (a body over the limit, a malformed chunk).
            guard self.exchange === ex, !self.isClosed, self.machine.stage == .routing else { return }
            ex.suspended = false
            switch result {
            case .success(.proceed):
                self.runRequestFilters(ex, head, plan, from: next)
            case .success(.respond(let response)):
                self.respondFromFilter(ex, response)
            case .success(.suspend(let again)):
                return self.suspend(ex, head, plan, until: again, resumeAt: next)
            case .success(.needBody(let maxBytes, let then)):
                self.awaitBody(ex, head, plan, maxBytes: maxBytes, then: then, resumeAt: next)
            case .failure(let error):
                self.worker.logger.warning("request filter failed", metadata: ["route": "\(ex.routeName ?? "-")", "error": "\(error)"])
                self.respondWithError(ProxyError(.filterFailed, source: .internal, context: "\(error)"), exchange: ex)
            }
            // Not inside a read: nothing else will flush what was just written.
            self.flushPending()
            self.resumeDownstreamReadIfPossible()
        }
    }

    /// A filter answered: its response goes through the response filters like any other.
    private func respondFromFilter(_ ex: Exchange, _ response: FilterResponse) {
        response.updateContext?(&ex.context)
        if let stream = response.bodyStream {
            return self.respondStreaming(ex, status: response.status, headers: response.headers, stream)
        }
        self.respondLocally(ex, status: response.status, headers: response.headers, body: response.body, routeFilters: true)
    }

    /// A filter's answer whose body streams in from elsewhere: the head now, then the parts as they arrive
    /// (`pumpBodyStream`), through the response filters like an upstream body.
    private func respondStreaming(_ ex: Exchange, status: Int, headers: HTTPHeaders, _ stream: ResponseBodyStream) {
        var head = self.localResponseHead(ex, status: status, headers: headers, routeFilters: true)
        if !head.headers.contains(name: "content-length") && ex.version == .http1_0 {
            // An HTTP/1.0 client can only learn the end of an unknown-length body from the close.
            self.machine.closeAfterExchange()
        }
        self.setConnectionField(&head, ex)
        self.downstream.write(.head(head), promise: nil)
        self.needsFlushDownstream = true
        if ex.method == .HEAD || status == 204 || status == 304 {
            if ex.hasBodyFilters {
                var none = ByteBuffer()
                self.filterResponseBody(ex, &none, .end)
            }
            return self.writeResponseEnd(ex, trailers: nil)
        }
        let wake = NIOLoopBound((self, ex), eventLoop: self.downstream.eventLoop)
        ex.streamedBody = Exchange.StreamedBody(stream: stream) {
            let (handler, ex) = wake.value
            ex.streamedBody?.awaited = false
            handler.pumpBodyStream(ex)
        }
        self.pumpBodyStream(ex)
    }

    /// Writes what the body stream has that this response has not sent, while the client takes it; then waits
    /// for more (the stream wakes this on the connection's EventLoop, once per wait) or for writability
    /// (`channelWritabilityChanged`). The end of the stream ends the response; a failed stream closes the
    /// connection (or HTTP/2 stream), so the client never takes a short body for a whole one. Not re-entered: a
    /// flush that makes the channel writable again calls back into it, and the running loop goes on instead.
    private func pumpBodyStream(_ ex: Exchange) {
        guard self.exchange === ex, !self.isClosed, let stream = ex.streamedBody?.stream, ex.streamedBody?.pumping == false else { return }
        ex.streamedBody!.pumping = true
        defer { ex.streamedBody?.pumping = false }
        self.machine.answerStream(blocked: false, now: self.now)
        while self.exchange === ex && !self.isClosed {
            guard self.downstream.isWritable else {
                // Waiting for the client, not for the stream: the client has the send timeout to read on.
                self.machine.answerStream(blocked: true, now: self.now)
                return
            }
            let notify = ex.streamedBody!.awaited ? nil : ex.streamedBody!.notify
            switch stream.read(from: &ex.streamedBody!.position, eventLoop: self.downstream.eventLoop, notify: notify) {
            case .data(let parts):
                for var part in parts {
                    if ex.hasBodyFilters {
                        self.filterResponseBody(ex, &part, .data)
                        if part.readableBytes == 0 { continue }
                    }
                    ex.responseBodyBytes += part.readableBytes
                    self.downstream.write(.body(.byteBuffer(part)), promise: nil)
                }
                if ex.hasBodyFilters { self.writeFilteredBody(ex, .pause) }
                self.needsFlushDownstream = true
                self.flushPending()
            case .wait:
                ex.streamedBody!.awaited = true
                return self.flushPending()
            case .end:
                ex.streamedBody = nil
                if ex.hasBodyFilters { self.writeFilteredBody(ex, .end) }
                self.writeResponseEnd(ex, trailers: nil)
                return self.flushPending()
            case .failed:
                ex.streamedBody = nil
                ex.error = ProxyError(.upstreamReset, source: .upstream, context: "the response this one streams from failed")
                return self.closeDownstream()
            }
        }
    }

    // MARK: Phase 6: the upstream request

    private func forward(_ ex: Exchange, _ head: HTTPRequestHead, _ plan: ForwardPlan, route: Route) {
        guard case .proxy(let clusterIndex) = route.action else {
            // A fixed-response or redirect route answers in its last filter; nothing else can get here.
            return self.respondWithError(ProxyError(.filterFailed, source: .internal, context: "route \(route.name) answered nothing"), exchange: ex)
        }
        let cs = self.worker.clusterStates[clusterIndex]
        ex.clusterState = cs
        ex.context.cluster = cs.cluster.name
        // The client's head, changed only where it must be: its method, target and version share one storage
        // object that a change would copy (an HTTP/1.1 request not rewritten keeps it).
        var up = head
        if up.version != .http1_1 { up.version = .http1_1 }
        if let uri = plan.uri, uri != up.uri { up.uri = uri }
        // The copy-on-write copy of the fields happens here, with room for the forwarding fields added below
        // (otherwise the copy, then a regrowth).
        up.headers.reserveCapacity(head.headers.count + 8)
        HopByHopHeaders.strip(&up.headers)
        if self.machine.proto.splitsCookies {
            // HTTP/2 may split Cookie into several fields; HTTP/1.1 wants one (RFC 9113 §8.2.3).
            var cookieFields = 0
            for (name, _) in up.headers where name.caseInsensitiveASCIIEqual("cookie") { cookieFields += 1 }
            if cookieFields > 1 { up.headers.replaceOrAdd(name: "Cookie", value: up.headers["cookie"].joined(separator: "; ")) }
        }
        if cs.cluster.http2, head.headers.contains(name: "te"), head.headers[canonicalForm: "te"].contains(where: { $0.lowercased() == "trailers" }) {
            // The one TE value HTTP/2 allows (RFC 9113 §8.2.2); gRPC needs it end to end.
            up.headers.add(name: "TE", value: "trailers")
        }
        if let proto = ex.upgradeProtocol {
            up.headers.add(name: "Connection", value: "Upgrade")
            up.headers.add(name: "Upgrade", value: proto)
        }
        // Keep the body framing explicit upstream: never let a body go out unframed, and never pass on a
        // Content-Length as the client wrote it (NIOHTTP2 accepts "+5"; an origin might not).
        if plan.chunked { up.headers.add(name: "Transfer-Encoding", value: "chunked") }
        if let length = plan.contentLength { up.headers.replaceOrAdd(name: "Content-Length", value: String(length)) }
        if let host = plan.host { up.headers.replaceOrAdd(name: "Host", value: host) }
        self.listener.filters.runUpstreamRequestHead(&up, &ex.context)
        route.filters.runUpstreamRequestHead(&up, &ex.context)
        ex.upstreamHead = up
        if self.prepareSelection(ex, cluster: cs.cluster, head: head) {
            self.selectUpstream(ex)
        }
    }

    private func verifiedClientCertificate() -> ClientCertificateInfo? {
        if let cached = self.clientCertificate { return cached }
        let cert = try? self.connectionChannel.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self).peerCertificate
        let info = cert.map(ClientCertificateInfo.init)
        self.clientCertificate = .some(info)
        return info
    }

    static func splitAbsoluteForm(_ target: Substring) -> (authority: Substring, path: Substring)? {
        let lower = target.prefix(8).lowercased()
        let schemeLength: Int
        if lower.hasPrefix("http://") {
            schemeLength = 7
        } else if lower.hasPrefix("https://") {
            schemeLength = 8
        } else {
            return nil
        }
        let rest = target.dropFirst(schemeLength)
        let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<end]
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        let path = rest[end...]
        if path.isEmpty { return (authority, "/") }
        if path.first == "?" { return (authority, Substring("/" + path)) }
        return (authority, path)
    }

    static func isValidHost(_ h: Substring) -> Bool {
        !h.isEmpty && h.utf8.count <= 255
            && h.utf8.allSatisfy { b in
                (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b == 0x2d || b == 0x2e
                    || b == 0x3a || b == 0x5b || b == 0x5d || b == 0x5f
            }
    }

    func attach(_ conn: UpstreamHandler, _ ex: Exchange) {
        ex.upstream = conn
        conn.owner = self
        conn.requestsServed += 1
        guard var head = ex.upstreamHead, let cs = ex.clusterState else { return }
        if ex.route?.hostHeader == .upstream || ex.host == nil {
            // HTTP/1.1 upstream needs a Host (RFC 9112 §3.2): an HTTP/1.0 client may have sent none.
            head.headers.replaceOrAdd(name: "Host", value: cs.cluster.hosts[ex.hostIndex].authority)
        }
        conn.write(.head(head))
        for part in ex.pendingBody {
            self.forwardBodyPart(part, conn, ex)
        }
        // The end is not kept in `pendingBody` (`requestEnded` says it came): one allocation less per request.
        let requestEnded = self.machine.requestEnded
        if requestEnded { conn.write(.end(nil)) }
        ex.bodyPartsSentUpstream = ex.pendingBody.count
        let sentAt = self.now
        ex.requestSentUpstreamAt = sentAt
        ex.requestBodySentAt = requestEnded ? sentAt : nil
        // The response head is due from the end of the request body: a slow upload is not an upstream timeout
        // and never counts against the host. (Before the flush: a flush can make the upstream writable, which
        // resumes the downstream's reads at once, and an HTTP/2 stream then hands over the body it held; those
        // parts must be forwarded, not held behind a body already sent.)
        self.machine.upstreamAttached(
            now: sentAt, responseHeadTimeout: cs.cluster.retry.perTryTimeout ?? cs.cluster.responseHeaderTimeout,
            readTimeout: cs.cluster.readTimeout)
        if self.inDownstreamRead {
            // Flushed at the end of the read batch: a framing error later in the same batch closes the upstream
            // connection before anything of the request has left.
            self.needsFlushUpstream = true
        } else {
            conn.flush()
        }
        self.resumeDownstreamReadIfPossible()
    }

    private func forwardBodyPart(_ part: HTTPServerRequestPart, _ conn: UpstreamHandler, _ ex: Exchange) {
        switch part {
        case .body(let buffer): conn.write(.body(.byteBuffer(buffer)))
        case .end: conn.write(.end(nil))
        case .head: break
        }
    }

    // MARK: Request body

    private func requestPart(_ part: HTTPServerRequestPart, _ ex: Exchange) {
        let action: ExchangeStateMachine.RequestAction
        switch part {
        case .head:
            // Cannot happen: a head only follows an .end, and those are queued.
            return
        case .body(let buffer):
            ex.requestBodyBytes += buffer.readableBytes
            action = self.machine.requestBodyReceived(buffer.readableBytes)
        case .end:
            action = self.machine.requestEndReceived(now: self.now)
        }
        switch action {
        case .hold:
            if case .body = part { ex.pendingBody.append(part) }
            if let wait = ex.bodyWait {
                if ex.requestBodyBytes > wait.maxBytes {
                    ex.bodyWait = nil
                    return self.respondWithError(ProxyError(.bodyTooLarge, source: .downstream), exchange: ex)
                }
                if self.machine.requestEnded {
                    ex.bodyWait = nil
                    wait.resume()
                }
            }
        case .forward:
            guard let conn = ex.upstream else { return }
            if case .end = part {
                // Not kept for a replay: the machine knows the request ended.
                if !self.machine.responseStarted { ex.requestBodySentAt = self.now }
            } else if !self.machine.responseStarted && ex.pendingBody.count < 64 && ex.requestBodyBytes <= 64 * 1024 {
                // Keep small bodies replayable for a retry on a fresh connection.
                ex.pendingBody.append(part)
                ex.bodyPartsSentUpstream += 1
            } else if !ex.pendingBody.isEmpty {
                ex.pendingBody.removeAll()
                ex.bodyPartsSentUpstream = -1  // not replayable any more
            }
            self.forwardBodyPart(part, conn, ex)
            self.needsFlushUpstream = true
        case .discard:
            // The body of a request already answered (or being answered: a streamed answer ends the exchange at
            // its own end).
            break
        case .finish:
            self.finishExchange(ex)
        case .finishAndClose:
            self.log(ex)
            self.flushLastResponse(ex.answerWritten ?? self.downstream.eventLoop.makeSucceededVoidFuture())
        case .rejectTooLarge:
            self.abortExchange(ex, ProxyError(.bodyTooLarge, source: .downstream))
        case .closeConnection:
            self.closeDownstream()
        }
    }

    // MARK: Phase 8-9: response from upstream

    func upstreamRead(_ part: HTTPClientResponsePart, from conn: UpstreamHandler) {
        guard let ex = self.exchange, ex.upstream === conn else {
            conn.close()
            return
        }
        self.machine.upstreamActivity()
        switch part {
        case .head(var head):
            if head.status.code < 200 {
                if head.status.code == 101 {
                    guard ex.upgradeProtocol != nil, head.headers.first(name: "upgrade")?.lowercased() == ex.upgradeProtocol else {
                        // A switch nobody asked for is a broken upstream.
                        ex.upstream = nil
                        conn.close()
                        return self.respondWithError(ProxyError(.invalidUpstreamResponse, source: .upstream, context: "unexpected 101"), exchange: ex)
                    }
                    return self.sendSwitchingProtocols(ex, head)
                }
                // 100 Continue, 102, 103 Early Hints: forwarded as they are (RFC 9110 §15.2).
                if ex.version != .http1_0 {
                    HopByHopHeaders.strip(&head.headers)
                    self.downstream.write(.head(HTTPResponseHead(version: ex.version, status: head.status, headers: head.headers)), promise: nil)
                    self.needsFlushDownstream = true
                }
                return
            }
            let status = Int(head.status.code)
            if let cs = ex.clusterState {
                let host = cs.cluster.hosts[ex.hostIndex]
                // The host's latency runs from the end of the upload: the client's upload speed is not the host's.
                if cs.cluster.balancer == .ewma, let sent = ex.requestBodySentAt ?? ex.requestSentUpstreamAt {
                    let now = self.now.uptimeNanoseconds
                    host.state.recordLatency(Int64(now - sent.uptimeNanoseconds), now: Int64(now))
                }
                self.recordOutcome(ex, failed: cs.cluster.outlier?.failureStatuses.contains(status) ?? false, reason: "status \(status)")
                if let condition = RetryCondition.forStatus(status), self.canRetry(ex, condition) {
                    // Never forwarded: this response is dropped with its connection and the request goes elsewhere.
                    ex.upstream = nil
                    conn.close()
                    self.tryFailed(ex, condition, ProxyError(.invalidUpstreamResponse, source: .upstream, context: "status \(status)"), recordFailure: false)
                    return
                }
            }
            self.machine.upstreamResponseStarted(now: self.now)
            ex.pendingBody.removeAll()
            ex.status = status
            if let cookie = ex.setStickyCookie { head.headers.add(name: "Set-Cookie", value: cookie) }
            let tokens = HopByHopHeaders.strip(&head.headers)
            ex.upstreamKeepAlive = head.version.minor >= 1 ? !tokens.close : tokens.keepAlive
            ex.context.upstreamAuthority = ex.upstreamAuthority
            ex.context.status = status
            self.listener.filters.runResponseHead(&head, &ex.context)
            ex.route?.filters.runResponseHead(&head, &ex.context)
            let bodyless = ex.method == .HEAD || head.status.code == 204 || head.status.code == 304
            let hasLength = head.headers.contains(name: "content-length")
            if !bodyless && !hasLength && ex.version == .http1_0 {
                // An HTTP/1.0 client can only learn the end of an unknown-length body from the close.
                self.machine.closeAfterExchange()
            }
            self.setConnectionField(&head, ex)
            if self.machine.proto.hasTrailersOnlyResponses, head.headers.contains(name: "grpc-status") {
                // A gRPC trailers-only response (status in the head, RFC-less but gRPC's HTTP/2 protocol): it
                // must reach the client as trailers, after the head, never as an empty DATA frame with END_STREAM.
                var trailers = HTTPHeaders()
                for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
                    for value in head.headers[name] { trailers.add(name: name, value: value) }
                    head.headers.remove(name: name)
                }
                ex.trailersFromHead = trailers
            }
            if head.status.code != status {
                // A filter turned the response into another (a cache's stored response after a 304).
                ex.status = Int(head.status.code)
                ex.context.status = ex.status
            }
            // Assigned only when it differs: setting a field of NIO's head copies its storage. Not for HTTP/2, whose
            // codec takes no version from the head.
            if self.machine.proto == .http1 && head.version != ex.version { head.version = ex.version }
            self.downstream.write(.head(head), promise: nil)
            self.needsFlushDownstream = true
        case .body(var buffer):
            if ex.hasBodyFilters {
                self.filterResponseBody(ex, &buffer, .data)
                ex.bodyFiltersOwePause = true
                if buffer.readableBytes == 0 { return }
            }
            if self.detached { return }
            ex.responseBodyBytes += buffer.readableBytes
            self.downstream.write(.body(.byteBuffer(buffer)), promise: nil)
            self.needsFlushDownstream = true
        case .end(let trailers):
            if ex.awaitingTunnel { return self.switchToTunnel(ex, conn) }
            ex.upstream = nil
            ex.releaseHost()
            conn.pool.release(conn, reusable: ex.upstreamKeepAlive && self.machine.requestEnded)
            // One that ended before its request (an early 413) closes the connection after it.
            self.machine.upstreamResponseEnded()
            if ex.hasBodyFilters { self.writeFilteredBody(ex, .end) }
            if self.detached { return self.endDetached(ex) }
            self.writeResponseEnd(ex, trailers: trailers ?? ex.trailersFromHead)
        }
    }

    /// The upstream agreed to switch protocols: pass its 101 on. The tunnel starts at the response's end.
    /// On an HTTP/2 stream (an RFC 8441 extended CONNECT) the answer is a 200 without the HTTP/1.1 handshake's
    /// connection fields (RFC 8441 §5).
    private func sendSwitchingProtocols(_ ex: Exchange, _ upstreamHead: HTTPResponseHead) {
        var headers = upstreamHead.headers
        HopByHopHeaders.strip(&headers)
        let status = HTTPResponseStatus(statusCode: self.machine.proto.switchStatus)
        if self.machine.proto.upgradesWithConnectionField {
            headers.add(name: "Connection", value: "Upgrade")
            headers.add(name: "Upgrade", value: ex.upgradeProtocol ?? "websocket")
        } else {
            headers.remove(name: "sec-websocket-accept")
        }
        ex.status = Int(status.code)
        self.machine.upstreamResponseStarted(now: self.now)
        ex.awaitingTunnel = true
        self.downstream.writeAndFlush(.head(HTTPResponseHead(version: ex.version, status: status, headers: headers)), promise: nil)
    }

    /// After the upstream's 101: turn both connections into one byte stream (`GlueHandler`), removing the HTTP
    /// handlers on both sides (their decoders hand on any bytes that came after the 101). The exchange is logged
    /// now; the tunnel then lives until either side closes or both are silent for the cluster's `timeouts.read`.
    private func switchToTunnel(_ ex: Exchange, _ conn: UpstreamHandler) {
        guard let upChannel = conn.channel, let cs = ex.clusterState else { return }
        self.machine.tunnelStarted()
        // The connection leaves the pool for good; the exchange is over as far as accounting goes.
        ex.upstream = nil
        conn.owner = nil
        conn.pool.evict(conn)
        // The upstream handler leaves the pipeline, so its close no longer frees the cluster's connection slot.
        let pool = conn.pool
        upChannel.closeFuture.assumeIsolated().whenComplete { _ in pool.connectionClosed() }
        self.log(ex)
        self.exchange = nil
        self.worker.unregister(self)

        let idle = cs.cluster.readTimeout
        do {
            let up = upChannel.pipeline.syncOperations
            // One idle timer for both directions: the upstream's reads are the client's bytes coming back, its
            // writes the client's going out.
            try up.addHandler(IdleStateHandler(allTimeout: idle))
            switch self.downstream! {
            case .stream(let table, let id):
                // The stream's consumer becomes the tunnel; this handler is done.
                try table.startTunnel(id, upstream: upChannel)
                Self.removeHTTPHandlers(up, conn)
                table.releaseTunnel(id)
            case .connection(let context, let codec):
                // The codec hands what it holds on to the pipeline (the glue) from now on.
                codec.proxy = nil
                let (downGlue, upGlue) = GlueHandler.matchedPair()
                try up.addHandler(upGlue)
                Self.removeHTTPHandlers(up, conn)
                let down = context.pipeline.syncOperations
                try down.addHandler(IdleStateHandler(allTimeout: idle))
                try down.addHandler(downGlue)
                // This handler leaves first: the codec passes the bytes it holds (sent after the upgrade request) on
                // to whatever follows it, which must be the glue by then.
                let channel = context.channel
                _ = down.removeHandler(self)
                _ = down.removeHandler(codec)
                channel.read()
            }
            upChannel.read()
        } catch {
            self.worker.logger.warning("could not switch to a tunnel", metadata: ["error": "\(error)"])
            upChannel.close(promise: nil)
            self.downstream.close(promise: nil)
        }
    }

    /// The upstream connection's HTTP handlers leave once its bytes are the tunnel's (the codec hands on any bytes
    /// that came after the 101).
    private static func removeHTTPHandlers(_ up: ChannelPipeline.SynchronousOperations, _ conn: UpstreamHandler) {
        let codec = conn.codec
        _ = up.removeHandler(conn)
        if let codec { _ = up.removeHandler(codec) }
    }

    func upstreamReadComplete() {
        if let ex = self.exchange, ex.bodyFiltersOwePause, !self.machine.responseEnded {
            // The upstream paused: filters holding bytes back (a compressor) give them out now.
            self.writeFilteredBody(ex, .pause)
        }
        if self.needsFlushDownstream && !self.detached {
            self.needsFlushDownstream = false
            self.downstream.flush()
        }
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        if isWritable { self.resumeDownstreamReadIfPossible() }
    }

    /// The upstream connection closed or failed while leased to this handler.
    func upstreamClosed(_ conn: UpstreamHandler, error: (any Error)?) {
        guard let ex = self.exchange, ex.upstream === conn else { return }
        ex.upstream = nil
        conn.close()
        if self.machine.responseEnded { return }
        if self.machine.responseStarted {
            // Mid-response: the client must see a failed connection, never a short body that looks complete.
            ex.error = ProxyError(.upstreamReset, source: .upstream, context: error.map { "\($0)" })
            self.worker.logger.warning("upstream closed mid-response", metadata: ["host": "\(ex.upstreamAuthority ?? "-")", "status": "\(ex.status)"])
            self.closeDownstream()
            return
        }
        // Before any response byte. A reused connection may have been closed by the upstream just as we sent:
        // retry safe requests once on a fresh connection to the same host (Pingora `ReusedOnly`); this is not a
        // retry in the `retries` sense.
        let replayable = ex.bodyPartsSentUpstream >= 0
        if ex.usedReusedConnection && ex.isIdempotent && replayable, let cs = ex.clusterState {
            self.machine.upstreamFailed()
            self.acquireConnection(ex, cs)
            return
        }
        let reason = error.map { "\($0)" } ?? "connection closed"
        self.worker.logger.warning("upstream closed before responding", metadata: ["host": "\(ex.upstreamAuthority ?? "-")", "error": "\(reason)"])
        self.tryFailed(ex, .reset, ProxyError(.upstreamClosedEarly, source: .upstream, context: reason))
    }

    /// Runs the response body filters, the listener's then the route's, on one event (`ResponseBodyEvent`).
    private func filterResponseBody(_ ex: Exchange, _ chunk: inout ByteBuffer, _ event: ResponseBodyEvent) {
        self.listener.filters.runResponseBody(&chunk, event, &ex.context)
        ex.route?.filters.runResponseBody(&chunk, event, &ex.context)
    }

    /// A pause or the end of the body: what the filters still held goes downstream.
    private func writeFilteredBody(_ ex: Exchange, _ event: ResponseBodyEvent) {
        ex.bodyFiltersOwePause = false
        var chunk = ByteBuffer()
        self.filterResponseBody(ex, &chunk, event)
        guard chunk.readableBytes > 0, !self.detached else { return }
        ex.responseBodyBytes += chunk.readableBytes
        self.downstream.write(.body(.byteBuffer(chunk)), promise: nil)
        self.needsFlushDownstream = true
    }

    // MARK: Timeouts (worker tick)

    /// The worker's coarse clock: whatever deadline of the machine's passed is acted on here.
    func tick(now: NIODeadline) {
        switch self.machine.tick(now: now, readsHeld: self.readPending) {
        case .none:
            break
        case .close:
            // Idle for too long, or the last response did not drain, or the lingering close is over.
            self.closeDownstream()
        case .sendTimeout:
            self.exchange?.error = ProxyError(.downstreamClosed, source: .downstream, context: "stopped reading a streamed response")
            self.closeDownstream()
        case .requestHeadTimeout:
            self.held = nil
            self.respondWithError(ProxyError(.requestHeaderTimeout, source: .downstream), exchange: nil)
        case .requestBodyTimeout(let tooSlow, let responseStarted):
            guard let ex = self.exchange else { return }
            let error = ProxyError(.requestBodyTimeout, source: .downstream, context: tooSlow ? "below min_body_rate" : "silent for timeouts.request_body")
            self.worker.logger.info("request body too slow", metadata: ["client": "\(self.clientIP)", "reason": "\(error)"])
            if responseStarted {
                ex.error = error
                self.closeDownstream()
            } else {
                // Never counted against the upstream host: the client was slow.
                self.respondWithError(error, exchange: ex)
            }
        case .upstreamTimeout(let responseStarted):
            guard let ex = self.exchange else { return }
            if let up = ex.upstream {
                ex.upstream = nil
                up.close()
            }
            if responseStarted {
                ex.error = ProxyError(.readTimeout, source: .upstream)
                self.closeDownstream()
            } else {
                self.worker.logger.warning("upstream response header timeout", metadata: ["host": "\(ex.upstreamAuthority ?? "-")"])
                self.tryFailed(ex, .timeout, ProxyError(.responseHeaderTimeout, source: .upstream))
            }
        }
    }

    // MARK: Local responses and completion

    /// Answers without the upstream. `routeFilters`: the route's response filters run too (a filter's or the
    /// route's own answer); Portico's error answers get only the listener's (HSTS).
    private func respondLocally(_ ex: Exchange, status: Int, headers: HTTPHeaders, body: ByteBuffer, routeFilters: Bool = false) {
        var head = self.localResponseHead(ex, status: status, headers: headers, routeFilters: routeFilters)
        var body = body
        if routeFilters && ex.route != nil && ex.hasBodyFilters {
            // The whole body is one part; its length is known once the filters are done with it.
            self.filterResponseBody(ex, &body, .data)
            var rest = ByteBuffer()
            self.filterResponseBody(ex, &rest, .end)
            body.writeBuffer(&rest)
        }
        if status == 304 || status == 204 || status < 200 {
            body.clear()  // no content (RFC 9110 §15.4.5, §15.3.5): no length either
        } else {
            head.headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        }
        self.setConnectionField(&head, ex)
        self.downstream.write(.head(head), promise: nil)
        if ex.method != .HEAD && body.readableBytes > 0 {
            self.downstream.write(.body(.byteBuffer(body)), promise: nil)
        }
        ex.responseBodyBytes = body.readableBytes
        self.writeResponseEnd(ex, trailers: nil)
    }

    /// The head of an answer Portico gives itself (a filter's or the route's with `routeFilters`, else an error
    /// page), through the listener's response head filters and, with `routeFilters`, the route's.
    private func localResponseHead(_ ex: Exchange, status: Int, headers: HTTPHeaders, routeFilters: Bool) -> HTTPResponseHead {
        ex.status = status
        self.machine.localResponseStarted()
        ex.context.status = status
        var head = HTTPResponseHead(version: self.machine.proto.carries(ex.version.major) ? ex.version : .http1_1, status: HTTPResponseStatus(statusCode: status), headers: headers)
        self.listener.filters.runResponseHead(&head, &ex.context)
        if routeFilters { ex.route?.filters.runResponseHead(&head, &ex.context) }
        return head
    }

    /// The `Connection` field of a response head (`ExchangeStateMachine.connectionField`).
    private func setConnectionField(_ head: inout HTTPResponseHead, _ ex: Exchange) {
        switch self.machine.connectionField(http10: ex.version == .http1_0, requestHasBody: ex.requestHasBody) {
        case .none: break
        case .close: head.headers.replaceOrAdd(name: "Connection", value: "close")
        case .keepAlive: head.headers.replaceOrAdd(name: "Connection", value: "keep-alive")
        }
    }

    /// Answers with an error status and closes the connection (the request stream may be out of sync).
    func respondWithError(_ error: ProxyError, exchange: Exchange?, status: Int? = nil) {
        guard !self.isClosed else { return }
        let ex: Exchange
        if let exchange {
            ex = exchange
        } else {
            // No request to speak of (a malformed or late head): answered as one.
            let now = self.now
            ex = Exchange(head: HTTPRequestHead(version: .http1_1, method: .GET, uri: "-"), now: now)
            self.exchange = ex
            self.machine.requestStarted(now: now, clientKeepAlive: true, lastAllowed: true, maxBodyBytes: 0)
        }
        ex.error = error
        ex.releaseHost()
        ex.leaveQueue()
        if let up = ex.upstream {
            ex.upstream = nil
            up.close()
        }
        if self.machine.responseStarted {
            self.closeDownstream()
            return
        }
        let code = status ?? error.status
        // Client errors before a request is fully read leave the stream unusable; so do upstream failures
        // while the request body is still arriving.
        if error.source == .downstream || !self.machine.requestEnded || code == 408 {
            self.machine.closeAfterExchange()
        }
        let upstreamFailed = error.source == .upstream || error.kind == .noHealthyUpstream || error.kind == .circuitBreakerOverflow
        if upstreamFailed, let route = ex.route,
            let answer = route.filters.runUpstreamFailure(status: code, &ex.context)
        {
            // A filter answers instead (a cache serving a stale response); the error stays in the log line.
            return self.respondFromFilter(ex, answer)
        }
        var headers = HTTPHeaders()
        if code == 503 { headers.add(name: "Retry-After", value: "1") }
        if let page = ex.route?.errorPages[code] ?? self.worker.table.errorPages[code] {
            headers.add(name: "Content-Type", value: page.contentType)
            return self.respondLocally(ex, status: code, headers: headers, body: page.body)
        }
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        let phrase = HTTPResponseStatus(statusCode: code).reasonPhrase
        self.respondLocally(ex, status: code, headers: headers, body: ByteBuffer(string: "\(code) \(phrase)\n"))
    }

    /// Aborts an exchange whose request turned out bad mid-stream.
    private func abortExchange(_ ex: Exchange, _ error: ProxyError) {
        if self.machine.responseStarted {
            ex.error = error
            // Both sides reset: the answer to a malformed request is not finished for anyone else either.
            if let up = ex.upstream {
                ex.upstream = nil
                up.close()
            }
            self.closeDownstream()
        } else {
            self.respondWithError(error, exchange: ex)
        }
    }

    /// Writes the response's end, and does what the machine says the end means for the connection or stream.
    private func writeResponseEnd(_ ex: Exchange, trailers: HTTPHeaders?) {
        switch self.machine.responseEnded(now: self.now) {
        case .keepAlive(let complete):
            self.needsFlushDownstream = true
            if complete {
                self.downstream.write(.end(trailers), promise: nil)
                self.finishExchange(ex)
            } else {
                // Answered before the request ended: if the connection is to close once the body has been read
                // and dropped, it closes (or lingers) after this answer has gone out.
                let promise = self.downstream.eventLoop.makePromise(of: Void.self)
                self.downstream.write(.end(trailers), promise: promise)
                ex.answerWritten = promise.futureResult
            }
        case .closeAfterFlush:
            let promise = self.downstream.eventLoop.makePromise(of: Void.self)
            self.downstream.write(.end(trailers), promise: promise)
            self.flushLastResponse(promise.futureResult)
            self.log(ex)
        case .endStream:
            // The stream is done; its connection coalesces the flush with other streams'.
            self.downstream.writeAndFlush(.end(trailers), promise: nil)
            self.needsFlushDownstream = false
            self.finishExchange(ex)
        case .endStreamThenReset:
            // The stream is reset once the answer is out, so the client stops sending (RFC 9113 §8.1) and the
            // stream's slot is freed. (Closing it before would reset it before the connection's coalesced flush
            // has sent the response.)
            let promise = self.downstream.eventLoop.makePromise(of: Void.self)
            self.downstream.writeAndFlush(.end(trailers), promise: promise)
            promise.futureResult.assumeIsolated().whenComplete { [self] _ in self.resetStream() }
            self.needsFlushDownstream = false
        }
    }

    /// The exchange is complete both ways (the machine has moved on): log it and take the next request.
    private func finishExchange(_ ex: Exchange) {
        self.log(ex)
        guard self.exchange === ex else { return }
        self.exchange = nil
        if self.inDownstreamRead { self.finishedInReadBatch = true }
        if !self.queued.isEmpty || self.deferredError != nil {
            // Pipelined requests that came before a malformed one are answered first; `drainQueued` answers the
            // error once they are done.
            self.drainQueued()
        }
        if self.exchange == nil {
            self.needsFlushDownstream = false
            self.downstream.flush()
        }
        self.resumeDownstreamReadIfPossible()
    }

    private func drainQueued() {
        // A queued request whose answer ends the connection: what is behind it is never processed (RFC 9112 §9.6).
        while !self.machine.isEnding, !self.queued.isEmpty {
            let part = self.queued.removeFirst()
            if let ex = self.exchange {
                if self.machine.requestEnded {
                    self.queued.insert(part, at: 0)
                    return
                }
                self.requestPart(part, ex)
            } else if case .head(let head) = part {
                self.startExchange(head)
            }
        }
        if let error = self.deferredError, self.exchange == nil {
            self.deferredError = nil
            self.respondWithError(error, exchange: nil)
        }
    }

    /// After the last response of a connection went out to a client that may still be sending: shut down our
    /// side (the client reads the end of the response, not a reset), read and drop what the client still sends,
    /// and close once it closes its side or the linger deadline has passed (nginx's lingering close).
    private func lingerClose() {
        self.queued.removeAll()
        self.deferredError = nil
        if let ex = self.exchange, let up = ex.upstream {
            ex.upstream = nil
            up.close()
        }
        let promise = self.downstream.eventLoop.makePromise(of: Void.self)
        self.downstream.close(mode: .output, promise: promise)
        promise.futureResult.assumeIsolated().whenFailure { [self] _ in self.closeDownstream() }
        self.resumeDownstreamReadIfPossible()
    }

    /// Flushes the connection's last response; once it is out (`written`), closes or lingers as the machine says.
    private func flushLastResponse(_ written: EventLoopFuture<Void>) {
        self.needsFlushDownstream = false
        self.downstream.flush()
        written.assumeIsolated().whenComplete { [self] result in
            guard !self.isClosed else { return }
            let flushed: Bool
            if case .success = result { flushed = true } else { flushed = false }
            switch self.machine.lastResponseFlushed(now: self.now, success: flushed, bytesPending: self.bytesPending) {
            case .close: self.closeDownstream()
            case .linger: self.lingerClose()
            }
        }
    }

    /// Requests or bytes wait behind the last response (a client that may still be sending).
    private var bytesPending: Bool {
        !self.queued.isEmpty || self.deferredError != nil || self.held != nil || self.codecHasBufferedInput
    }

    /// Ends an HTTP/2 stream whose answer is complete but whose request is not: RST_STREAM with NO_ERROR, which
    /// tells the client to stop sending without failing the response it got (RFC 9113 §8.1), then the close.
    private func resetStream() {
        guard !self.isClosed else { return }
        // The table reports the stream's close (`downstreamClosed`) as the reset goes out.
        self.downstream.resetAfterAnswer()
        self.closeDownstream()
    }

    private func closeDownstream() {
        guard !self.isClosed else {
            // The upstream response a detached exchange was reading for others failed or timed out.
            if self.detached, let ex = self.exchange { self.endDetached(ex) }
            return
        }
        self.isClosed = true
        // A response others stream from goes on without this client (`channelInactive` detaches it).
        if let ex = self.exchange, let up = ex.upstream, !(ex.context.completesUpstreamResponse && self.machine.stage == .relaying) {
            ex.upstream = nil
            up.close()
        }
        self.downstream.close(promise: nil)
    }

    /// The end of an exchange whose client went while its upstream response was read for others (`detached`):
    /// the upstream connection is released or closed, the request logged, and the handler leaves the worker.
    private func endDetached(_ ex: Exchange) {
        if let up = ex.upstream {
            ex.upstream = nil
            up.close()
        }
        ex.releaseHost()
        ex.leaveQueue()
        self.log(ex)
        self.exchange = nil
        self.detached = false
        self.worker.endDetached(self)
    }

    /// The worker stops: a detached exchange still reading is cut off and logged.
    func abandonDetached() {
        guard self.detached, let ex = self.exchange else { return }
        ex.error = ProxyError(.upstreamReset, source: .internal, context: "shut down while reading a response for others")
        self.endDetached(ex)
    }

    // MARK: Phase 10: log, exactly once

    private func log(_ ex: Exchange) {
        guard !ex.logged else { return }
        ex.logged = true
        ex.streamedBody = nil  // its wake-up holds the exchange (a cycle until the stream ends)
        ex.releaseHost()
        ex.finishBudget()
        if let route = ex.route {
            self.listener.filters.runLog(ex.context)
            route.filters.runLog(ex.context)
        }
        if let m = self.worker.metrics {
            let now = self.now
            m.request(
                route: ex.route?.metricSlot ?? 0, listener: self.listener.metricSlot, cluster: ex.clusterState?.cluster.metricSlot,
                status: ex.status, durationNanos: (now - ex.start).nanoseconds,
                upstreamNanos: ex.requestSentUpstreamAt.map { (now - $0).nanoseconds },
                bytesIn: ex.requestBodyBytes, bytesOut: ex.responseBodyBytes, cache: ex.context.cacheOutcome,
                rateLimited: ex.context.rateLimited != nil, ipDenied: ex.context.ipDenied, authFailed: ex.context.authFailure != nil)
        }
                if ex.error != nil && ex.error?.kind != .downstreamClosed && ex.status >= 500 {
            self.worker.logger.info("request failed", metadata: ["status": "\(ex.status)", "reason": "\(ex.error!)", "uri": "\(ex.uri)"])
        }
        guard let log = self.worker.accessLog else { return }
        let now = self.now
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let entry = AccessLogEntry(
            clientIP: self.clientIP,
            // An RFC 8441 WebSocket is logged as the client sent it (CONNECT), not as it was forwarded (GET).
            method: !self.machine.proto.upgradesWithConnectionField && ex.upgradeProtocol != nil ? "CONNECT" : ex.method.rawValue,
            uri: ex.uri,
            version: .init(major: ex.version.major, minor: ex.version.minor),
            status: ex.status,
            bytesSent: ex.responseBodyBytes,
            referer: ex.referer,
            userAgent: ex.userAgent,
            host: ex.host,
            route: ex.routeName,
            cluster: ex.clusterName,
            upstream: ex.upstreamAuthority,
            durationSeconds: Double((now - ex.start).nanoseconds) / 1e9,
            upstreamSeconds: ex.requestSentUpstreamAt.map { Double((now - $0).nanoseconds) / 1e9 },
            reason: ex.error?.kind.description ?? ex.context.rateLimited.map { "rate_limited(\($0))" } ?? (ex.context.ipDenied ? "ip_denied" : nil)
                ?? ex.context.authFailure.map { "auth_failed(\($0))" },
            attempts: ex.attempts,
            time: ts,
            requestID: ex.context.requestID
        )
        log.append(entry)
    }
}

extension ProxyHandler: UpstreamOwner {}
