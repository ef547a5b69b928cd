//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Crypto
public import NIOCore
public import NIOHTTP1

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A route's `cache` (RFC 9111 shared cache, ARCHITECTURE §3 phase 4): answers from `CacheStore` what
/// `CachePolicy` allows, revalidates what is stale, stores what comes back storable, collapses concurrent misses,
/// invalidates after unsafe methods, and says what it did in `Cache-Status` (RFC 9211).
///
/// Runs on the request's EventLoop. A hit is answered in `requestHead` with the stored body (a reference: no
/// copy, no upstream). A miss streams to its client as it arrives and is copied once into the store. The store's
/// shard lock is held only for a lookup or an insert.
///
/// It comes before compression in a route's chain, so it stores the origin's representation and every
/// response, stored or not, is compressed on the way out in the same way.
public struct CacheFilter: ProxyFilter {
    public let store: CacheStore
    public let policy: CachePolicy
    let keyQuery: Bool
    let keyHeaders: [String]
    let keyCookies: [String]
    let lockTimeout: TimeAmount
    let purgeAllow: [CIDR]
    let statusKey: Bool
    /// Seconds since the epoch (a parameter so tests can move time).
    let clock: @Sendable () -> Int64
    /// The route's cluster, where `stale-while-revalidate` refreshes go (nil: none are made).
    let cluster: String?
    /// POST requests with a body up to this are cached too (`post`); nil: never.
    let postMaxBody: Int?

    public var phases: FilterPhases {
        // Subrequests for the stale-while-revalidate refresh, when the route has a cluster to ask.
        let all: FilterPhases = [.requestHead, .upstreamRequestHead, .responseHead, .responseBody, .upstreamFailure, .log]
        return self.cluster == nil ? all : all.union(.subrequests)
    }

    public init(store: CacheStore, config: CacheConfig, cluster: String? = nil, clock: @escaping @Sendable () -> Int64 = CacheFilter.wallClock) {
        self.cluster = cluster
        self.postMaxBody = config.post.map { $0.maxBody?.bytes ?? 64 * 1024 }
        self.store = store
        self.policy = CachePolicy(
            heuristicMax: (config.heuristicMax?.nanoseconds).map { $0 / 1_000_000_000 } ?? 86400,
            storeSetCookie: config.storeSetCookie ?? false)
        self.keyQuery = config.key?.query ?? true
        self.keyHeaders = (config.key?.headers ?? []).map { $0.lowercased() }
        self.keyCookies = config.key?.cookies ?? []
        self.lockTimeout = .nanoseconds(config.lockTimeout?.nanoseconds ?? 5_000_000_000)
        self.purgeAllow = (config.purgeAllow ?? []).compactMap(CIDR.init(parsing:))
        self.statusKey = config.statusKey ?? false
        self.clock = clock
    }

    public static let wallClock: @Sendable () -> Int64 = {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec)
    }

    enum StateKey: RequestContextKey { typealias Value = CacheExchange }

    /// The name in `Cache-Status`.
    static let cacheName = "Portico"
    /// Pseudo-field in a stored response's `varyFields` standing for the configured key fields and cookies.
    static let keyField = "\u{1}key"

    // MARK: Request

    public func requestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) -> FilterDecision {
        if head.method.rawValue == "PURGE" && !self.purgeAllow.isEmpty {
            return self.purge(head, context)
        }
        let state: CacheExchange
        switch head.method {
        case .GET, .HEAD:
            state = CacheExchange(key: self.primaryKey(head.uri, context), extraKey: self.extraKey(head.headers), head: head)
        case .OPTIONS, .TRACE:
            return .proceed
        case .POST where self.postMaxBody != nil:
            if let decision = self.postLookup(head, &context) { return decision }
            fallthrough
        default:
            // An unsafe method: forwarded, and a success invalidates what is stored for its target (RFC 9111 §4.4).
            state = CacheExchange(key: self.primaryKey(head.uri, context), extraKey: "", head: head)
            state.mode = .invalidate
            state.outcome = .bypass
            state.status = "fwd=method"
        }
        context[StateKey.self] = state
        guard state.mode != .invalidate else { return .proceed }
        let decision = self.lookup(state, eventLoop: context.eventLoop, mayWait: head.method == .GET && self.lockTimeout.nanoseconds > 0)
        if let stale = state.refresh {
            state.refresh = nil
            self.refreshInBackground(stale, head: head, context)
        } else if case .suspend(let future) = decision {
            // Read back from disk first: the stale answer it may give is refreshed all the same.
            let (head, context) = (head, context)
            return .suspend(future.map { decision in
                if let stale = state.refresh {
                    state.refresh = nil
                    self.refreshInBackground(stale, head: head, context)
                }
                return decision
            })
        }
        return decision
    }

    /// `post`: a POST with a known, small body is looked up by its URL and a digest of its body, once the body is
    /// read; nil when it goes uncached (too big, or of unknown length).
    private func postLookup(_ head: HTTPRequestHead, _ context: inout RequestContext) -> FilterDecision? {
        guard let max = self.postMaxBody, let length = head.headers.first(name: "content-length").flatMap({ Int($0) }), length <= max,
              !head.headers.contains(name: "transfer-encoding")
        else { return nil }
        let uriKey = self.primaryKey(head.uri, context)
        let state = CacheExchange(key: uriKey, extraKey: self.extraKey(head.headers), head: head)
        state.uriKey = uriKey
        context[StateKey.self] = state
        let loop = context.eventLoop
        return .needBody(maxBytes: max) { body in
            // The body is part of the key: a digest, so a long body is not kept as a key and bodies cannot collide.
            state.key = uriKey + "\u{0}POST\u{0}" + hexString(SHA256.hash(data: Array(body.readableBytesView)))
            return self.lookup(state, eventLoop: loop, mayWait: self.lockTimeout.nanoseconds > 0)
        }
    }

    /// Answers from the store when a stored response may be used; otherwise marks the request a miss or a
    /// revalidation. `mayWait`: a miss joins a fetch of the same key in progress (request collapsing).
    private func lookup(_ state: CacheExchange, eventLoop: (any EventLoop)?, mayWait: Bool) -> FilterDecision {
        let variants = self.store.lookup(state.key)
        if variants.isEmpty, !state.diskChecked, let loop = eventLoop, let load = self.store.loadFromDisk(state.key, eventLoop: loop) {
            // Not in memory but on disk: read back (off the EventLoop), then looked up again.
            state.diskChecked = true
            return .suspend(load.map { self.lookup(state, eventLoop: loop, mayWait: mayWait) })
        }
        let now = self.clock()
        if let stored = variants.first(where: { self.matches($0, state) }) {
            switch self.policy.use(stored, request: state.requestControl, now: now) {
            case .fresh, .staleAccepted, .staleWhileRevalidate:
                let age = max(0, stored.currentAge(now: now))
                state.mode = .local
                state.outcome = .hit
                state.status = "hit; ttl=\(stored.freshnessLifetime - age)"
                if case .staleWhileRevalidate = self.policy.use(stored, request: state.requestControl, now: now) {
                    // RFC 5861 §3: served stale now, refreshed in the background (once, whoever else asks).
                    state.status += "; detail=stale-while-revalidate"
                    if state.method == .GET { state.refresh = stored }
                } else if state.diskChecked {
                    state.status += "; detail=disk"
                }
                return .respond(self.answer(stored, state, age: age))
            case .validate:
                if state.requestControl.onlyIfCached { return self.onlyIfCachedMiss(state) }
                state.stored = stored
                state.mode = .revalidate
                state.outcome = .revalidated
                state.status = state.requestControl.noCache || state.requestControl.maxAge != nil || state.requestControl.minFresh != nil
                    ? "fwd=request" : "fwd=stale"
                return .proceed
            }
        }
        if state.requestControl.onlyIfCached { return self.onlyIfCachedMiss(state) }
        state.mode = .miss
        state.outcome = .miss
        state.status = variants.isEmpty ? "fwd=uri-miss" : "fwd=vary-miss"
        guard mayWait, let loop = eventLoop else { return .proceed }
        let role = self.store.fillOrWait(state.key) { event in
            // Called from the leader's thread: decided on this request's loop.
            loop.execute {
                guard state.isWaiting else { return }  // it answered, or gave up waiting and went upstream
                switch event {
                case .streaming(let fill):
                    // The leader's response streams in: answer with it now if it fits this request.
                    if let answer = self.streamedAnswer(fill, state) { state.wake(.respond(answer), collapsed: false) }
                case .done:
                    state.wake(self.lookup(state, eventLoop: loop, mayWait: false), collapsed: true)
                }
            }
        }
        switch role {
        case .leader:
            state.leader = true
            return .proceed
        case .streaming(let fill):
            // Answered now, it never waits (no promise): the fill's later events find nothing to wake.
            if let answer = self.streamedAnswer(fill, state) { return .respond(answer) }
            fallthrough
        case .waiting:
            let promise = loop.makePromise(of: FilterDecision.self)
            state.promise = promise
            // The leader is slow: go upstream alone (nginx `proxy_cache_lock_timeout`).
            state.timeout = loop.scheduleTask(in: self.lockTimeout) { state.wake(.proceed, collapsed: false) }
            return .suspend(promise.futureResult)
        }
    }

    /// A collapsed request's answer from the leader's response while it streams in (RFC 9111 §4: it is the
    /// response the cache is storing): for a GET (or cached POST) of the same variant that may use it as it is
    /// fresh. A conditional request it satisfies gets its 304 at once; a `Range` request, or one whose directives
    /// do not accept it, waits for the stored whole instead (nil).
    private func streamedAnswer(_ fill: CacheFillStream, _ state: CacheExchange) -> FilterResponse? {
        let stored = fill.response
        guard state.method == .GET || state.uriKey != nil, self.matches(stored, state), !state.requestHeaders.contains(name: "range")
        else { return nil }
        let now = self.clock()
        switch self.policy.use(stored, request: state.requestControl, now: now) {
        case .fresh, .staleAccepted: break
        case .staleWhileRevalidate, .validate: return nil
        }
        state.mode = .local
        state.outcome = .hit
        state.status += "; collapsed"  // RFC 9211 §2.7
        let age = max(0, stored.currentAge(now: now))
        if CachePolicy.notModified(stored, request: state.requestHeaders) { return self.answer(stored, state, age: age) }
        var headers = stored.headers
        headers.replaceOrAdd(name: "Age", value: String(age))
        var answer = FilterResponse(status: stored.status, headers: headers)
        answer.bodyStream = fill.body
        return answer
    }

    /// Asks the route's cluster for `stale` again, with its validators, through the worker's pools
    /// (`RequestContext.subrequests`), with no client waiting; a 304 freshens it and a storable answer replaces
    /// it. At most one refresh of a key runs at a time (the store's fill lock); misses of the key wait for it.
    private func refreshInBackground(_ stale: CachedResponse, head: HTTPRequestHead, _ context: RequestContext) {
        guard let cluster = self.cluster, let client = context.subrequests, let loop = context.eventLoop,
              self.store.beginRefresh(self.primaryKey(head.uri, context))
        else { return }
        let key = self.primaryKey(head.uri, context)
        var ask = HTTPRequestHead(version: .http1_1, method: .GET, uri: head.uri, headers: context.requestHeaders)
        HopByHopHeaders.strip(&ask.headers)
        for name in ["if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range", "range", "content-length", "expect"] {
            ask.headers.remove(name: name)
        }
        if let etag = stale.etag { ask.headers.add(name: "If-None-Match", value: etag) }
        if let lm = stale.lastModified { ask.headers.add(name: "If-Modified-Since", value: lm) }
        let requestTime = self.clock()
        let state = CacheExchange(key: key, extraKey: self.extraKey(head.headers), head: head)
        client.send(cluster: cluster, head: ask, body: nil, timeout: .seconds(30), maxBodyBytes: self.store.maxObjectBytes + 1, eventLoop: loop)
            .whenComplete { result in
                defer { self.store.finishFill(key) }
                guard case .success(let answer) = result else { return }
                let now = self.clock()
                let status = Int(answer.head.status.code)
                if status == 304 {
                    self.store.insert(key, self.policy.freshen(stale, with: answer.head.headers, requestTime: requestTime, responseTime: now))
                } else if answer.body.readableBytes <= self.store.maxObjectBytes,
                          let fresh = self.storable(status: status, headers: answer.head.headers, body: answer.body, state, requestTime: requestTime, now: now)
                {
                    self.store.insert(key, fresh)
                }
            }
    }

    /// A complete response as the store keeps it, if RFC 9111 lets it be stored (the background refresh's path;
    /// a response to a client is stored as it streams, in `responseHead` and `responseBody`).
    private func storable(status: Int, headers: HTTPHeaders, body: ByteBuffer, _ state: CacheExchange, requestTime: Int64, now: Int64) -> CachedResponse? {
        var headers = headers
        HopByHopHeaders.strip(&headers)
        headers.remove(name: "content-length")
        headers.remove(name: "transfer-encoding")
        var targeted = HTTPHeaders()
        for name in CachePolicy.targetedFields where headers.contains(name: name) {
            for value in headers[name] { targeted.add(name: name, value: value) }
            headers.remove(name: name)
        }
        let tags = Self.tags(headers)
        for name in Self.tagFields { headers.remove(name: name) }
        var all = headers
        all.add(contentsOf: targeted)
        guard case .store(let lifetime, let control) = self.policy.storability(request: state.requestHeaders, status: status, response: all, responseTime: now)
        else { return nil }
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        let varyFields = CachePolicy.varyFields(headers)
        var fields = varyFields, values = CachePolicy.varyValues(varyFields, request: state.requestHeaders)
        if !state.extraKey.isEmpty {
            fields.insert(Self.keyField, at: 0)
            values.insert(state.extraKey, at: 0)
        }
        return CachedResponse(
            status: status, headers: headers, targetedFields: targeted, body: body, requestTime: requestTime, responseTime: now,
            freshnessLifetime: lifetime, control: control, varyFields: fields, varyValues: values, tags: tags)
    }

    private func onlyIfCachedMiss(_ state: CacheExchange) -> FilterDecision {
        // RFC 9111 §5.2.1.7: nothing stored that may be used, and the client forbids going upstream.
        state.mode = .local
        state.status = "fwd=miss; detail=only-if-cached"
        return .respond(FilterResponse(status: 504, headers: ["Content-Type": "text/plain; charset=utf-8"], text: "504 Gateway Timeout\n"))
    }

    /// The response a stored one gives this request: 304 for a conditional request it satisfies (RFC 9110 §13),
    /// 206 or 416 for one byte range (§14), else itself. With `Age` (RFC 9111 §5.1).
    private func answer(_ stored: CachedResponse, _ state: CacheExchange, age: Int64) -> FilterResponse {
        if CachePolicy.notModified(stored, request: state.requestHeaders) {
            var headers = HTTPHeaders()
            for name in CachePolicy.notModifiedFields { for value in stored.headers[name] { headers.add(name: name, value: value) } }
            headers.add(name: "Age", value: String(age))
            return FilterResponse(status: 304, headers: headers)
        }
        var headers = stored.headers
        headers.replaceOrAdd(name: "Age", value: String(age))
        guard state.method == .GET else { return FilterResponse(status: stored.status, headers: headers, body: stored.body) }
        switch CachePolicy.range(stored, request: state.requestHeaders) {
        case .full:
            if stored.status == 200 && !headers.contains(name: "accept-ranges") { headers.add(name: "Accept-Ranges", value: "bytes") }
            return FilterResponse(status: stored.status, headers: headers, body: stored.body)
        case .partial(let lower, let upper):
            headers.replaceOrAdd(name: "Content-Range", value: "bytes \(lower)-\(upper)/\(stored.body.readableBytes)")
            let part = stored.body.getSlice(at: stored.body.readerIndex + lower, length: upper - lower + 1) ?? ByteBuffer()
            return FilterResponse(status: 206, headers: headers, body: part)
        case .unsatisfiable:
            headers.replaceOrAdd(name: "Content-Range", value: "bytes */\(stored.body.readableBytes)")
            headers.remove(name: "content-type")
            return FilterResponse(status: 416, headers: headers)
        }
    }

    /// Whether a stored variant was stored for a request like this one (`Vary`, §4.1, and the configured key
    /// fields).
    private func matches(_ stored: CachedResponse, _ state: CacheExchange) -> Bool {
        guard !stored.varyFields.isEmpty else { return true }
        var fields = stored.varyFields[...]
        var values = stored.varyValues[...]
        if fields.first == Self.keyField {
            guard values.first == state.extraKey else { return false }
            fields = fields.dropFirst()
            values = values.dropFirst()
        }
        return CachePolicy.varyValues(Array(fields), request: state.requestHeaders)[...] == values
    }

    public func upstreamRequestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) {
        guard let state = context[StateKey.self] else { return }
        state.requestTime = self.clock()
        guard state.mode == .revalidate, let stored = state.stored, stored.etag != nil || stored.lastModified != nil else { return }
        // The cache's own validators (§4.3.1); the client's conditionals are answered from the result.
        for name in ["if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range", "range"] {
            head.headers.remove(name: name)
        }
        if let etag = stored.etag { head.headers.add(name: "If-None-Match", value: etag) }
        if let lm = stored.lastModified { head.headers.add(name: "If-Modified-Since", value: lm) }
    }

    // MARK: Response

    public func responseHead(_ head: inout HTTPResponseHead, _ context: inout RequestContext) {
        guard let state = context[StateKey.self] else { return }
        defer {
            head.headers.add(name: "Cache-Status", value: self.cacheStatus(state))
            context.cacheOutcome = state.outcome
        }
        guard state.mode != .local else { return }
        let now = self.clock()
        let status = Int(head.status.code)
        // Fields for this cache only (RFC 9213 targeted fields, tags) never reach the client.
        var targeted = HTTPHeaders()
        for name in CachePolicy.targetedFields where head.headers.contains(name: name) {
            for value in head.headers[name] { targeted.add(name: name, value: value) }
            head.headers.remove(name: name)
        }
        let tags = Self.tags(head.headers)
        for name in Self.tagFields { head.headers.remove(name: name) }

        switch state.mode {
        case .invalidate:
            if (200..<400).contains(status) { self.invalidate(state.key, head.headers, context) }
            return
        case .revalidate:
            if let stored = state.stored, status == 304, let etag = head.headers.first(name: "etag"), let storedTag = stored.etag,
                !CachePolicy.weakEqual(etag, storedTag)
            {
                // A 304 for another representation (RFC 9111 §4.3.4): the stored one is not it; dropped, and the
                // origin's answer passes on.
                self.store.remove(state.key)
                state.status += "; fwd-status=304; detail=validator-changed"
                return self.finishLeading(state)
            }
            if let stored = state.stored, status == 304 {
                var all = head.headers
                all.add(contentsOf: targeted)
                let fresh = self.policy.freshen(stored, with: all, requestTime: state.requestTime, responseTime: now)
                self.store.insert(state.key, fresh)
                state.status += "; fwd-status=304"
                return self.replace(&head, with: fresh, state, now: now)
            }
            if let stored = state.stored, status >= 500, self.policy.mayServeOnError(stored, request: state.requestControl, now: now) {
                state.status += "; fwd-status=\(status); detail=stale-if-error"
                state.outcome = .staleOnError
                return self.replace(&head, with: stored, state, now: now)
            }
        default:
            break
        }
        if let uriKey = state.uriKey, (200..<400).contains(status) {
            // A POST still changes its target (RFC 9111 §4.4): what is stored for the URL's GETs goes.
            self.invalidate(uriKey, head.headers, context)
        }
        guard state.method == .GET || state.uriKey != nil else { return self.finishLeading(state) }
        var all = head.headers
        all.add(contentsOf: targeted)
        if state.uriKey != nil, case let (control, targeted) = CachePolicy.effectiveControl(all),
           self.policy.explicitLifetime(control, targeted: targeted, response: all, responseTime: now) == nil {
            state.status += "; detail=\"POST without explicit freshness\""
            return self.finishLeading(state)
        }
        switch self.policy.storability(request: state.requestHeaders, status: status, response: all, responseTime: now) {
        case .store(let lifetime, let control):
            let length = head.headers.first(name: "content-length").flatMap { Int($0) }
            if let length, length > self.store.maxObjectBytes {
                state.status += "; detail=too-large"
                return self.finishLeading(state)
            }
            let varyFields = CachePolicy.varyFields(head.headers)
            var fields = varyFields, values = CachePolicy.varyValues(varyFields, request: state.requestHeaders)
            if !state.extraKey.isEmpty {
                fields.insert(Self.keyField, at: 0)
                values.insert(state.extraKey, at: 0)
            }
            state.fill = CacheExchange.Fill(
                status: status, headers: head.headers, targeted: targeted, lifetime: lifetime, control: control,
                varyFields: fields, varyValues: values, tags: tags, body: ByteBuffer(), responseTime: now)
            if length != nil, state.leader {
                // Requests collapsed on this one answer with the body as it arrives (bounded: the length is within
                // the object limit); they see the stored form, fields and freshness, now.
                let stream = ResponseBodyStream()
                state.fill!.stream = stream
                // Read to its end whatever this request's client does: the others depend on it.
                context.completesUpstreamResponse = true
                self.store.publishStream(state.key, CacheFillStream(response: state.fill!.response(body: ByteBuffer(), requestTime: state.requestTime), body: stream))
            } else if let length {
                state.fill!.body.reserveCapacity(length)
            }
            state.status += "; stored"
        case .refuse(let reason):
            state.status += "; detail=\"\(reason)\""
            self.finishLeading(state)
        }
    }

    /// The upstream's response is replaced by a stored one (after a 304, or stale on error): its head now, its
    /// body at the end (`responseBody`), the upstream's own body dropped.
    private func replace(_ head: inout HTTPResponseHead, with stored: CachedResponse, _ state: CacheExchange, now: Int64) {
        let answer = self.answer(stored, state, age: max(0, stored.currentAge(now: now)))
        head.status = HTTPResponseStatus(statusCode: answer.status)
        head.headers = answer.headers
        let bodyless = state.method == .HEAD || answer.status == 304
        if answer.status != 304 { head.headers.replaceOrAdd(name: "Content-Length", value: String(answer.body.readableBytes)) }
        state.replacementBody = bodyless ? ByteBuffer() : answer.body
        self.finishLeading(state)
    }

    public func responseBody(_ chunk: inout ByteBuffer, _ event: ResponseBodyEvent, _ context: inout RequestContext) {
        guard let state = context[StateKey.self] else { return }
        if let replacement = state.replacementBody {
            // The upstream's body (a 304 has none; an error page) is not the client's.
            chunk.moveReaderIndex(to: chunk.writerIndex)
            if event == .end {
                chunk = replacement
                state.replacementBody = nil
            }
            return
        }
        guard state.fill != nil else { return }
        switch event {
        case .data:
            if let stream = state.fill!.stream {
                // A copy per part (the decoder's buffers are larger than the parts they hold), shared by the requests
                // streaming it; the store gets them joined at the end.
                var part = ByteBufferAllocator().buffer(capacity: chunk.readableBytes)
                part.writeImmutableBuffer(chunk)
                stream.append(part)
            } else if state.fill!.body.readableBytes + chunk.readableBytes + 1024 > self.store.maxObjectBytes {
                state.fill = nil
                self.finishLeading(state)
            } else {
                // The one copy of a stored body: the decoder's buffers are larger than the parts they hold.
                state.fill!.body.writeImmutableBuffer(chunk)
            }
        case .pause:
            break
        case .end:
            let f = state.fill!
            state.fill = nil
            f.stream?.finish()
            self.store.insert(state.key, f.response(body: f.stream?.joined() ?? f.body, requestTime: state.requestTime))
            self.finishLeading(state)
        }
    }

    /// RFC 5861 §4: the origin could not be reached to revalidate; a stale response within `stale-if-error`
    /// answers instead of the error (never one that must be revalidated, RFC 9111 §5.2.2.2).
    public func upstreamFailure(status: Int, _ context: inout RequestContext) -> FilterResponse? {
        guard let state = context[StateKey.self], state.mode == .revalidate, let stored = state.stored else { return nil }
        let now = self.clock()
        guard self.policy.mayServeOnError(stored, request: state.requestControl, now: now) else { return nil }
        state.mode = .local
        state.outcome = .staleOnError
        state.status += "; fwd-status=\(status); detail=stale-if-error"
        return self.answer(stored, state, age: max(0, stored.currentAge(now: now)))
    }

    public func log(_ context: RequestContext) {
        // Whatever happened (a failed upstream, a client gone), waiters must not wait for this one any longer.
        if let state = context[StateKey.self] { self.finishLeading(state) }
    }

    private func finishLeading(_ state: CacheExchange) {
        // A body that will not be complete (the upstream or the client went mid-body): requests streaming it
        // fail too, never end short.
        state.fill?.stream?.fail()
        guard state.leader else { return }
        state.leader = false
        self.store.finishFill(state.key)
    }

    // MARK: Keys, invalidation, purge

    /// `scheme://host/path?query`: the target of the request (RFC 9111 §2), host lowercased.
    func primaryKey(_ uri: String, _ context: RequestContext) -> String {
        var target = Substring(uri)
        if !target.hasPrefix("/"), let r = target.firstRange(of: "://") {
            let rest = target[r.upperBound...]
            target = rest.firstIndex(where: { $0 == "/" || $0 == "?" }).map { rest[$0...] } ?? "/"
        }
        if !self.keyQuery, let q = target.firstIndex(of: "?") { target = target[..<q] }
        return "\(context.scheme)://\((context.host ?? "").lowercased())\(target)"
    }

    /// The configured key fields and cookies of a request, as one string.
    func extraKey(_ headers: HTTPHeaders) -> String {
        guard !self.keyHeaders.isEmpty || !self.keyCookies.isEmpty else { return "" }
        var out = ""
        for name in self.keyHeaders { out += name + "=" + headers[name].joined(separator: ",") + "\n" }
        if !self.keyCookies.isEmpty {
            for name in self.keyCookies {
                out += "cookie:" + name + "=" + (headers.cookie(name) ?? "") + "\n"
            }
        }
        return out
    }

    /// RFC 9111 §4.4: the target URI, and `Location` / `Content-Location` when they are on the same origin.
    private func invalidate(_ key: String, _ response: HTTPHeaders, _ context: RequestContext) {
        self.store.remove(key)
        let origin = "\(context.scheme)://\((context.host ?? "").lowercased())"
        for name in ["location", "content-location"] {
            guard let value = response.first(name: name) else { continue }
            if value.hasPrefix("/") {
                self.store.remove(self.primaryKey(value, context))
            } else if value.lowercased().hasPrefix(origin + "/") || value.lowercased() == origin {
                self.store.remove(self.primaryKey(value, context))
            }
        }
    }

    /// `PURGE` from an allowed address: the URL's stored responses, or with `Surrogate-Key` / `Cache-Tag` request
    /// fields, every response with one of those tags.
    private func purge(_ head: HTTPRequestHead, _ context: RequestContext) -> FilterDecision {
        guard let ip = IPAddressBytes(context.clientIP), self.purgeAllow.contains(where: { $0.contains(ip) }) else {
            return .respond(FilterResponse(status: 403, headers: ["Content-Type": "text/plain; charset=utf-8"], text: "403 Forbidden\n"))
        }
        let tags = Self.tags(head.headers)
        let count = tags.isEmpty ? self.store.remove(self.primaryKey(head.uri, context)) : tags.reduce(0) { $0 + self.store.purge(tag: $1) }
        return .respond(FilterResponse(status: count > 0 ? 200 : 404, headers: ["Content-Type": "text/plain; charset=utf-8"], text: "purged \(count)\n"))
    }

    /// Fields that tag a response for purging (Fastly's `Surrogate-Key`, Cloudflare's `Cache-Tag`).
    static let tagFields = ["surrogate-key", "cache-tag"]

    /// The tags those fields list (space- or comma-separated).
    static func tags(_ headers: HTTPHeaders) -> [String] {
        Self.tagFields.flatMap { name in headers[name].flatMap { $0.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init) } }
    }

    /// RFC 9211: `Portico; hit; ttl=…` or `Portico; fwd=…; …`, and the key when configured.
    private func cacheStatus(_ state: CacheExchange) -> String {
        var value = Self.cacheName + "; " + state.status
        if self.statusKey {
            value += "; key=\"" + state.key.replacingAll("\\", "\\\\").replacingAll("\"", "\\\"") + "\""
        }
        return value
    }
}

/// One request's cache state, kept in its `RequestContext` from `requestHead` to `log`. Used only on the
/// request's EventLoop (hence `@unchecked Sendable`): the collapsing wake-up hops there before touching it.
final class CacheExchange: @unchecked Sendable {
    enum Mode {
        /// A miss (or a waiter that gave up waiting): stored if storable.
        case miss
        /// Stale or `no-cache`: validated with the origin; a 304 freshens `stored`.
        case revalidate
        /// An unsafe method: a success invalidates.
        case invalidate
        /// Answered by the cache itself (a hit, a 504 for `only-if-cached`).
        case local
    }

    struct Fill {
        var status: Int
        var headers: HTTPHeaders
        var targeted: HTTPHeaders
        var lifetime: Int64
        var control: CacheControl
        var varyFields: [String]
        var varyValues: [String]
        var tags: [String]
        var body: ByteBuffer
        var responseTime: Int64
        /// The body as it arrives, when collapsed requests may stream it (`CacheStore.publishStream`).
        var stream: ResponseBodyStream?

        func response(body: ByteBuffer, requestTime: Int64) -> CachedResponse {
            CachedResponse(
                status: self.status, headers: self.headers, targetedFields: self.targeted, body: body, requestTime: requestTime,
                responseTime: self.responseTime, freshnessLifetime: self.lifetime, control: self.control, varyFields: self.varyFields,
                varyValues: self.varyValues, tags: self.tags)
        }
    }

    var key: String
    let extraKey: String
    let method: HTTPMethod
    let requestHeaders: HTTPHeaders
    let requestControl: CacheControl
    var mode = Mode.miss
    var outcome = CacheOutcome.miss
    /// `Cache-Status` parameters after the cache's name.
    var status = ""
    var stored: CachedResponse?
    var requestTime: Int64 = 0
    /// This request fetches the key for others waiting (`CacheStore.fillOrWait`).
    var leader = false
    var fill: Fill?
    /// The body sent instead of the upstream's (a stored response after a 304, or stale on error).
    var replacementBody: ByteBuffer?
    /// A collapsed request waits on this until the leader is done or the lock times out.
    var promise: EventLoopPromise<FilterDecision>?
    /// The collapsed wait's timeout, cancelled when the leader wakes it first.
    var timeout: Scheduled<Void>?
    private var woken = false
    var isWaiting: Bool { !self.woken && self.promise != nil }

    /// The disk tier was asked for the key already (it is asked once per request).
    var diskChecked = false
    /// A stale response served under `stale-while-revalidate`, to refresh after the answer (set by `lookup`).
    var refresh: CachedResponse?
    /// A cached POST: the URL's own key (its GETs' responses are invalidated by a successful POST); `key` has the
    /// body's digest too.
    var uriKey: String?

    init(key: String, extraKey: String, head: HTTPRequestHead) {
        self.key = key
        self.extraKey = extraKey
        self.method = head.method
        self.requestHeaders = head.headers
        self.requestControl = CachePolicy.requestControl(head.headers)
    }

    /// Ends the wait of a collapsed request, once (the leader's wake-up and the timeout race on its loop).
    func wake(_ decision: FilterDecision, collapsed: Bool) {
        guard !self.woken, let promise = self.promise else { return }
        self.woken = true
        self.timeout?.cancel()
        self.timeout = nil
        if collapsed, case .respond = decision { self.status += "; detail=collapsed" }
        promise.succeed(decision)
    }
}

extension String {
    fileprivate func replacingAll(_ target: String, _ replacement: String) -> String {
        self.split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
