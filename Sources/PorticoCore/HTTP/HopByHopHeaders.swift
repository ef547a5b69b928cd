//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOHTTP1

/// Connection-specific header fields, which a proxy must not forward (RFC 9110 §7.6.1): Connection and every
/// field it names, plus Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding and Upgrade. Framing
/// (Transfer-Encoding, Content-Length) is re-derived by the encoder on each side.
public enum HopByHopHeaders {
    /// Removes hop-by-hop fields in place. Returns the `Connection` tokens seen (lowercased), so the caller can
    /// learn `close` without a second scan.
    ///
    /// Runs for every request and response: one pass finds the candidates (usually just `Connection:
    /// keep-alive`), its tokens are read in place, and only the fields present are removed.
    @discardableResult
    public static func strip(_ headers: inout HTTPHeaders) -> ConnectionTokens {
        var tokens = ConnectionTokens()
        var present: UInt8 = 0  // one bit per entry of `names`
        var named: [String] = []  // other fields named by Connection (rare; allocates only then)
        for (name, value) in headers {
            guard let index = Self.index(of: name) else { continue }
            present |= 1 << index
            guard index == 0 else { continue }  // Connection
            Self.forEachToken(value) { token in
                if token.caseInsensitiveASCIIEqual("close") {
                    tokens.close = true
                } else if token.caseInsensitiveASCIIEqual("keep-alive") {
                    tokens.keepAlive = true
                } else if !token.caseInsensitiveASCIIEqual("host") && !token.caseInsensitiveASCIIEqual("content-length") {
                    // A field this hop alone uses. Never the framing or routing fields we rely on.
                    named.append(String(token))
                }
            }
        }
        guard present != 0 else { return tokens }
        for (i, name) in Self.names.enumerated() where present & (1 << i) != 0 { headers.remove(name: name) }
        for name in named { headers.remove(name: name) }
        return tokens
    }

    /// The `close` and `keep-alive` tokens of the `Connection` fields, read in place (no allocation: NIO's
    /// `isKeepAlive` builds arrays of the field's tokens for every message that has one).
    public static func connectionTokens(_ headers: HTTPHeaders) -> ConnectionTokens {
        var tokens = ConnectionTokens()
        for (name, value) in headers where name.utf8.count == 10 && name.caseInsensitiveASCIIEqual("connection") {
            Self.forEachToken(value) { token in
                if token.caseInsensitiveASCIIEqual("close") {
                    tokens.close = true
                } else if token.caseInsensitiveASCIIEqual("keep-alive") {
                    tokens.keepAlive = true
                }
            }
        }
        return tokens
    }

    /// The non-empty elements of a comma-separated list (RFC 9110 §5.6.1), without their whitespace, in place.
    @inline(__always)
    private static func forEachToken(_ value: String, _ body: (Substring) -> Void) {
        var rest = Substring(value)
        while !rest.isEmpty {
            let comma = rest.firstIndex(of: ",") ?? rest.endIndex
            let token = rest[..<comma].trimmingOWS()
            rest = comma == rest.endIndex ? rest[comma...] : rest[rest.index(after: comma)...]
            if !token.isEmpty { body(token) }
        }
    }

    /// Whether an HTTP/1.x client keeps its connection after this request (RFC 9112 §9.3): from HTTP/1.1 on unless
    /// it says `close`; HTTP/1.0 only when it says `keep-alive` (and not `close`).
    public static func clientKeepsAlive(_ version: HTTPVersion, _ headers: HTTPHeaders) -> Bool {
        let tokens = Self.connectionTokens(headers)
        if tokens.close { return false }
        return version.major > 1 || version.minor >= 1 || tokens.keepAlive
    }

    /// The hop-by-hop fields every message loses, `Connection` first.
    static let names = ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"]

    /// The position of `name` in `names`, if it is one of them (ASCII case-insensitive, no allocation).
    @inline(__always)
    static func index(of name: String) -> Int? {
        switch name.utf8.count {
        case 10:
            if name.caseInsensitiveASCIIEqual("connection") { return 0 }
            if name.caseInsensitiveASCIIEqual("keep-alive") { return 1 }
        case 16: if name.caseInsensitiveASCIIEqual("proxy-connection") { return 2 }
        case 2: if name.caseInsensitiveASCIIEqual("te") { return 3 }
        case 7:
            if name.caseInsensitiveASCIIEqual("trailer") { return 4 }
            if name.caseInsensitiveASCIIEqual("upgrade") { return 6 }
        case 17: if name.caseInsensitiveASCIIEqual("transfer-encoding") { return 5 }
        default: break
        }
        return nil
    }
}

/// What a message's Connection header said.
public struct ConnectionTokens: Sendable, Equatable {
    public var close = false
    public var keepAlive = false
    public init() {}
}

extension Substring {
    /// Without the optional whitespace (spaces and tabs) around a list element (RFC 9110 §5.6.1).
    package func trimmingOWS() -> Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return s
    }
}

extension StringProtocol {
    /// ASCII case-insensitive comparison without allocating.
    @inlinable
    public func caseInsensitiveASCIIEqual(_ other: String) -> Bool {
        let a = self.utf8
        let b = other.utf8
        guard a.count == b.count else { return false }
        // Over the strings' bytes in place (native strings are contiguous): a `zip` of the two views went through
        // their generic iterators, about 1% of a small request's CPU in a profile.
        if let equal = a.withContiguousStorageIfAvailable({ pa in
            b.withContiguousStorageIfAvailable { pb in Self.equalIgnoringASCIICase(pa, pb) }
        }), let equal {
            return equal
        }
        for (x, y) in zip(a, b) where x != y {
            let lx = x >= 65 && x <= 90 ? x | 0x20 : x
            let ly = y >= 65 && y <= 90 ? y | 0x20 : y
            if lx != ly { return false }
        }
        return true
    }

    @usableFromInline
    static func equalIgnoringASCIICase(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        for i in 0..<a.count {
            let x = a[i]
            let y = b[i]
            if x == y { continue }
            let lx = x >= 65 && x <= 90 ? x | 0x20 : x
            let ly = y >= 65 && y <= 90 ? y | 0x20 : y
            if lx != ly { return false }
        }
        return true
    }
}
