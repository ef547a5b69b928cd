//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOHTTP1

/// Whether and how a response is compressed: a route's `compression` compiled when the config loads. Pure
/// decisions (no I/O, no encoder), so every rule is tested on its own; `CompressionFilter` carries them out.
/// Immutable and shared by every worker.
public struct CompressionPolicy: Sendable, Hashable {
    /// The codings Portico may use, best first (the tie-break between codings a client weighs equally).
    public let preference: [ContentCoding]
    /// Responses with a `Content-Length` below this go uncompressed.
    public let minLength: Int
    public let levels: Levels
    let types: [MediaTypePattern]

    public struct Levels: Sendable, Hashable {
        public var gzip: Int
        public var br: Int
        public var zstd: Int
    }

    public static let defaultPreference: [ContentCoding] = [.zstd, .br, .gzip, .deflate]
    public static let defaultMinLength = 512
    /// What compresses well and is not compressed already (Caddy's and Traefik's lists, with fonts that are not
    /// WOFF, whose own compression would gain nothing).
    public static let defaultTypes = [
        "text/*", "application/json", "application/*+json", "application/javascript", "application/x-javascript",
        "application/ecmascript", "application/xml", "application/*+xml", "application/wasm", "application/x-ndjson",
        "image/svg+xml", "image/x-icon", "image/vnd.microsoft.icon", "font/ttf", "font/otf", "application/vnd.ms-fontobject",
    ]

    public init(_ config: CompressionConfig) {
        self.preference = config.encodings ?? Self.defaultPreference
        self.minLength = config.minLength?.bytes ?? Self.defaultMinLength
        self.types = (config.types ?? Self.defaultTypes).compactMap(MediaTypePattern.init(parsing:))
        self.levels = Levels(gzip: config.levels?.gzip ?? 6, br: config.levels?.br ?? 4, zstd: config.levels?.zstd ?? 3)
    }

    /// What to do with one response.
    public enum Decision: Sendable, Hashable {
        /// Send it as it is; nothing about it depends on `Accept-Encoding`.
        case leave
        /// Send it as it is, but another request's `Accept-Encoding` would have changed it: add
        /// `Vary: Accept-Encoding` so caches downstream keep the variants apart (RFC 9110 §12.5.5).
        case leaveVarying
        /// Compress it with this coding (`prepare` the head first).
        case compress(ContentCoding)
        /// A 304 to a client that would have got a compressed 200: its `ETag` made weak and `Vary` added, as the
        /// 200 had them (RFC 9110 §15.4.5: a 304 carries the fields the 200 would have). Otherwise the client
        /// would store a strong validator for compressed bytes (`notModified(_:)`).
        case notModified
    }

    /// Decides for a response `head` to a `method` request whose `Accept-Encoding` was `accept` (nil: none).
    /// Never compressed (RFC 9110, RFC 9111 §5.2.2.6): HEAD, 1xx, 204, 206, 304, a response that already has a
    /// content coding or a `Content-Range`, `Cache-Control: no-transform`, a type not listed, an empty body.
    public func decide(method: HTTPMethod, response head: HTTPResponseHead, accept: AcceptEncoding?) -> Decision {
        let status = head.status.code
        if status == 304 {
            // No body and usually no Content-Type: decide as for the 200 it stands for, as far as can be told.
            guard method == .GET, let accept, accept.choose(from: self.preference) != nil else { return .leave }
            if let type = head.headers.first(name: "content-type"), !self.types.contains(where: { $0.matches(type) }) { return .leave }
            for value in head.headers[canonicalForm: "cache-control"] where value.caseInsensitiveASCIIEqual("no-transform") { return .leave }
            return .notModified
        }
        guard status >= 200, status != 204, status != 206 else { return .leave }
        var contentLength: Int?
        var typeMatches = false
        for (name, value) in head.headers {
            switch name.utf8.count {
            case 12 where name.caseInsensitiveASCIIEqual("content-type"):
                typeMatches = self.types.contains { $0.matches(value) }
            case 14 where name.caseInsensitiveASCIIEqual("content-length"):
                contentLength = Int(value)
            case 16 where name.caseInsensitiveASCIIEqual("content-encoding"):
                if !value[...].trimmingOWS().caseInsensitiveASCIIEqual("identity") { return .leave }
            case 13 where name.caseInsensitiveASCIIEqual("content-range"):
                return .leave
            case 13 where name.caseInsensitiveASCIIEqual("cache-control"):
                for directive in value.split(separator: ",") where directive.trimmingOWS().caseInsensitiveASCIIEqual("no-transform") {
                    return .leave
                }
            default:
                break
            }
        }
        guard typeMatches, contentLength != 0 else { return .leave }
        guard method != .HEAD, let accept, let coding = accept.choose(from: self.preference) else { return .leaveVarying }
        // A client that refuses identity gets a compressed body however short it is.
        if let length = contentLength, length < self.minLength, accept.acceptsIdentity { return .leaveVarying }
        return .compress(coding)
    }

    /// A 304 standing for a compressed 200: `Vary` and a weak `ETag`, as that 200 had.
    public static func notModified(_ headers: inout HTTPHeaders) {
        Self.addVary(&headers)
        if let etag = headers.first(name: "etag"), etag.hasPrefix("\"") {
            headers.replaceOrAdd(name: "ETag", value: "W/" + etag)
        }
    }

    /// Adds `Vary: Accept-Encoding` unless `Vary` already names it or is `*`.
    public static func addVary(_ headers: inout HTTPHeaders) {
        for value in headers[canonicalForm: "vary"] where value == "*" || value.caseInsensitiveASCIIEqual("accept-encoding") {
            return
        }
        headers.add(name: "Vary", value: "Accept-Encoding")
    }

    /// Makes `head` describe the compressed body: the coding, no `Content-Length` (the body goes chunked or in
    /// HTTP/2 DATA frames), `Vary`, a weak `ETag` (the bytes differ from the origin's, RFC 9110 §8.8.1), and no
    /// `Accept-Ranges` (ranges of the compressed body are not offered).
    public static func prepare(_ head: inout HTTPResponseHead, for coding: ContentCoding) {
        head.headers.remove(name: "content-length")
        head.headers.remove(name: "accept-ranges")
        head.headers.remove(name: "content-encoding")  // at most `identity`, which decide() let through
        head.headers.add(name: "Content-Encoding", value: coding.rawValue)
        Self.notModified(&head.headers)
    }
}

/// A media-type pattern of `compression.types`.
struct MediaTypePattern: Sendable, Hashable {
    enum Kind: Hashable { case exact, anySubtype, suffix }
    let kind: Kind
    /// Lowercased: the whole type (exact), the type with its slash (`text/`), or the suffix with its plus (`+json`)
    /// and the type (`application/`).
    let text: String
    let type: String

    init?(parsing pattern: String) {
        let p = pattern.lowercased()
        guard let slash = p.firstIndex(of: "/"), slash != p.startIndex, !p[..<slash].contains("*") else { return nil }
        let type = String(p[...slash])
        let sub = p[p.index(after: slash)...]
        guard !sub.isEmpty else { return nil }
        if sub == "*" {
            (self.kind, self.text, self.type) = (.anySubtype, type, type)
        } else if sub.hasPrefix("*+"), sub.count > 2 {
            (self.kind, self.text, self.type) = (.suffix, String(sub.dropFirst()), type)
        } else if !sub.contains("*") {
            (self.kind, self.text, self.type) = (.exact, p, type)
        } else {
            return nil
        }
    }

    /// Whether a `Content-Type` value (parameters and case ignored) matches.
    func matches(_ contentType: String) -> Bool {
        let media = (contentType.split(separator: ";", maxSplits: 1).first ?? "").trimmingOWS().lowercased()
        switch self.kind {
        case .exact: return media == self.text
        case .anySubtype: return media.hasPrefix(self.text) && media.utf8.count > self.text.utf8.count
        case .suffix: return media.hasPrefix(self.type) && media.hasSuffix(self.text)
        }
    }
}
