//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1
import PorticoCore

/// One request/response exchange on a downstream connection: the typed per-request data every phase reads and
/// writes (Pingora's `CTX`): the request as sent, its route, cluster, host and upstream connection, what it cost.
/// Where it is in its life, and its deadlines, are the handler's `ExchangeStateMachine`'s. Owned by its
/// `ProxyHandler`, on that connection's EventLoop.
final class Exchange {
    /// The request as the client sent it (for logging).
    let method: HTTPMethod
    let uri: String
    let version: HTTPVersion
    let start: NIODeadline
    let isIdempotent: Bool
    let requestHasBody: Bool
    var host: String?
    var referer: String?
    var userAgent: String?

    var route: Route?
    /// What the filters know and record about this request (set once the route is known).
    var context = RequestContext(clientIP: "-", clientTrusted: false, scheme: "http", host: nil, listener: "", route: "", uri: "")
    /// A request filter is waiting for asynchronous work: nothing goes upstream, reads are held.
    var suspended = false
    /// A request filter waits for the whole body (`FilterDecision.needBody`): reads go on, parts are kept.
    var bodyWait: (maxBytes: Int, resume: () -> Void)?
    var clusterState: ClusterState?
    /// The head sent upstream, kept so a retry can send it again.
    var upstreamHead: HTTPRequestHead?

    /// A filter's answer whose body streams in from elsewhere (`FilterResponse.bodyStream`).
    var streamedBody: StreamedBody?

    struct StreamedBody {
        let stream: ResponseBodyStream
        /// How far this response has read the stream.
        var position = 0
        /// `pumpBodyStream` is running (a flush that makes the channel writable again calls back into it).
        var pumping = false
        /// The stream will wake `pumpBodyStream` when it has news (one notification asked for at a time).
        var awaited = false
        /// That wake-up; it holds the exchange, so it is dropped when the exchange ends.
        var notify: (@Sendable () -> Void)?
    }

    var upstream: UpstreamHandler?
    var hostIndex = -1
    /// Hosts that failed for this request (connect refused, timed out). Empty, and allocation-free, on the
    /// common path.
    var triedHosts = Set<Int>()
    /// Retries made (`retries` policy); a same-host reconnect after a stale pooled connection is not one.
    var retries = 0
    var holdsRetrySlot = false
    var countedInBudget = false
    /// The host whose in-flight count this request holds.
    var countedHost: HostState?
    /// For `consistent_hash`.
    var hashKey: UInt64 = 0
    /// The host a sticky cookie asked for.
    var stickyHost: Int?
    /// A `Set-Cookie` to add to the response (sticky sessions).
    var setStickyCookie: String?
    /// Holds one of the cluster's `max_requests` slots.
    var holdsRequestSlot = false
    /// Waiting in the worker's queue for a connection (circuit breaking), until `queueDeadline`.
    var isQueued = false
    var queueDeadline: NIODeadline?
    weak var owner: ProxyHandler?

    /// Leaves the connection queue, giving back the pending slot (idempotent).
    func leaveQueue() {
        guard self.isQueued else { return }
        self.isQueued = false
        self.clusterState?.cluster.breaker.releasePending()
    }
    var attempts = 0
    var usedReusedConnection = false
    /// Request parts that arrived before the upstream connection was ready. They are also what a retry resends,
    /// so they are kept until the response starts (bounded by the one read batch that can arrive while reads
    /// are paused). The end of the request is not kept here (the handler's `ExchangeStateMachine` knows it). An array, not a `CircularBuffer`:
    /// most requests have no body, and an empty array costs no allocation.
    var pendingBody: [HTTPServerRequestPart] = []
    var bodyPartsSentUpstream = 0
    var requestBodyBytes = 0
    var requestSentUpstreamAt: NIODeadline?
    /// When the last of the request body went upstream (for the host's latency).
    var requestBodySentAt: NIODeadline?

    /// The route or listener has response body filters (set with the route).
    var hasBodyFilters = false
    /// Body went through the body filters since their last pause (`ResponseBodyEvent.pause`).
    var bodyFiltersOwePause = false
    var status = 0
    var responseBodyBytes = 0
    var upstreamKeepAlive = true
    var error: ProxyError?
    var logged = false
    /// gRPC status fields of a trailers-only upstream response, sent downstream as trailers.
    var trailersFromHead: HTTPHeaders?
    /// The end of an answer given before this request ended (`ResponseEndAction.keepAlive(complete: false)`): a
    /// connection told to close meanwhile closes, or lingers, once it has gone out (`RequestAction.finishAndClose`).
    var answerWritten: EventLoopFuture<Void>?
    /// The `Upgrade` token of a protocol switch forwarded upstream (only `websocket`).
    var upgradeProtocol: String?
    /// The upstream's 101 went downstream; the tunnel starts once the decoder has finished that response.
    var awaitingTunnel = false

    init(head: HTTPRequestHead, now: NIODeadline) {
        self.method = head.method
        self.uri = head.uri
        self.version = head.version
        self.start = now
        switch head.method {
        case .GET, .HEAD, .OPTIONS, .TRACE, .PUT, .DELETE: self.isIdempotent = true
        default: self.isIdempotent = false
        }
        self.requestHasBody = head.headers.contains(name: "content-length") || head.headers.contains(name: "transfer-encoding")
    }

    /// Ends this request's claim on its host's in-flight count (idempotent).
    func releaseHost() {
        if let h = self.countedHost {
            h.requestFinished()
            self.countedHost = nil
        }
    }

    /// Ends this request's part in its cluster's retry budget (idempotent).
    func finishBudget() {
        guard let cluster = self.clusterState?.cluster else { return }
        self.leaveQueue()
        if self.holdsRequestSlot {
            cluster.breaker.releaseRequest()
            self.holdsRequestSlot = false
        }
        if self.holdsRetrySlot {
            cluster.retryBudget.retryFinished()
            self.holdsRetrySlot = false
        }
        if self.countedInBudget {
            cluster.retryBudget.requestFinished()
            self.countedInBudget = false
        }
    }

    var routeName: String? { self.route?.name }
    var clusterName: String? { self.clusterState?.cluster.name }
    var upstreamAuthority: String? {
        guard let cs = self.clusterState, self.hostIndex >= 0 else { return nil }
        return cs.cluster.hosts[self.hostIndex].authority
    }
}
