//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Logging
@testable import PorticoControl
import PorticoCore
import PorticoEngine
import PorticoTestSupport
import Testing

/// The cache through real listeners against a real origin that sets the fields each case needs: one case per
/// rule of RFC 9111 (with RFC 5861, RFC 9211, RFC 9213, and RFC 9110's conditional and range requests), each
/// citing its section. Whether a response came from the cache is told by the origin's request count and
/// `Cache-Status`.
@Suite(.serialized) struct CacheTests {
    static let yaml = """
        listeners: [ { name: l, address: "127.0.0.1:0" } ]
        access_log: { destination: "off" }
        cache_storage: { max_size: 8MiB, max_object_size: 256KiB }
        routes:
          - { match: { path_prefix: /respond/nq/ }, cluster: c, cache: { key: { query: false } } }
          - { match: { path_prefix: /respond/keyed/ }, cluster: c, cache: { key: { headers: [X-Tenant], cookies: [lang] } } }
          - { match: { path_prefix: /respond/gz/ }, cluster: c, cache: {}, compression: {} }
          - { match: { path_prefix: /respond/nolock/ }, cluster: c, cache: { lock_timeout: 0s } }
          - { cluster: c, cache: { purge_allow: ["127.0.0.0/8"], status_key: true } }
        clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
        """

    /// A proxy and origin for one test.
    struct Setup {
        let origin: TestOrigin
        let proxy: ProxyHarness

        static func start() async throws -> Setup {
            let origin = try await TestOrigin.start(name: "o")
            return Setup(origin: origin, proxy: try await ProxyHarness.start(yaml: CacheTests.yaml, origins: [origin], workers: 2))
        }

        func stop() async {
            await self.proxy.shutdown()
            await self.origin.shutdown()
        }

        func send(_ target: String, _ fields: [String] = [], method: String = "GET") throws -> RawResponse {
            let c = try RawHTTPClient(port: self.proxy.port())
            let length = method == "POST" || method == "PUT" ? "Content-Length: 0\r\n" : ""
            try c.send("\(method) \(target) HTTP/1.1\r\nHost: cache.test\r\n\(length)" + fields.map { $0 + "\r\n" }.joined() + "\r\n")
            guard let r = c.readResponses(1, headIndexes: method == "HEAD" ? [0] : []).first else { throw RawClientError("no response to \(target)") }
            return r
        }

        /// Sends `target` and says whether the origin saw it.
        func forwarded(_ target: String, _ fields: [String] = [], method: String = "GET") throws -> (RawResponse, Bool) {
            let before = self.origin.requestCount
            let r = try self.send(target, fields, method: method)
            return (r, self.origin.requestCount > before)
        }
    }

    /// `/respond/PATH?size=N&h=…`: what the origin answers with.
    static func target(_ path: String, _ fields: [String], size: Int = 100, status: Int = 200, extra: String = "") -> String {
        var q = "/respond/\(path)?status=\(status)&size=\(size)"
        for f in fields {
            q += "&h=" + f.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: " ", with: "%20")
                .replacingOccurrences(of: "+", with: "%2B").replacingOccurrences(of: "&", with: "%26")
        }
        return q + extra
    }

    static func date(_ offset: Int64) -> String { HTTPDateText.format(offset) }

    // MARK: Storing and serving (RFC 9111 §3, §4, §5.1; RFC 9211)

    @Test func storedThenServedWhileFreshWithAge() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let t = Self.target("fresh", ["Cache-Control: max-age=60", "Content-Type: text/plain"], size: 1000)
        let (miss, m1) = try s.forwarded(t)
        #expect(m1 && miss.status == 200)
        #expect(miss.header("cache-status")?.hasPrefix("Portico; fwd=uri-miss; stored") == true, "\(miss.headers)")
        let (hit, m2) = try s.forwarded(t)
        #expect(!m2 && hit.status == 200 && hit.body == miss.body)
        #expect(hit.header("x-origin-request") == miss.header("x-origin-request"))
        #expect(hit.header("age") != nil)  // §5.1: on every response from the cache
        #expect(hit.header("cache-status")?.hasPrefix("Portico; hit; ttl=") == true)
        #expect(hit.header("cache-status")?.contains("key=\"http://cache.test/respond/fresh?") == true)  // status_key
        // HEAD is answered from the stored GET (RFC 9110 §9.3.2), with its length and no body.
        let (head, m3) = try s.forwarded(t, method: "HEAD")
        #expect(!m3 && head.status == 200 && head.header("content-length") == "1000")
    }

    /// §3, §3.5, §5.2.2.5, §5.2.2.7, §4.1: responses that are not stored (each forwarded twice).
    @Test func responsesThatAreNotStored() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let cases: [(String, [String], [String], Int, String)] = [
            ("§5.2.2.5 no-store", ["Cache-Control: no-store, max-age=60"], [], 200, "no-store"),
            ("§5.2.2.7 private", ["Cache-Control: private, max-age=60"], [], 200, "private"),
            ("§5.2.1.5 request no-store", ["Cache-Control: max-age=60"], ["Cache-Control: no-store"], 200, "request no-store"),
            ("§3.5 Authorization", ["Cache-Control: max-age=60"], ["Authorization: Bearer x"], 200, "authorization"),
            ("§4.1 Vary: *", ["Cache-Control: max-age=60", "Vary: *"], [], 200, "vary *"),
            ("§3 no freshness for 302", ["ETag: \"x\""], [], 302, "no explicit freshness"),
            ("§3 partial content", ["Cache-Control: max-age=60", "Content-Range: bytes 0-99/200"], [], 206, "status"),
            ("Set-Cookie", ["Cache-Control: max-age=60", "Set-Cookie: s=1"], [], 200, "set-cookie"),
            ("§5.3 invalid Expires, no validator", ["Expires: 0"], [], 200, "stale at once"),
        ]
        for (i, (rule, fields, request, status, detail)) in cases.enumerated() {
            let t = Self.target("not-stored-\(i)", fields, status: status)
            let (first, f1) = try s.forwarded(t, request)
            let (_, f2) = try s.forwarded(t, request)
            #expect(f1 && f2, "\(rule)")
            #expect(first.header("cache-status")?.contains(detail) == true, "\(rule): \(first.header("cache-status") ?? "-")")
        }
    }

    /// §3.5: a response that says so may be stored for Authorization requests; §5.2.2.3: `must-understand`
    /// overrides `no-store` for a status Portico understands; §5.2.2.10: `s-maxage` over `max-age`.
    @Test func directivesThatAllowStoring() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let cases: [(String, [String], [String])] = [
            ("§3.5 public with Authorization", ["Cache-Control: public, max-age=60"], ["Authorization: Bearer x"]),
            ("§3.5 s-maxage with Authorization", ["Cache-Control: s-maxage=60"], ["Authorization: Bearer x"]),
            ("§5.2.2.3 must-understand", ["Cache-Control: no-store, must-understand, max-age=60"], []),
            ("§5.2.2.10 s-maxage over max-age", ["Cache-Control: max-age=0, s-maxage=60"], []),
            ("§5.3 Expires", ["Date: \(Self.date(0))", "Expires: \(Self.date(300))"], []),
            ("§4.2.2 heuristic freshness", ["Date: \(Self.date(0))", "Last-Modified: \(Self.date(-86400 * 10))"], []),
            ("§4.2.2 heuristic for 404", ["Date: \(Self.date(0))", "Last-Modified: \(Self.date(-86400))"], []),
        ]
        for (i, (rule, fields, request)) in cases.enumerated() {
            let t = Self.target("stored-\(i)", fields, status: rule.contains("404") ? 404 : 200)
            let (_, f1) = try s.forwarded(t, request)
            let (hit, f2) = try s.forwarded(t, request)
            #expect(f1 && !f2, "\(rule)")
            #expect(hit.header("cache-status")?.contains("hit") == true, "\(rule)")
        }
    }

    /// RFC 9213: a targeted field replaces Cache-Control for this cache, Portico's own first; neither reaches
    /// the client.
    @Test func targetedCacheControl() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let t = Self.target("targeted", ["Cache-Control: no-store", "CDN-Cache-Control: max-age=60"])
        let (first, f1) = try s.forwarded(t)
        let (_, f2) = try s.forwarded(t)
        #expect(f1 && !f2)
        #expect(first.header("cdn-cache-control") == nil && first.header("cache-control") == "no-store")
        let own = Self.target("targeted-own", ["CDN-Cache-Control: max-age=60", "Portico-Cache-Control: no-store"])
        let (r, o1) = try s.forwarded(own)
        let (_, o2) = try s.forwarded(own)
        #expect(o1 && o2 && r.header("portico-cache-control") == nil)
    }

    // MARK: Age, staleness and validation (§4.2.3, §4.3, §5.2.1)

    /// §4.2.3: the upstream's Age counts; a response older than its lifetime is stale on arrival.
    @Test func ageFromUpstreamMakesItStale() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let t = Self.target("aged", ["Cache-Control: max-age=60", "Age: 100"])
        _ = try s.forwarded(t)
        let (r, f) = try s.forwarded(t)
        #expect(f && r.header("cache-status")?.contains("fwd=stale") == true)
    }

    /// §4.3.1–§4.3.4, §3.2: a stale response is validated with its ETag; the 304 freshens it (its fields replace
    /// the stored ones) and the client gets the stored body.
    @Test func revalidationWithA304() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let t = Self.target("validate", ["Cache-Control: max-age=0", "ETag: \"v1\"", "Content-Type: text/plain"], size: 500)
        let (first, _) = try s.forwarded(t)
        let (second, f2) = try s.forwarded(t)
        #expect(f2 && second.status == 200 && second.body == first.body && second.body.utf8.count == 500)
        #expect(second.header("cache-status")?.contains("fwd=stale; fwd-status=304") == true, "\(second.header("cache-status") ?? "-")")
        // The 304's X-Origin-Request (request 2) replaced the stored one (request 1).
        #expect(first.header("x-origin-request") != second.header("x-origin-request"))
        #expect(second.header("content-length") == "500")
        // The client's own conditional, satisfied by the freshened response: 304 (RFC 9110 §13.1.2).
        let (third, _) = try s.forwarded(t, ["If-None-Match: \"v1\""])
        #expect(third.status == 304 && third.header("etag") == "\"v1\"" && third.body.isEmpty)
    }

    /// RFC 9110 §13 via RFC 9111 §4.3.2: a fresh stored response answers conditional requests itself.
    @Test func conditionalRequestsAnsweredFromTheCache() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let lm = Self.date(-3600)
        let t = Self.target("cond", ["Cache-Control: max-age=60", "ETag: \"c1\"", "Last-Modified: \(lm)"])
        _ = try s.forwarded(t)
        let cases: [([String], Int)] = [
            (["If-None-Match: \"c1\""], 304), (["If-None-Match: W/\"c1\", \"x\""], 304), (["If-None-Match: \"other\""], 200),
            (["If-Modified-Since: \(lm)"], 304), (["If-Modified-Since: \(Self.date(-7200))"], 200),
        ]
        for (fields, status) in cases {
            let (r, f) = try s.forwarded(t, fields)
            #expect(!f && r.status == status, "\(fields)")
            if status == 304 { #expect(r.header("etag") == "\"c1\"" && r.header("age") != nil && r.header("content-length") == nil) }
        }
    }

    /// §5.2.1: the request's own directives.
    @Test func requestDirectives() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let t = Self.target("req", ["Cache-Control: max-age=30", "Age: 5"])
        _ = try s.forwarded(t)
        let cases: [(String, [String], Bool, String)] = [
            ("§5.2.1.4 no-cache", ["Cache-Control: no-cache"], true, "fwd=request"),
            ("§5.4 Pragma: no-cache", ["Pragma: no-cache"], true, "fwd=request"),
            ("§5.2.1.1 max-age=0 (the stored response is 5 s old)", ["Cache-Control: max-age=0"], true, "fwd=request"),
            ("§5.2.1.3 min-fresh", ["Cache-Control: min-fresh=100"], true, "fwd=request"),
            ("§5.2.1.1 max-age within", ["Cache-Control: max-age=1000"], false, "hit"),
        ]
        for (rule, fields, forwarded, status) in cases {
            let (r, f) = try s.forwarded(t, fields)
            #expect(f == forwarded, "\(rule)")
            #expect(r.header("cache-status")?.contains(status) == true, "\(rule): \(r.header("cache-status") ?? "-")")
        }
        // §5.2.1.7: only-if-cached with nothing stored: 504, nothing forwarded.
        let (r, f) = try s.forwarded(Self.target("never-stored", []), ["Cache-Control: only-if-cached"])
        #expect(!f && r.status == 504)
        // §5.2.1.2: max-stale accepts a stale response.
        let stale = Self.target("stale", ["Cache-Control: max-age=1", "Age: 100"])
        _ = try s.forwarded(stale)
        let (accepted, fa) = try s.forwarded(stale, ["Cache-Control: max-stale"])
        #expect(!fa && accepted.header("cache-status")?.contains("hit; ttl=-") == true)
    }

    /// §5.2.2.2 must-revalidate and RFC 5861: stale-if-error serves the stored response when the origin fails;
    /// must-revalidate never does. stale-while-revalidate serves it stale at once.
    @Test func staleOnErrorAndWhileRevalidating() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        // The `nq` route keys without the query, so the same URL can answer 200 and then 503.
        let ok = Self.target("nq/sie", ["Cache-Control: max-age=0, stale-if-error=600", "ETag: \"s\""], size: 300)
        let failing = Self.target("nq/sie", ["Cache-Control: max-age=0, stale-if-error=600"], status: 503)
        let (first, _) = try s.forwarded(ok)
        let (served, f) = try s.forwarded(failing)
        #expect(f && served.status == 200 && served.body == first.body)
        #expect(served.header("cache-status")?.contains("fwd-status=503; detail=stale-if-error") == true)
        let strictOK = Self.target("nq/mr", ["Cache-Control: max-age=0, stale-if-error=600, must-revalidate", "ETag: \"m\""])
        let strictFailing = Self.target("nq/mr", [], status: 503)
        _ = try s.forwarded(strictOK)
        let (passed, _) = try s.forwarded(strictFailing)
        #expect(passed.status == 503)
        // stale-while-revalidate: answered from the store at once, then refreshed in the background, with the
        // stored validator, through the route's cluster (RFC 5861 §3).
        let swr = Self.target("swr", ["Cache-Control: max-age=1, stale-while-revalidate=600", "Age: 5", "ETag: \"w\""])
        _ = try s.forwarded(swr)
        let before = s.origin.requestCount
        let stale = try s.send(swr)
        #expect(stale.status == 200 && stale.header("cache-status")?.contains("hit; ttl=-4; detail=stale-while-revalidate") == true,
                "\(stale.header("cache-status") ?? "-")")
        try await waitUntil("the background refresh reaches the origin") { s.origin.requestCount == before + 1 }
        // The refreshed response (the origin's 200 again, stored anew) answers the next request from the store.
        let again = try s.send(swr)
        #expect(again.status == 200 && again.header("cache-status")?.hasPrefix("Portico; hit") == true)
    }

    /// `post`: POSTs keyed by their body too, stored only with explicit freshness; a successful POST still
    /// invalidates what is stored for its URL's GETs (RFC 9111 §4.4).
    @Test func postRequestsAreCachedByBodyWhenAsked() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: """
            listeners: [ { name: l, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes: [ { cluster: o, cache: { post: { max_body: 1KiB } } } ]
            clusters: [ { name: o, hosts: [ { address: "{{origin:o}}" } ] } ]
            """, origins: [origin])
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        func send(_ method: String, _ target: String, _ body: String = "", chunked: Bool = false) async throws -> (String, Bool) {
            let port = proxy.port()
            let before = origin.requestCount
            let status = try await offThePool { () -> String in
                let c = try RawHTTPClient(port: port)
                let framing = method == "GET" ? "\r\n"
                    : chunked ? "Transfer-Encoding: chunked\r\n\r\n\(String(body.utf8.count, radix: 16))\r\n\(body)\r\n0\r\n\r\n"
                    : "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
                try c.send("\(method) \(target) HTTP/1.1\r\nHost: cache.test\r\nConnection: close\r\n" + framing)
                return c.readResponses(1).first?.header("cache-status") ?? "-"
            }
            return (status, origin.requestCount > before)
        }
        let query = Self.target("graphql", ["Cache-Control: max-age=60"])
        #expect(try await send("POST", query, "{\"q\":1}").1)
        let (hit, forwarded) = try await send("POST", query, "{\"q\":1}")
        #expect(!forwarded && hit.contains("hit"), "\(hit)")
        #expect(try await send("POST", query, "{\"q\":2}").1)  // another body: another response
        #expect(try await send("POST", query, "{\"q\":1}", chunked: true).1)  // unknown length: not cached
        // GET of the same URL is its own entry; a successful POST (a miss) invalidates it.
        #expect(try await send("GET", query).1)
        #expect(!(try await send("GET", query).1))
        #expect(try await send("POST", query, "{\"q\":3}").1)
        #expect(try await send("GET", query).1)
        // Without explicit freshness a POST's response is not stored.
        let heuristic = Self.target("graphql-lm", ["Last-Modified: \(Self.date(-86400))"])
        _ = try await send("POST", heuristic, "x")
        let (again, f) = try await send("POST", heuristic, "x")
        #expect(f && again.contains("POST without explicit freshness"), "\(again)")
    }

    /// RFC 5861 §3 with a response that becomes fresh again: the refresh replaces the stale one, so the request
    /// after it is a plain fresh hit and the origin is not asked again.
    @Test func staleWhileRevalidateRefreshesTheStore() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        // Fresh for four seconds (Age 96 of 100), then stale within stale-while-revalidate. (Ages count in whole
        // seconds: response delay, apparent age and time in the store may each round up by one, so the refreshed
        // response must have more than three seconds of freshness for the next request to find it fresh.)
        let target = Self.target("swr-fresh", ["Cache-Control: max-age=100, stale-while-revalidate=600", "Age: 96"])
        _ = try s.forwarded(target)
        #expect(s.origin.requestCount == 1)
        // Hits (no origin traffic) until the stored response turns stale: that hit is served stale and refreshes.
        try await waitUntil("a hit served stale", timeout: .seconds(8)) {
            try s.send(target).header("cache-status")?.contains("detail=stale-while-revalidate") == true
        }
        // Stale hits go on (no client waits) until the refresh is stored; then hits are fresh again, and the
        // origin was asked once.
        try await waitUntil("the refreshed response is stored") {
            let status = try s.send(target).header("cache-status") ?? ""
            return status.contains("hit; ttl=") && !status.contains("hit; ttl=-") && !status.contains("detail=stale-while-revalidate")
        }
        #expect(s.origin.requestCount == 2)
    }

    /// RFC 5861 §4 when the origin cannot be reached at all: the stale response answers instead of a 502, with
    /// the failure in Cache-Status; must-revalidate gets the error (RFC 9111 §5.2.2.2).
    @Test func staleIfErrorWhenTheOriginIsDown() async throws {
        let origin = try await TestOrigin.start(name: "d")
        let yaml = """
            listeners: [ { name: l, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes: [ { cluster: d, cache: {} } ]
            clusters: [ { name: d, hosts: [ { address: "{{origin:d}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 1, logLevel: .critical)
        defer { Task { await proxy.shutdown() } }
        let s = Setup(origin: origin, proxy: proxy)
        let lenient = Self.target("down-a", ["Cache-Control: max-age=0, stale-if-error=600", "ETag: \"a\""], size: 200)
        let strict = Self.target("down-b", ["Cache-Control: max-age=0, stale-if-error=600, must-revalidate", "ETag: \"b\""])
        let (first, _) = try s.forwarded(lenient)
        _ = try s.forwarded(strict)
        await origin.shutdown()
        let served = try s.send(lenient)
        #expect(served.status == 200 && served.body == first.body)
        #expect(served.header("cache-status")?.contains("fwd-status=502; detail=stale-if-error") == true, "\(served.headers)")
        #expect(try s.send(strict).status == 502)
    }

    // MARK: Vary and keys (§4.1, §2)

    @Test func varyKeepsVariantsApart() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let t = Self.target("vary", ["Cache-Control: max-age=60", "Vary: Accept-Language"])
        let steps: [(String, Bool, String)] = [
            ("en, fr;q=0.5", true, "uri-miss"), ("en, fr;q=0.5", false, "hit"),
            ("FR;q=0.5 ,EN", false, "hit"),  // normalised: case, whitespace, member order
            ("de", true, "vary-miss"), ("de", false, "hit"),
        ]
        for (language, forwarded, status) in steps {
            let (r, f) = try s.forwarded(t, ["Accept-Language: \(language)"])
            #expect(f == forwarded && r.header("cache-status")?.contains(status) == true, "\(language): \(r.header("cache-status") ?? "-")")
        }
        let (_, noField) = try s.forwarded(t)
        #expect(noField)  // no Accept-Language is a variant of its own
    }

    /// The configured key: request fields and cookies select stored responses; the query can be left out.
    @Test func configuredKey() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let t = Self.target("keyed/x", ["Cache-Control: max-age=60"])
        let steps: [([String], Bool)] = [
            (["X-Tenant: a"], true), (["X-Tenant: a"], false), (["X-Tenant: b"], true),
            (["X-Tenant: a", "Cookie: theme=dark; lang=en"], true), (["X-Tenant: a", "Cookie: lang=en; x=1"], false),
        ]
        for (fields, forwarded) in steps {
            let (_, f) = try s.forwarded(t, fields)
            #expect(f == forwarded, "\(fields)")
        }
        _ = try s.forwarded(Self.target("nq/q", ["Cache-Control: max-age=60"], extra: "&v=1"))
        let (_, f) = try s.forwarded(Self.target("nq/q", ["Cache-Control: max-age=60"], extra: "&v=2"))
        #expect(!f)
    }

    // MARK: Invalidation and purge (§4.4)

    @Test func unsafeMethodsInvalidate() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let path = "nq/inv"
        let get = Self.target(path, ["Cache-Control: max-age=60"])
        let other = Self.target("nq/other", ["Cache-Control: max-age=60"])
        _ = try s.forwarded(get)
        _ = try s.forwarded(other)
        // A failed POST invalidates nothing; a successful one its target, and the same-origin Location.
        _ = try s.forwarded(Self.target(path, [], status: 500), method: "POST")
        #expect(try !s.forwarded(get).1)
        _ = try s.forwarded(Self.target(path, ["Location: /respond/nq/other"], status: 201), method: "POST")
        #expect(try s.forwarded(get).1)
        #expect(try s.forwarded(other).1)
        // An absolute Location on another origin is left alone.
        _ = try s.forwarded(Self.target(path, ["Location: http://elsewhere.test/respond/nq/other"]), method: "PUT")
        #expect(try !s.forwarded(other).1)
    }

    @Test func purgeByURLAndByTag() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let a = Self.target("purge-a", ["Cache-Control: max-age=60", "Surrogate-Key: product-1 list"])
        let b = Self.target("purge-b", ["Cache-Control: max-age=60", "Cache-Tag: list"])
        let (first, _) = try s.forwarded(a)
        #expect(first.header("surrogate-key") == nil)
        _ = try s.forwarded(b)
        let purged = try s.send(a, method: "PURGE")
        #expect(purged.status == 200 && purged.body == "purged 1\n")
        #expect(try s.forwarded(a).1)
        #expect(try s.send(a, method: "PURGE").status == 200)
        #expect(try s.send(a, method: "PURGE").status == 404)
        _ = try s.forwarded(a)
        let tagged = try s.send("/respond/anything", ["Surrogate-Key: list"], method: "PURGE")
        #expect(tagged.status == 200 && tagged.body == "purged 2\n")
        #expect(try s.forwarded(a).1 && s.forwarded(b).1)
    }

    // MARK: Ranges, sizes, collapsing, compression

    /// RFC 9110 §14: one range of a stored 200 is served as a 206; several get the whole response; 416 beyond.
    @Test func rangesFromAStoredResponse() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let t = Self.target("range", ["Cache-Control: max-age=60", "ETag: \"r\""], size: 1000)
        let (full, _) = try s.forwarded(t)
        let cases: [(String, Int, String?, String)] = [
            ("bytes=0-9", 206, "bytes 0-9/1000", String(full.body.prefix(10))),
            ("bytes=-5", 206, "bytes 995-999/1000", String(full.body.suffix(5))),
            ("bytes=0-1,5-6", 200, nil, full.body),
            ("bytes=1000-", 416, "bytes */1000", ""),
        ]
        for (range, status, contentRange, body) in cases {
            let (r, f) = try s.forwarded(t, ["Range: \(range)"])
            #expect(!f && r.status == status && r.header("content-range") == contentRange && r.body == body, "\(range)")
        }
        let (ifRange, _) = try s.forwarded(t, ["Range: bytes=0-9", "If-Range: \"other\""])
        #expect(ifRange.status == 200)
    }

    @Test func objectsOverTheLimitPassThroughUnstored() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        for chunked in [false, true] {
            let t = Self.target("large-\(chunked)", ["Cache-Control: max-age=60"], size: 300_000, extra: chunked ? "&chunked=1" : "")
            let (r, f1) = try s.forwarded(t)
            let (_, f2) = try s.forwarded(t)
            #expect(f1 && f2 && r.body.utf8.count == 300_000, "chunked=\(chunked)")
        }
    }

    /// Concurrent misses for one key make one upstream request; the others get the stored response.
    @Test func concurrentMissesAreCollapsed() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let t = Self.target("collapse", ["Cache-Control: max-age=60"], size: 50_000, extra: "&delay=300")
        // Every request is sent before any response is read (blocking clients, so no task pool is needed).
        func concurrently(_ target: String, _ n: Int) throws -> [RawResponse] {
            let clients = try (0..<n).map { _ in try RawHTTPClient(port: s.proxy.port()) }
            for c in clients { try c.send("GET \(target) HTTP/1.1\r\nHost: cache.test\r\n\r\n") }
            return clients.compactMap { $0.readResponses(1).first }
        }
        let before = s.origin.requestCount
        let bodies = try concurrently(t, 8)
        #expect(s.origin.requestCount - before == 1)
        #expect(bodies.count == 8 && bodies.allSatisfy { $0.status == 200 && $0.body.utf8.count == 50_000 })
        #expect(bodies.filter { $0.header("cache-status")?.contains("collapsed") == true }.count == 7)
        // Without collapsing (lock_timeout: 0s) each goes upstream.
        let n = Self.target("nolock/x", ["Cache-Control: max-age=60"], extra: "&delay=300")
        let before2 = s.origin.requestCount
        _ = try concurrently(n, 3)
        #expect(s.origin.requestCount - before2 == 3)
    }

    /// The leading request's client goes away mid-body: the response is still read to its end for the requests
    /// streaming it, and stored (nginx finishes a response it is caching).
    @Test func collapsedMissesOutliveTheLeadersClient() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let size = 60_000
        let t = Self.target("stream-abandoned", ["Cache-Control: max-age=60"], size: size, extra: "&gate=abandoned")
        func send() throws -> RawHTTPClient {
            let c = try RawHTTPClient(port: s.proxy.port())
            try c.send("GET \(t) HTTP/1.1\r\nHost: cache.test\r\n\r\n")
            _ = try #require(c.readUntil("\r\n\r\n"))
            _ = try #require(c.readExactly(size / 2))
            return c
        }
        let leader = try send()
        let follower = try send()
        #expect(await s.proxy.server.engine.openConnections() == 2)
        leader.reset()
        // Portico learns the client went when it writes to it: a few more bytes, then the rest once it knows.
        s.origin.release("abandoned", bytes: 1000)
        try await waitUntil("the leader's connection closed") { await s.proxy.server.engine.openConnections() == 1 }
        s.origin.release("abandoned")
        let rest = try #require(follower.readExactly(size - size / 2))
        #expect(String(decoding: rest, as: UTF8.self) == String(TestOrigin.text(size: size).dropFirst(size / 2)))
        let (stored, forwarded) = try s.forwarded(t, ["Cache-Control: only-if-cached"])
        #expect(!forwarded && stored.status == 200 && stored.body.utf8.count == size)
    }

    // MARK: The disk tier

    static func diskYAML(_ dir: String) -> String {
        """
        listeners: [ { name: l, address: "127.0.0.1:0" } ]
        access_log: { destination: "off" }
        cache_storage: { max_size: 1MiB, max_object_size: 256KiB, disk: { path: "\(dir)", max_size: 16MiB } }
        routes:
          - { cluster: c, cache: { purge_allow: ["127.0.0.0/8"] } }
        clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
        """
    }

    /// `cache_storage.disk`: what memory evicted is read back from disk instead of the origin; what was stored
    /// survives a restart (a new proxy on the same directory); a purge by tag removes it from disk too.
    @Test func diskTierKeepsResponsesAcrossEvictionsAndRestarts() async throws {
        let dir = NSTemporaryDirectory() + "portico-cache-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let origin = try await TestOrigin.start(name: "o")
        // Six 200 KB responses: more than memory holds (1 MiB), less than the disk's 16 MiB.
        let targets = (0..<6).map { Self.target("disk/\($0)", ["Cache-Control: max-age=600", "Surrogate-Key: group\($0 % 2)"], size: 200_000) }
        func run(_ body: (Setup) async throws -> Void) async throws {
            let proxy = try await ProxyHarness.start(yaml: Self.diskYAML(dir), origins: [origin], workers: 2)
            // The directory is indexed before the first request (the scan runs on the disk queue).
            await proxy.server.cacheStore?.disk?.flush()
            do { try await body(Setup(origin: origin, proxy: proxy)) } catch {
                await proxy.shutdown()
                throw error
            }
            await proxy.shutdown()
        }
        try await run { s in
            for t in targets {
                let (r, f) = try s.forwarded(t)
                #expect(f && r.status == 200 && r.header("cache-status")?.contains("stored") == true)
            }
            let (back, f0) = try s.forwarded(targets[0])
            #expect(!f0 && back.body == TestOrigin.text(size: 200_000))
            #expect(back.header("cache-status")?.hasPrefix("Portico; hit") == true && back.header("cache-status")?.contains("detail=disk") == true)
        }
        try await run { s in
            // A new proxy: every response is still there, from disk.
            for t in targets {
                let (r, f) = try s.forwarded(t)
                #expect(!f && r.status == 200 && r.body.utf8.count == 200_000 && r.header("age") != nil, "\(t)")
            }
            let purge = try s.send("/", ["Surrogate-Key: group1"], method: "PURGE")
            #expect(purge.status == 200)
        }
        try await run { s in
            // The purge reached the files: after a restart the purged ones go upstream, the others do not.
            for (i, t) in targets.enumerated() {
                let (_, f) = try s.forwarded(t)
                #expect(f == (i % 2 == 1), "\(i)")
            }
        }
        await origin.shutdown()
    }

    /// A stale response read back from disk within `stale-while-revalidate` is served and refreshed in the
    /// background (the refresh starts after the disk read, not only on the synchronous path); a reload that
    /// changes the memory store keeps the directory's one disk tier.
    @Test func diskTierServesStaleWhileRevalidatingAndSurvivesAReload() async throws {
        let dir = NSTemporaryDirectory() + "portico-cache-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let origin = try await TestOrigin.start(name: "o")
        defer { Task { await origin.shutdown() } }
        // Stale on arrival (Age beyond max-age), within stale-while-revalidate.
        let t = Self.target("disk-swr", ["Cache-Control: max-age=1, stale-while-revalidate=600", "Age: 5"])
        let first = try await ProxyHarness.start(yaml: Self.diskYAML(dir), origins: [origin], workers: 1)
        let (stored, _) = try Setup(origin: origin, proxy: first).forwarded(t)
        await first.shutdown()

        let proxy = try await ProxyHarness.start(yaml: Self.diskYAML(dir), origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown() } }
        await proxy.server.cacheStore?.disk?.flush()
        let before = origin.requestCount
        // (The background refresh may reach the origin before this client has read its answer: the origin's count
        // is checked after, not around, the request.)
        let stale = try Setup(origin: origin, proxy: proxy).send(t)
        let status = stale.header("cache-status") ?? ""
        #expect(stale.status == 200 && status.contains("hit") && status.contains("detail=stale-while-revalidate"), "\(status)")
        // The stored response itself (the origin numbers its answers), not one the client's request fetched.
        #expect(stale.header("x-origin-request") != nil && stale.header("x-origin-request") == stored.header("x-origin-request"))
        try await waitUntil("the background refresh reached the origin") { origin.requestCount == before + 1 }

        let tier = await proxy.server.cacheStore?.disk
        let bigger = Self.diskYAML(dir).replacingOccurrences(of: "max_size: 1MiB", with: "max_size: 2MiB")
            .replacingOccurrences(of: "{{origin:o}}", with: origin.address)
        guard case .success(let config) = ConfigLoader.load(text: bigger, file: "t.yaml", extraChecks: ConfigFileChecks.errors) else {
            Issue.record("config refused"); return
        }
        _ = await proxy.server.apply(config)
        let after = await proxy.server.cacheStore
        #expect(after?.maxBytes == 2 << 20 && after?.disk === tier && tier != nil)
    }

    @Test func diskTierConfigErrorsNameTheKey() throws {
        let file = NSTemporaryDirectory() + "portico-not-a-dir-\(UUID().uuidString)"
        FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        defer { try? FileManager.default.removeItem(atPath: file) }
        for (path, size, expected) in [(file, "16MiB", "is not a directory"), (file + "/cache", "16MiB", "cannot be made"), ("/tmp/x", "1MiB", "at least max_object_size")] {
            let yaml = """
                listeners: [ { name: l, address: "127.0.0.1:0" } ]
                cache_storage: { max_object_size: 2MiB, disk: { path: "\(path)", max_size: \(size) } }
                routes: [ { respond: {}, cache: {} } ]
                """
            guard case .failure(let errors) = ConfigLoader.load(text: yaml, file: "t.yaml", extraChecks: ConfigFileChecks.errors) else {
                Issue.record("accepted \(path)"); continue
            }
            let e = errors.all.first { $0.path.hasPrefix("cache_storage.disk") }
            #expect(e?.message.contains(expected) == true && e?.line == 2, "\(errors)")
        }
    }

    /// Collapsed misses stream the leader's response as it arrives: they get the first half while the origin
    /// still holds the second (`gate`), which they could not if they waited for the stored whole; one upstream
    /// request in all. A conditional waiter gets its 304 at once. If the leader's upstream dies mid-body, the
    /// streaming waiters' connections fail too (never a short 200), and the response is not stored.
    @Test func collapsedMissesStreamTheResponseAsItArrives() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        for die in [false, true] {
            let size = 60_000
            let t = Self.target("stream-\(die)", ["Cache-Control: max-age=60", "ETag: \"s\""], size: size, extra: "&gate=g\(die)")
            let before = s.origin.requestCount
            func send(_ fields: [String] = []) throws -> RawHTTPClient {
                let c = try RawHTTPClient(port: s.proxy.port())
                try c.send("GET \(t) HTTP/1.1\r\nHost: cache.test\r\n" + fields.map { $0 + "\r\n" }.joined() + "\r\n")
                return c
            }
            func firstHalf(_ c: RawHTTPClient) throws -> String {
                let head = try #require(c.readUntil("\r\n\r\n"))
                let body = try #require(c.readExactly(size / 2))
                #expect(String(decoding: body, as: UTF8.self) == String(TestOrigin.text(size: size).prefix(size / 2)))
                return head
            }
            let leader = try send()
            let leaderHead = try firstHalf(leader)
            #expect(leaderHead.contains("fwd=uri-miss; stored"))
            // The origin still holds the second half: these can only be answered by streaming.
            let waiters = try (0..<3).map { _ in try send() }
            for w in waiters {
                let head = try firstHalf(w)
                #expect(head.contains("Content-Length: \(size)") && head.contains("collapsed"), "\(head)")
            }
            let conditional = try send(["If-None-Match: \"s\""])
            #expect(conditional.readResponses(1).first?.status == 304)
            s.origin.release("g\(die)", die: die)
            for (i, c) in ([leader] + waiters).enumerated() {
                if die {
                    // The rest never comes: the connection closes before the declared length.
                    let rest = c.readAllBytes()
                    #expect(rest.closed && rest.bytes.count < size / 2)
                } else {
                    let rest = c.readExactly(size - size / 2)
                    #expect(rest.map { String(decoding: $0, as: UTF8.self) } == String(TestOrigin.text(size: size).dropFirst(size / 2)), "client \(i)")
                }
            }
            #expect(s.origin.requestCount - before == 1)
            // Stored only when complete.
            let (after, forwarded) = try s.forwarded(t, ["Cache-Control: only-if-cached"])
            #expect(!forwarded && after.status == (die ? 504 : 200))
        }
    }

    /// The cache stores the origin's representation; compression applies on the way out, hit or miss.
    @Test func storedOnceCompressedPerClient() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let t = Self.target("gz/page", ["Cache-Control: max-age=60", "Content-Type: text/html"], size: 20_000)
        let (gz, f1) = try s.forwarded(t, ["Accept-Encoding: gzip"])
        #expect(f1 && gz.header("content-encoding") == "gzip" && gz.header("vary") == "Accept-Encoding")
        let (plain, f2) = try s.forwarded(t)
        #expect(!f2 && plain.header("content-encoding") == nil && plain.body == TestOrigin.text(size: 20_000))
        let (br, f3) = try s.forwarded(t, ["Accept-Encoding: br"])
        #expect(!f3 && br.header("content-encoding") == "br")
        #expect(ContentDecoder.decode(br.bytes, coding: "br") == TestOrigin.text(size: 20_000))
    }
}

/// HTTP dates relative to now, for origin fields.
enum HTTPDateText {
    static func format(_ offset: Int64) -> String {
        PorticoCore.HTTPDate.format(CacheFilter.wallClock() + offset)
    }
}
