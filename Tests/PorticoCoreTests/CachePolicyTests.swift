//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOPosix
import NIOHTTP1
import Testing

@testable import PorticoCore

/// RFC 9111 decisions without I/O: directives, dates, storability, freshness and age, use, 304 merging, Vary,
/// conditional and range answers; and the store's budget, variants, tags and collapsing.
@Suite struct CachePolicyTests {
    static let policy = CachePolicy()
    static let now: Int64 = 1_800_000_000

    @Test func cacheControlDirectives() {
        let c = CacheControl(fieldValues: ["public, max-age=60, S-MAXAGE=120", "no-cache=\"Set-Cookie, X-A\", stale-if-error=30, foo=\"a,b\", must-revalidate"])
        #expect(c.isPublic && c.maxAge == 60 && c.sMaxAge == 120 && c.noCache && c.staleIfError == 30 && c.mustRevalidate)
        #expect(!c.noStore && !c.isPrivate)
        // Invalid or repeated values: the restrictive reading (RFC 9111 §4.2.1, §1.2.2).
        #expect(CacheControl(fieldValues: ["max-age=abc"]).maxAge == 0)
        #expect(CacheControl(fieldValues: ["max-age=60, max-age=10"]).maxAge == 10)
        #expect(CacheControl(fieldValues: ["max-age=99999999999999"]).maxAge == 1 << 31)
        #expect(CacheControl(fieldValues: ["max-stale"]).maxStale == Int.max)
        #expect(CacheControl(fieldValues: ["max-stale=5, only-if-cached, min-fresh=3"]) .minFresh == 3)
        #expect(CacheControl(fieldValues: ["private=\"X\""]).isPrivate)
        #expect(CacheControl(fieldValues: [""]).isEmpty)
        #expect(CacheControl(fieldValues: ["max-age = 5"]).maxAge == 5)
    }

    @Test func httpDates() {
        // RFC 9110 §5.6.7: the three formats are the same instant.
        let t: Int64 = 784111777
        #expect(HTTPDate.parse("Sun, 06 Nov 1994 08:49:37 GMT") == t)
        #expect(HTTPDate.parse("Sunday, 06-Nov-94 08:49:37 GMT") == t)
        #expect(HTTPDate.parse("Sun Nov  6 08:49:37 1994") == t)
        #expect(HTTPDate.format(t) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDate.parse(HTTPDate.format(Self.now)) == Self.now)
        for bad in ["0", "-1", "yesterday", "Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT", "",
                    "Sun Nov  6 08:49:37 999999999999", "Sun, 06 Nov 99999 08:49:37 GMT"] {  // no overflow, no trap
            #expect(HTTPDate.parse(bad) == nil, "\(bad)")
        }
    }

    static func stored(_ fields: [(String, String)], status: Int = 200, body: String = "body", requestTime: Int64 = now, responseTime: Int64 = now,
                       request: [(String, String)] = []) -> CachedResponse? {
        let headers = HTTPHeaders(fields)
        guard case .store(let lifetime, let control) = Self.policy.storability(request: HTTPHeaders(request), status: status, response: headers, responseTime: responseTime) else { return nil }
        let vary = CachePolicy.varyFields(headers)
        return CachedResponse(status: status, headers: headers, body: ByteBuffer(string: body), requestTime: requestTime, responseTime: responseTime,
                              freshnessLifetime: lifetime, control: control, varyFields: vary, varyValues: CachePolicy.varyValues(vary, request: HTTPHeaders(request)), tags: [])
    }

    /// §3, §3.5, §5.2.2: what may be stored.
    @Test func storability() {
        func store(_ fields: [(String, String)], status: Int = 200, request: [(String, String)] = []) -> String {
            switch Self.policy.storability(request: HTTPHeaders(request), status: status, response: HTTPHeaders(fields), responseTime: Self.now) {
            case .store(let lifetime, _): return "\(lifetime)"
            case .refuse(let why): return why
            }
        }
        let date = ("Date", HTTPDate.format(Self.now))
        #expect(store([("Cache-Control", "max-age=60")]) == "60")
        #expect(store([("Cache-Control", "max-age=60, s-maxage=5")]) == "5")  // §5.2.2.10: shared caches
        #expect(store([date, ("Expires", HTTPDate.format(Self.now + 300))]) == "300")
        #expect(store([("Cache-Control", "max-age=60"), ("Expires", HTTPDate.format(Self.now + 300))]) == "60")  // §5.3
        #expect(store([date, ("Expires", "0"), ("ETag", "\"a\"")]) == "0")  // invalid Expires: already expired
        #expect(store([date, ("Expires", "0")]) == "stale at once and no validator")
        #expect(store([date, ("Last-Modified", HTTPDate.format(Self.now - 1000))]) == "100")  // §4.2.2: 10 %
        #expect(store([date, ("Last-Modified", HTTPDate.format(Self.now - 100 * 86400))]) == "86400")  // capped
        #expect(store([("Cache-Control", "no-store, max-age=60")]) == "no-store")
        #expect(store([("Cache-Control", "no-store, must-understand, max-age=60")]) == "60")  // §5.2.2.3
        #expect(store([("Cache-Control", "no-store, must-understand, max-age=60")], status: 299) == "no-store")
        #expect(store([("Cache-Control", "private, max-age=60")]) == "private")
        #expect(store([("Cache-Control", "max-age=60")], request: [("Cache-Control", "no-store")]) == "request no-store")
        #expect(store([("Cache-Control", "max-age=60")], request: [("Authorization", "Basic x")]) == "authorization")
        #expect(store([("Cache-Control", "max-age=60, public")], request: [("Authorization", "Basic x")]) == "60")
        #expect(store([("Cache-Control", "s-maxage=60")], request: [("Authorization", "Basic x")]) == "60")
        #expect(store([("Cache-Control", "max-age=60"), ("Set-Cookie", "a=b")]) == "set-cookie")
        #expect(store([("Cache-Control", "max-age=60"), ("Vary", "*")]) == "vary *")
        #expect(store([("Cache-Control", "max-age=60")], status: 206) == "status")
        #expect(store([("Cache-Control", "max-age=60")], status: 304) == "status")
        #expect(store([date, ("Last-Modified", HTTPDate.format(Self.now - 1000))], status: 404) == "100")  // heuristically cacheable
        #expect(store([("ETag", "\"a\"")], status: 302) == "no explicit freshness for status 302")
        #expect(store([("Cache-Control", "max-age=60")], status: 302) == "60")
        #expect(store([("Cache-Control", "public"), ("ETag", "\"a\"")], status: 500) == "0")  // public allows heuristics
        // RFC 9213: a targeted field replaces Cache-Control and Expires; Portico's own first.
        #expect(store([("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=30")]) == "30")
        #expect(store([("Cache-Control", "max-age=60"), ("CDN-Cache-Control", "no-store")]) == "no-store")
        #expect(store([("CDN-Cache-Control", "max-age=30"), ("Portico-Cache-Control", "max-age=5")]) == "5")
        #expect(store([("Cache-Control", "max-age=60"), ("CDN-Cache-Control", "bogus")]) == "60")  // no valid directive: ignored
        #expect(store([("CDN-Cache-Control", "max-age=30"), date, ("Expires", HTTPDate.format(Self.now + 300))]) == "30")
    }

    /// §4.2.3 age: the larger of the apparent age and the corrected Age value, plus the time in the cache.
    @Test func currentAge() throws {
        // The origin says Age 100, its clock says it answered 10 s before we got it, the trip took 2 s.
        let r = try #require(Self.stored([("Cache-Control", "max-age=600"), ("Age", "100"), ("Date", HTTPDate.format(Self.now - 10))], requestTime: Self.now - 2))
        #expect(r.currentAge(now: Self.now) == 102)
        #expect(r.currentAge(now: Self.now + 50) == 152)
        let skewed = try #require(Self.stored([("Cache-Control", "max-age=600"), ("Date", HTTPDate.format(Self.now - 500))]))
        #expect(skewed.currentAge(now: Self.now) == 500)
        // An absurd Age is 2^31 (delta-seconds, §1.2.2): no overflow.
        let absurd = try #require(Self.stored([("Cache-Control", "max-age=600"), ("ETag", "\"x\""), ("Age", "9223372036854775807")]))
        #expect(absurd.currentAge(now: Int64.max / 4) > 0)
    }

    /// §4.2, §5.2.1, §5.2.2, RFC 5861: when a stored response may answer.
    @Test func use() throws {
        func use(_ fields: [(String, String)], request: String = "", at offset: Int64 = 0) throws -> CachePolicy.Use {
            let r = try #require(Self.stored(fields))
            return Self.policy.use(r, request: CacheControl(fieldValues: [request]), now: Self.now + offset)
        }
        let cc = { (v: String) in [("Cache-Control", v), ("ETag", "\"e\"")] }
        #expect(try use(cc("max-age=60"), at: 59) == .fresh)
        #expect(try use(cc("max-age=60"), at: 60) == .validate)
        #expect(try use(cc("max-age=60, no-cache")) == .validate)  // §5.2.2.4
        #expect(try use(cc("max-age=60"), request: "no-cache") == .validate)  // §5.2.1.4
        #expect(try use(cc("max-age=60"), request: "max-age=10", at: 11) == .validate)  // §5.2.1.1
        #expect(try use(cc("max-age=60"), request: "max-age=10", at: 10) == .fresh)
        #expect(try use(cc("max-age=60"), request: "min-fresh=30", at: 31) == .validate)  // §5.2.1.3
        #expect(try use(cc("max-age=60"), request: "max-stale=30", at: 80) == .staleAccepted)  // §5.2.1.2
        #expect(try use(cc("max-age=60"), request: "max-stale=30", at: 91) == .validate)
        #expect(try use(cc("max-age=60"), request: "max-stale", at: 10_000) == .staleAccepted)
        #expect(try use(cc("max-age=60, must-revalidate"), request: "max-stale", at: 61) == .validate)  // §5.2.2.2
        #expect(try use(cc("s-maxage=60"), request: "max-stale", at: 61) == .validate)  // §5.2.2.10
        #expect(try use(cc("max-age=60, stale-while-revalidate=30"), at: 89) == .staleWhileRevalidate)  // RFC 5861 §3
        #expect(try use(cc("max-age=60, stale-while-revalidate=30"), at: 91) == .validate)
        let r = try #require(Self.stored(cc("max-age=60, stale-if-error=30")))
        #expect(Self.policy.mayServeOnError(r, request: CacheControl(), now: Self.now + 89))  // RFC 5861 §4
        #expect(!Self.policy.mayServeOnError(r, request: CacheControl(), now: Self.now + 91))
        #expect(Self.policy.mayServeOnError(r, request: CacheControl(fieldValues: ["stale-if-error=100"]), now: Self.now + 150))
        let strict = try #require(Self.stored(cc("max-age=60, stale-if-error=30, must-revalidate")))
        #expect(!Self.policy.mayServeOnError(strict, request: CacheControl(), now: Self.now + 61))
    }

    /// §4.3.4, §3.2: a 304 replaces stored fields (not Content-Length) and resets the age.
    @Test func freshening() throws {
        let r = try #require(Self.stored([("Cache-Control", "max-age=0"), ("ETag", "\"v1\""), ("Content-Length", "4"), ("X-A", "old"), ("X-B", "kept")]))
        let fresh = Self.policy.freshen(
            r, with: HTTPHeaders([("Cache-Control", "max-age=120"), ("X-A", "new"), ("Content-Length", "0"), ("CDN-Cache-Control", "max-age=30"),
                                  ("Set-Cookie", "session=one-client")]),
            requestTime: Self.now + 100, responseTime: Self.now + 100)
        #expect(fresh.headers["x-a"] == ["new"] && fresh.headers["x-b"] == ["kept"] && fresh.headers["content-length"] == ["4"])
        #expect(fresh.freshnessLifetime == 30)  // the targeted field rules
        #expect(fresh.headers["cdn-cache-control"].isEmpty)
        #expect(fresh.headers["set-cookie"].isEmpty)  // one client's cookie never enters the shared response
        #expect(fresh.currentAge(now: Self.now + 100) == 0)
        #expect(String(buffer: fresh.body) == "body")
        #expect(Self.policy.use(fresh, request: CacheControl(), now: Self.now + 129) == .fresh)
    }

    /// §4.1: Vary values are normalised; order and case matter only where the field says so.
    @Test func varyNormalisation() {
        let fields = ["accept-encoding", "x-tenant"]
        let a = CachePolicy.varyValues(fields, request: HTTPHeaders([("Accept-Encoding", "gzip,  BR;q=0.5"), ("X-Tenant", "A ,B")]))
        let b = CachePolicy.varyValues(fields, request: HTTPHeaders([("accept-encoding", "br ; q=0.5"), ("accept-encoding", "GZIP"), ("x-tenant", "A, B")]))
        #expect(a == b)
        #expect(CachePolicy.varyValues(["x-tenant"], request: HTTPHeaders([("X-Tenant", "B, A")])) != CachePolicy.varyValues(["x-tenant"], request: HTTPHeaders([("X-Tenant", "A, B")])))
        #expect(CachePolicy.varyValues(["x-tenant"], request: [:]) != CachePolicy.varyValues(["x-tenant"], request: HTTPHeaders([("X-Tenant", "")])))
        #expect(CachePolicy.varyFields(HTTPHeaders([("Vary", "Accept-Encoding, Origin")])) == ["accept-encoding", "origin"])
    }

    /// RFC 9110 §13.1: conditional requests answered from a stored response.
    @Test func conditionals() throws {
        let lm = HTTPDate.format(Self.now - 3600)
        let r = try #require(Self.stored([("Cache-Control", "max-age=60"), ("ETag", "W/\"v1\""), ("Last-Modified", lm)]))
        func notModified(_ fields: [(String, String)]) -> Bool { CachePolicy.notModified(r, request: HTTPHeaders(fields)) }
        #expect(notModified([("If-None-Match", "\"v1\"")]))  // weak comparison
        #expect(notModified([("If-None-Match", "\"x\", W/\"v1\"")]))
        #expect(notModified([("If-None-Match", "*")]))
        #expect(!notModified([("If-None-Match", "\"v2\"")]))
        #expect(!notModified([("If-None-Match", "\"v2\""), ("If-Modified-Since", HTTPDate.format(Self.now))]))  // INM wins (§13.2.2)
        #expect(notModified([("If-Modified-Since", lm)]))
        #expect(!notModified([("If-Modified-Since", HTTPDate.format(Self.now - 7200))]))
        #expect(!notModified([]))
        // Only a 2xx answer has preconditions applied (RFC 9110 §13.2.1).
        let missing = try #require(Self.stored([("Cache-Control", "max-age=60"), ("ETag", "\"n\"")], status: 404))
        #expect(!CachePolicy.notModified(missing, request: HTTPHeaders([("If-None-Match", "\"n\"")])))
    }

    /// RFC 9110 §14: one range from a stored 200.
    @Test func ranges() throws {
        let r = try #require(Self.stored([("Cache-Control", "max-age=60"), ("ETag", "\"s\"")], body: "0123456789"))
        func range(_ value: String, ifRange: String? = nil) -> CachePolicy.RangeAnswer {
            var h = HTTPHeaders([("Range", value)])
            if let ifRange { h.add(name: "If-Range", value: ifRange) }
            return CachePolicy.range(r, request: h)
        }
        #expect(range("bytes=0-3") == .partial(lower: 0, upper: 3))
        #expect(range("bytes=7-") == .partial(lower: 7, upper: 9))
        #expect(range("bytes=-3") == .partial(lower: 7, upper: 9))
        #expect(range("bytes=5-100") == .partial(lower: 5, upper: 9))
        #expect(range("bytes=10-") == .unsatisfiable)
        #expect(range("bytes=-0") == .unsatisfiable)
        #expect(range("bytes=0-1,4-5") == .full)  // several ranges: the whole response
        #expect(range("items=0-1") == .full)
        #expect(range("bytes=5-2") == .full)  // invalid: ignored
        #expect(range("bytes=0-3", ifRange: "\"s\"") == .partial(lower: 0, upper: 3))
        #expect(range("bytes=0-3", ifRange: "\"other\"") == .full)
        #expect(range("bytes=0-3", ifRange: "W/\"s\"") == .full)  // If-Range needs a strong match
    }

    /// The store: a byte budget with least-recently-used eviction, variants per key, tags, collapsing.
    @Test func storeBudgetVariantsTagsAndFills() throws {
        // One shard (its budget holds four of the largest objects), so eviction order is exact.
        let store = CacheStore(maxBytes: 1 << 20, maxObjectBytes: 256 << 10)
        func response(_ size: Int, vary: [String] = [], tags: [String] = []) -> CachedResponse {
            CachedResponse(status: 200, headers: [:], body: ByteBuffer(repeating: 0, count: size), requestTime: 0, responseTime: 0,
                           freshnessLifetime: 60, control: CacheControl(), varyFields: vary.isEmpty ? [] : ["x"], varyValues: vary, tags: tags)
        }
        #expect(!store.insert("huge", response(257 << 10)))
        for i in 0..<40 { store.insert("k\(i)", response(30_000)) }
        #expect(store.usage.bytes <= 1 << 20)
        #expect(store.lookup("k0").isEmpty)  // the oldest went first
        #expect(!store.lookup("k39").isEmpty)
        // A use keeps an entry: the oldest one left survives the next inserts once looked up; the one after it not.
        let survivor = (0..<40).first { !store.lookup("k\($0)").isEmpty }!
        for i in 40..<45 { store.insert("k\(i)", response(30_000)) }
        #expect(!store.lookup("k\(survivor)").isEmpty)
        #expect(store.lookup("k\(survivor + 1)").isEmpty)
        // Variants: one per Vary value, the newest first; the same value replaces.
        store.insert("v", response(10, vary: ["a"]))
        store.insert("v", response(20, vary: ["b"]))
        store.insert("v", response(30, vary: ["a"], tags: ["t1"]))
        #expect(store.lookup("v").map(\.body.readableBytes) == [30, 20])
        #expect(store.purge(tag: "t1") == 1)
        #expect(store.lookup("v").map(\.body.readableBytes) == [20])
        #expect(store.remove("v") == 1 && store.lookup("v").isEmpty)
        // One key's variants cannot hold more than the budget: its oldest go.
        for i in 0..<16 { store.insert("many", response(200_000, vary: ["\(i)"])) }
        #expect(store.usage.bytes <= 1 << 20)
        #expect(store.lookup("many").count <= 5 && store.lookup("many").first?.varyValues == ["15"])
        // Collapsing: the first is the leader; the others are told when its response streams and when it finishes.
        let woken = WokenCounter()
        guard case .leader = store.fillOrWait("f", waiter: { _ in }) else { Issue.record("not leader"); return }
        for _ in 0..<3 {
            guard case .waiting = store.fillOrWait("f", waiter: { if case .done = $0 { woken.add() } }) else { Issue.record("not waiting"); return }
        }
        let streaming = WokenCounter()
        let fill = CacheFillStream(response: response(10), body: ResponseBodyStream())
        _ = store.fillOrWait("f", waiter: { if case .streaming = $0 { streaming.add() } })
        store.publishStream("f", fill)
        #expect(streaming.count == 1)
        // A miss that comes while the body streams may answer with it at once.
        guard case .streaming = store.fillOrWait("f", waiter: { _ in }) else { Issue.record("not streaming"); return }
        store.finishFill("f")
        #expect(woken.count == 3)
        guard case .leader = store.fillOrWait("f", waiter: { _ in }) else { Issue.record("not leader again"); return }
    }

    /// Readers on their own loops read every part from the start, at their own pace; a failed stream fails them.
    @Test func responseBodyStreamReaders() throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let loop = group.next()
        let stream = ResponseBodyStream()
        stream.append(ByteBuffer(string: "ab"))
        var early = 0, late = 0
        guard case .data(let first) = stream.read(from: &early, eventLoop: loop, notify: {}) else { Issue.record("no data"); return }
        #expect(first.map { String(buffer: $0) } == ["ab"] && early == 1)
        let notified = loop.makePromise(of: Void.self)
        guard case .wait = stream.read(from: &early, eventLoop: loop, notify: { notified.succeed() }) else { Issue.record("no wait"); return }
        stream.append(ByteBuffer(string: "cd"))
        try notified.futureResult.wait()
        stream.finish()
        guard case .data(let rest) = stream.read(from: &early, eventLoop: loop, notify: {}) else { Issue.record("no rest"); return }
        #expect(rest.map { String(buffer: $0) } == ["cd"])
        guard case .end = stream.read(from: &early, eventLoop: loop, notify: {}) else { Issue.record("no end"); return }
        guard case .data(let all) = stream.read(from: &late, eventLoop: loop, notify: {}) else { Issue.record("late reader"); return }
        #expect(all.count == 2 && String(buffer: stream.joined()) == "abcd")
        stream.fail()  // after finish: nothing changes
        guard case .end = stream.read(from: &late, eventLoop: loop, notify: {}) else { Issue.record("end changed"); return }

        let failing = ResponseBodyStream()
        var p = 0
        let woke = loop.makePromise(of: Void.self)
        _ = failing.read(from: &p, eventLoop: loop, notify: { woke.succeed() })
        failing.fail()
        try woke.futureResult.wait()
        guard case .failed = failing.read(from: &p, eventLoop: loop, notify: {}) else { Issue.record("not failed"); return }
    }
}

private final class WokenCounter: @unchecked Sendable {
    var count = 0
    func add() { self.count += 1 }
}
