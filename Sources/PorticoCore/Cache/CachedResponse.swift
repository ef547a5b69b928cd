//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore
public import NIOHTTP1

/// A complete response as the cache keeps it: immutable, shared by every worker, its body one `ByteBuffer` that
/// each hit sends as it is (a reference, never a copy). Freshening it after a 304 makes a new one with the
/// same body (RFC 9111 §4.3.4).
public final class CachedResponse: Sendable {
    public let status: Int
    /// The fields to send, without hop-by-hop ones, without `Age` (computed per hit) and without the targeted
    /// cache fields (RFC 9213), which are for this cache only.
    public let headers: HTTPHeaders
    /// The targeted fields it came with (kept to re-derive its directives when a 304 freshens it).
    public let targetedFields: HTTPHeaders
    public let body: ByteBuffer
    /// When the request went upstream and when its response arrived, in seconds since the epoch (RFC 9111 §4.2.3).
    public let requestTime: Int64
    public let responseTime: Int64
    /// The freshness lifetime in seconds (§4.2.1), computed when stored.
    public let freshnessLifetime: Int64
    /// The directives that govern it: the targeted field's when there was one, else `Cache-Control`.
    public let control: CacheControl
    /// `Date` (or the response time when there was none) and the `Age` the upstream gave.
    public let dateValue: Int64
    public let ageValue: Int64
    /// Request fields named by `Vary`, lowercased, and the request's normalised values of them (§4.1).
    public let varyFields: [String]
    public let varyValues: [String]
    /// `Surrogate-Key` and `Cache-Tag` values, for purging by tag.
    public let tags: [String]
    public let etag: String?
    public let lastModified: String?

    public init(status: Int, headers: HTTPHeaders, targetedFields: HTTPHeaders = [:], body: ByteBuffer, requestTime: Int64, responseTime: Int64, freshnessLifetime: Int64,
                control: CacheControl, varyFields: [String], varyValues: [String], tags: [String]) {
        self.status = status
        self.headers = headers
        self.targetedFields = targetedFields
        self.body = body
        self.requestTime = requestTime
        self.responseTime = responseTime
        self.freshnessLifetime = freshnessLifetime
        self.control = control
        self.dateValue = headers.first(name: "date").flatMap(HTTPDate.parse) ?? responseTime
        // delta-seconds: larger than 2^31 is 2^31 (RFC 9111 §1.2.2), so age arithmetic cannot overflow.
        self.ageValue = headers.first(name: "age").flatMap { Int64($0) }.map { min(max(0, $0), 1 << 31) } ?? 0
        self.varyFields = varyFields
        self.varyValues = varyValues
        self.tags = tags
        self.etag = headers.first(name: "etag")
        self.lastModified = headers.first(name: "last-modified")
    }

    /// The response's current age in seconds (RFC 9111 §4.2.3).
    public func currentAge(now: Int64) -> Int64 {
        let apparentAge = max(0, self.responseTime - self.dateValue)
        let responseDelay = self.responseTime - self.requestTime
        let correctedAgeValue = self.ageValue + responseDelay
        let correctedInitialAge = max(apparentAge, correctedAgeValue)
        let residentTime = now - self.responseTime
        return correctedInitialAge + residentTime
    }

    /// Bytes it holds against the cache's budget (body, fields, and a fixed overhead).
    public var cost: Int {
        var n = self.body.readableBytes + 256
        for (name, value) in self.headers { n += name.utf8.count + value.utf8.count + 4 }
        return n
    }
}
