//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore
public import NIOHTTP1

/// One step of the request path (ARCHITECTURE §3), compiled into a `FilterChain` when the config loads.
///
/// Every hook runs on the downstream connection's EventLoop, synchronously: it must not block, and should not
/// allocate per body chunk. A filter that needs asynchronous work (an auth subrequest, a key fetch) returns
/// `.suspend` from `requestHead`; the request waits (reads held, nothing sent upstream) until the future
/// completes, on the same EventLoop.
///
/// Phases, in the order a request meets them (each runs the chain's filters in chain order; see `FilterChain`):
/// 1. `requestHead`: the client's request, after routing. Go on, answer (`.respond`), `.suspend`, or read the
///    body first (`.needBody`).
/// 2. `upstreamRequestHead`: the head about to go upstream, after Portico removed hop-by-hop fields and framed
///    the body. Not run when a filter or the route answered itself.
/// 3. `responseHead`: every response head going downstream: the upstream's (after Portico removed its
///    hop-by-hop fields) and the ones filters and routes answer with. Not run for Portico's own error answers
///    except by listener and global filters (`FilterChain.errorResponseFilters`).
/// 4. `responseBody`: the body going downstream, as events (`ResponseBodyEvent`): each part in order, a pause
///    when the upstream stops sending for now (the end of a read batch), and the end. A filter may change the
///    bytes, hold some back (a compressor), and give them out at a pause or the end. Runs for upstream responses
///    and for the answers of filters and routes (whose whole body is one part, then the end; Portico sets their
///    `Content-Length` after this phase).
/// 5. `upstreamFailure`: the upstream could not answer (no host, connect failure, timeout, reset before the
///    response head). A filter may answer instead of Portico's error page (a cache with a stale response, RFC
///    5861 `stale-if-error`); its answer then goes through the response phases like any filter's.
/// 6. `log`: exactly once per request, after its response ended or failed.
///
/// Headers are NIO's `HTTPHeaders` for now; filters use only `first(name:)`, `contains(name:)`, `add`,
/// `replaceOrAdd`, `remove(name:)` and iteration, which the codec's own field type will keep when it replaces
/// them, so filters written today keep compiling.
///
/// Every hook has a default that does nothing; `phases` says which ones a filter implements, so the chain never
/// calls the others.
public protocol ProxyFilter: Sendable {
    /// The hooks this filter implements.
    var phases: FilterPhases { get }
    func requestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) -> FilterDecision
    func upstreamRequestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext)
    func responseHead(_ head: inout HTTPResponseHead, _ context: inout RequestContext)
    func responseBody(_ chunk: inout ByteBuffer, _ event: ResponseBodyEvent, _ context: inout RequestContext)
    /// `status` is the error Portico would answer with (502, 503, 504).
    func upstreamFailure(status: Int, _ context: inout RequestContext) -> FilterResponse?
    func log(_ context: RequestContext)
}

extension ProxyFilter {
    public func requestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) -> FilterDecision { .proceed }
    public func upstreamRequestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) {}
    public func responseHead(_ head: inout HTTPResponseHead, _ context: inout RequestContext) {}
    public func responseBody(_ chunk: inout ByteBuffer, _ event: ResponseBodyEvent, _ context: inout RequestContext) {}
    public func upstreamFailure(status: Int, _ context: inout RequestContext) -> FilterResponse? { nil }
    public func log(_ context: RequestContext) {}
}

/// Which hooks of a `ProxyFilter` do something.
public struct FilterPhases: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let requestHead = FilterPhases(rawValue: 1 << 0)
    public static let upstreamRequestHead = FilterPhases(rawValue: 1 << 1)
    public static let responseHead = FilterPhases(rawValue: 1 << 2)
    public static let responseBody = FilterPhases(rawValue: 1 << 3)
    public static let log = FilterPhases(rawValue: 1 << 4)
    public static let upstreamFailure = FilterPhases(rawValue: 1 << 5)
    /// Not a hook: the filter makes subrequests, so its requests are given `RequestContext.subrequests` (requests
    /// of other routes are not, and pay nothing for it).
    public static let subrequests = FilterPhases(rawValue: 1 << 6)
}

/// Where the response body is when `responseBody` runs.
public enum ResponseBodyEvent: Sendable, Hashable {
    /// `chunk` is the next part of the body.
    case data
    /// The upstream has nothing more for now (its read batch ended): `chunk` is empty. A filter that holds bytes
    /// back writes them out now, so a slow stream (server-sent events, a long poll) is not kept from the client.
    case pause
    /// The body is complete: `chunk` is empty. A filter writes out whatever it still holds.
    case end
}

/// What `requestHead` decided.
public enum FilterDecision: Sendable {
    /// Go on with the next filter, then the route's action.
    case proceed
    /// Answer the client with this response; the request goes no further (no upstream, no later filter).
    case respond(FilterResponse)
    /// Wait for asynchronous work, then continue with its decision. The future must complete on the
    /// connection's EventLoop (Envoy's StopIteration / continueDecoding).
    case suspend(EventLoopFuture<FilterDecision>)
    /// Read the request body first (at most `maxBytes`; a larger one is answered 413), then continue with what
    /// `then` decides about it. The body still goes upstream afterwards. Runs on the connection's EventLoop.
    case needBody(maxBytes: Int, then: @Sendable (ByteBuffer) -> FilterDecision)
}

/// A response a filter answers with. `Content-Length` is set by Portico, except for a streamed body.
public struct FilterResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: ByteBuffer
    /// A body that arrives later (another request's response as it streams in), sent part by part as it comes,
    /// with the client's backpressure; `body` is then unused. `headers` carry its framing: a `Content-Length`
    /// when known (else the body is chunked, or ends the HTTP/1.0 connection). A stream that fails fails the
    /// response (the connection or HTTP/2 stream closes), never ends it short.
    public var bodyStream: ResponseBodyStream?
    /// Changes to the request's context that come with this answer, applied before the response phases: how a
    /// suspended filter, which has no context at hand when its work completes, records why it answered
    /// (`authFailure`) for logs and metrics.
    public var updateContext: (@Sendable (inout RequestContext) -> Void)?

    public init(status: Int, headers: HTTPHeaders = [:], body: ByteBuffer = ByteBuffer(),
                updateContext: (@Sendable (inout RequestContext) -> Void)? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.updateContext = updateContext
    }

    public init(status: Int, headers: HTTPHeaders = [:], text: String, updateContext: (@Sendable (inout RequestContext) -> Void)? = nil) {
        self.init(status: status, headers: headers, body: ByteBuffer(string: text), updateContext: updateContext)
    }
}
