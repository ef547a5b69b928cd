//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore
public import NIOHTTP1

/// What RFC 9111 (with RFC 5861 and RFC 9213) lets a shared cache do, as pure decisions: whether a response may
/// be stored and for how long it is fresh, whether a stored one may answer a request, and how a 304 freshens
/// it. No I/O and no clock of its own (times are passed in, in seconds since the epoch), so every rule is tested
/// on its own. `CacheFilter` carries the decisions out.
public struct CachePolicy: Sendable, Hashable {
    /// The cap on heuristic freshness (10 % of the time since `Last-Modified`, §4.2.2).
    public var heuristicMax: Int64
    /// Responses to `Authorization` requests are never stored unless the response allows it (§3.5); this is not
    /// configurable. Responses with `Set-Cookie` are not stored unless this is set (nginx and Varnish do not
    /// store them either: one client's cookie would reach every client).
    public var storeSetCookie: Bool

    public init(heuristicMax: Int64 = 86400, storeSetCookie: Bool = false) {
        self.heuristicMax = heuristicMax
        self.storeSetCookie = storeSetCookie
    }

    /// Status codes "heuristically cacheable" (RFC 9110 §15.1): storable without explicit freshness.
    public static let heuristicallyCacheable: Set<Int> = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]
    /// Status codes whose caching rules Portico knows (`must-understand`, §5.2.2.3).
    static let understood: Set<Int> = heuristicallyCacheable.union([302, 303, 307, 400, 403])

    /// The fields targeted at this cache (RFC 9213), first match wins: Portico's own, then any CDN's.
    public static let targetedFields = ["portico-cache-control", "cdn-cache-control"]

    /// The directives that govern a response: the first targeted field with a valid, non-empty value, else
    /// `Cache-Control` (RFC 9213 §2.2: a targeted field replaces `Cache-Control` and `Expires`).
    public static func effectiveControl(_ headers: HTTPHeaders) -> (control: CacheControl, targeted: Bool) {
        for name in Self.targetedFields where headers.contains(name: name) {
            let c = CacheControl(fieldValues: headers[name])
            if !c.isEmpty { return (c, true) }
        }
        return (CacheControl(fieldValues: headers["cache-control"]), false)
    }

    /// The request's directives; `Pragma: no-cache` counts as `no-cache` when there is no `Cache-Control` (§5.4).
    public static func requestControl(_ headers: HTTPHeaders) -> CacheControl {
        var c = CacheControl(fieldValues: headers["cache-control"])
        if !headers.contains(name: "cache-control"),
            headers["pragma"].contains(where: { $0.lowercased().contains("no-cache") })
        {
            c.noCache = true
        }
        return c
    }

    public enum Storability: Sendable, Hashable {
        case store(freshnessLifetime: Int64, control: CacheControl)
        /// Why not, for `Cache-Status` `detail` and the log.
        case refuse(String)
    }

    /// Whether a response to a GET may be stored (§3), and its freshness lifetime (§4.2.1).
    public func storability(request: HTTPHeaders, status: Int, response: HTTPHeaders, responseTime: Int64) -> Storability {
        guard status >= 200, status != 206, status != 304 else { return .refuse("status") }  // §3: final, complete
        if Self.requestControl(request).noStore { return .refuse("request no-store") }
        let (control, targeted) = Self.effectiveControl(response)
        if control.noStore && !(control.mustUnderstand && Self.understood.contains(status)) { return .refuse("no-store") }
        if control.mustUnderstand && !Self.understood.contains(status) { return .refuse("must-understand") }
        if control.isPrivate { return .refuse("private") }
        if request.contains(name: "authorization") && !(control.isPublic || control.mustRevalidate || control.sMaxAge != nil) {
            return .refuse("authorization")  // §3.5
        }
        if !self.storeSetCookie && response.contains(name: "set-cookie") { return .refuse("set-cookie") }
        if response[canonicalForm: "vary"].contains("*") { return .refuse("vary *") }  // can never match (§4.1)
        let explicit = self.explicitLifetime(control, targeted: targeted, response: response, responseTime: responseTime)
        let lifetime: Int64
        if let explicit {
            lifetime = explicit
        } else if Self.heuristicallyCacheable.contains(status) || control.isPublic {
            lifetime = self.heuristicLifetime(response, responseTime: responseTime)
        } else {
            return .refuse("no explicit freshness for status \(status)")
        }
        // Stored only if it can ever be used: fresh for a while, revalidated, or served stale by RFC 5861.
        let hasValidator = response.contains(name: "etag") || response.contains(name: "last-modified")
        if lifetime <= 0 && !hasValidator && control.staleWhileRevalidate == nil && control.staleIfError == nil {
            return .refuse("stale at once and no validator")
        }
        return .store(freshnessLifetime: lifetime, control: control)
    }

    /// `s-maxage`, `max-age`, then `Expires` − `Date` (§4.2.1); nil when none is given. An invalid `Expires`
    /// is in the past (§5.3).
    func explicitLifetime(_ control: CacheControl, targeted: Bool, response: HTTPHeaders, responseTime: Int64) -> Int64? {
        if let s = control.sMaxAge { return Int64(s) }
        if let m = control.maxAge { return Int64(m) }
        guard !targeted, let expires = response.first(name: "expires") else { return nil }
        guard let e = HTTPDate.parse(expires) else { return 0 }
        let date = response.first(name: "date").flatMap(HTTPDate.parse) ?? responseTime
        return max(0, e - date)
    }

    /// 10 % of the time since `Last-Modified`, at most `heuristicMax` (§4.2.2); 0 without `Last-Modified`.
    func heuristicLifetime(_ response: HTTPHeaders, responseTime: Int64) -> Int64 {
        guard let lm = response.first(name: "last-modified").flatMap(HTTPDate.parse) else { return 0 }
        let date = response.first(name: "date").flatMap(HTTPDate.parse) ?? responseTime
        return min(self.heuristicMax, max(0, (date - lm) / 10))
    }

    /// How a stored response may be used for a request.
    public enum Use: Sendable, Hashable {
        /// Fresh, and the request accepts it.
        case fresh
        /// Stale, but the request's `max-stale` accepts it (§5.2.1.2).
        case staleAccepted
        /// Stale within `stale-while-revalidate` (RFC 5861 §3): serve it, and refresh it in the background.
        case staleWhileRevalidate
        /// It must be validated with the origin before use (stale, `no-cache` either side, or too old for the
        /// request's `max-age` / `min-fresh`).
        case validate
    }

    /// RFC 9111 §4.2 and §5.2.1 for one stored response and one request's directives, `now` in epoch seconds.
    public func use(_ stored: CachedResponse, request: CacheControl, now: Int64) -> Use {
        let age = stored.currentAge(now: now)
        let lifetime = stored.freshnessLifetime
        if request.noCache || stored.control.noCache { return .validate }
        if let maxAge = request.maxAge, age > Int64(maxAge) { return .validate }
        if let minFresh = request.minFresh, lifetime - age < Int64(minFresh) { return .validate }
        if lifetime > age { return .fresh }
        let staleness = age - lifetime
        // §5.2.2.2, §5.2.2.8, §5.2.2.10: never served stale without validation.
        if self.neverStale(stored) { return .validate }
        if let maxStale = request.maxStale, maxStale == Int.max || staleness <= Int64(maxStale) { return .staleAccepted }
        if let swr = stored.control.staleWhileRevalidate, staleness <= Int64(swr) { return .staleWhileRevalidate }
        return .validate
    }

    /// `must-revalidate`, `proxy-revalidate` and `s-maxage` forbid serving the response stale in any case.
    public func neverStale(_ stored: CachedResponse) -> Bool {
        stored.control.mustRevalidate || stored.control.proxyRevalidate || stored.control.sMaxAge != nil
    }

    /// Whether a stale response may answer because the origin failed (RFC 5861 §4: `stale-if-error` in the
    /// response or the request).
    public func mayServeOnError(_ stored: CachedResponse, request: CacheControl, now: Int64) -> Bool {
        guard !self.neverStale(stored) else { return false }
        let staleness = stored.currentAge(now: now) - stored.freshnessLifetime
        if staleness <= 0 { return true }
        let window = max(stored.control.staleIfError ?? -1, request.staleIfError ?? -1)
        return window >= 0 && staleness <= Int64(window)
    }

    /// The stored response freshened by a 304 (§4.3.4): its fields replaced by the 304's (§3.2), except
    /// `Content-Length`, and its times, directives and lifetime taken from the result.
    public func freshen(_ stored: CachedResponse, with notModified: HTTPHeaders, requestTime: Int64, responseTime: Int64) -> CachedResponse {
        var headers = stored.headers
        // The 304's Age (or none) is the freshened response's (§4.2.3); the old one described the old response.
        headers.remove(name: "age")
        var targeted = stored.targetedFields
        var replaced = Set<String>()
        for (name, _) in notModified {
            let lower = name.lowercased()
            // Never one client's cookie into the shared response (the origin's, or Portico's sticky cookie).
            guard lower != "content-length", lower != "set-cookie" || self.storeSetCookie, replaced.insert(lower).inserted else { continue }
            if Self.targetedFields.contains(lower) {
                targeted.remove(name: lower)
                for value in notModified[lower] { targeted.add(name: name, value: value) }
            } else {
                headers.remove(name: lower)
                for value in notModified[lower] { headers.add(name: name, value: value) }
            }
        }
        var all = headers
        all.add(contentsOf: targeted)
        let (control, isTargeted) = Self.effectiveControl(all)
        let lifetime = self.explicitLifetime(control, targeted: isTargeted, response: headers, responseTime: responseTime)
            ?? self.heuristicLifetime(headers, responseTime: responseTime)
        return CachedResponse(
            status: stored.status, headers: headers, targetedFields: targeted, body: stored.body, requestTime: requestTime,
            responseTime: responseTime, freshnessLifetime: lifetime, control: control, varyFields: stored.varyFields,
            varyValues: stored.varyValues, tags: stored.tags)
    }

    // MARK: Vary (§4.1)

    /// The request's normalised values of `fields` (lowercased names), the secondary cache key: whitespace
    /// around list members and parameters removed; for the `Accept*` fields, whose members are case-insensitive
    /// and unordered, lowercased and sorted. An absent field differs from an empty one.
    public static func varyValues(_ fields: [String], request: HTTPHeaders) -> [String] {
        fields.map { name in
            guard request.contains(name: name) else { return "\u{0}" }
            let unordered = name.hasPrefix("accept")
            var members = request[name].flatMap { $0.split(separator: ",") }.map { member -> String in
                let parts = member.split(separator: ";").map { $0.trimmingOWS() }
                let joined = parts.joined(separator: ";")
                return unordered ? joined.lowercased() : joined
            }
            if unordered { members.sort() }
            return members.joined(separator: ",")
        }
    }

    /// The lowercased field names a response's `Vary` lists.
    public static func varyFields(_ response: HTTPHeaders) -> [String] {
        response[canonicalForm: "vary"].map { $0.lowercased() }.filter { !$0.isEmpty }
    }

    // MARK: Conditional requests answered from the cache (RFC 9110 §13)

    /// Whether a GET or HEAD with these fields is answered 304 by `stored`: `If-None-Match` by weak comparison
    /// (§13.1.2), else `If-Modified-Since` against `Last-Modified` (§13.1.3).
    public static func notModified(_ stored: CachedResponse, request: HTTPHeaders) -> Bool {
        // Preconditions apply only to a 2xx answer (RFC 9110 §13.2.1).
        guard (200..<300).contains(stored.status) else { return false }
        if request.contains(name: "if-none-match") {
            guard let etag = stored.etag else { return false }
            let tags = request[canonicalForm: "if-none-match"]
            return tags.contains { $0 == "*" || Self.weakEqual(String($0), etag) }
        }
        if let since = request.first(name: "if-modified-since").flatMap(HTTPDate.parse),
            let modified = (stored.lastModified ?? stored.headers.first(name: "date")).flatMap(HTTPDate.parse)
        {
            return modified <= since
        }
        return false
    }

    /// Weak comparison of entity tags: equal opaque tags, either or both weak.
    public static func weakEqual(_ a: String, _ b: String) -> Bool {
        func opaque(_ s: String) -> Substring { s.hasPrefix("W/") ? s.dropFirst(2) : s[...] }
        return opaque(a) == opaque(b)
    }

    /// The fields a 304 carries from the stored response (RFC 9110 §15.4.5).
    public static let notModifiedFields = ["cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified"]

    // MARK: Ranges served from a stored response (RFC 9110 §14)

    public enum RangeAnswer: Sendable, Hashable {
        /// Send the whole response (no Range, a Range Portico does not serve, or an `If-Range` that fails).
        case full
        /// 206 with these bytes (`lower...upper`, inclusive).
        case partial(lower: Int, upper: Int)
        /// 416 with `Content-Range: bytes */length`.
        case unsatisfiable
    }

    /// One byte range of a stored 200 is served as a 206; several ranges get the full response (§14.2 lets a
    /// server ignore Range), as do `If-Range` validators that do not match strongly (§13.1.5).
    public static func range(_ stored: CachedResponse, request: HTTPHeaders) -> RangeAnswer {
        guard stored.status == 200, let value = request.first(name: "range") else { return .full }
        if let ifRange = request.first(name: "if-range") {
            if ifRange.hasPrefix("\"") {
                guard let etag = stored.etag, !etag.hasPrefix("W/"), etag == ifRange else { return .full }
            } else {
                guard let lm = stored.lastModified, lm == ifRange else { return .full }
            }
        }
        let length = stored.body.readableBytes
        guard value.lowercased().hasPrefix("bytes=") else { return .full }
        let specs = value.dropFirst(6).split(separator: ",")
        guard specs.count == 1 else { return .full }
        let spec = specs[0].trimmingOWS()
        guard let dash = spec.firstIndex(of: "-") else { return .full }
        let first = spec[..<dash], last = spec[spec.index(after: dash)...]
        if first.isEmpty {
            // A suffix: the last N bytes.
            guard let n = Int(last), n >= 0 else { return .full }
            guard n > 0, length > 0 else { return .unsatisfiable }
            return .partial(lower: max(0, length - n), upper: length - 1)
        }
        guard let lower = Int(first), lower >= 0 else { return .full }
        let upper: Int
        if last.isEmpty {
            upper = length - 1
        } else {
            guard let u = Int(last), u >= lower else { return .full }
            upper = min(u, length - 1)
        }
        guard lower < length else { return .unsatisfiable }
        return .partial(lower: lower, upper: upper)
    }
}
