//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOHTTP1

/// Connection-specific header fields, which a proxy must not forward (RFC 9110 §7.6.1): Connection and every
/// field it names, plus Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding and Upgrade. Framing
/// (Transfer-Encoding, Content-Length) is re-derived by the encoder on each side.
public enum HopByHopHeaders {
    static let fixed: [String] = ["keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"]

    /// Removes hop-by-hop fields in place. Returns the `Connection` tokens seen (lowercased), so the caller can
    /// learn `close` without a second scan.
    @discardableResult
    public static func strip(_ headers: inout HTTPHeaders) -> ConnectionTokens {
        var tokens = ConnectionTokens()
        // Fast path: most messages carry none of these. One pass to check.
        var found = false
        for (name, _) in headers where Self.isCandidate(name) {
            found = true
            break
        }
        guard found else { return tokens }
        let connectionValues = headers[canonicalForm: "connection"]
        for token in connectionValues {
            let t = token.lowercased()
            switch t {
            case "close": tokens.close = true
            case "keep-alive": tokens.keepAlive = true
            default: break
            }
            if !t.isEmpty && t != "close" && t != "keep-alive" {
                // Never let Connection remove the end-to-end framing or routing headers we rely on.
                if t != "host" && t != "content-length" { headers.remove(name: t) }
            }
        }
        headers.remove(name: "connection")
        for name in Self.fixed { headers.remove(name: name) }
        return tokens
    }

    @inline(__always)
    static func isCandidate(_ name: String) -> Bool {
        let n = name.utf8.count
        guard n == 2 || n == 7 || n == 10 || n == 16 || n == 17 else { return false }
        return name.caseInsensitiveASCIIEqual("connection") || name.caseInsensitiveASCIIEqual("keep-alive")
            || name.caseInsensitiveASCIIEqual("proxy-connection") || name.caseInsensitiveASCIIEqual("te")
            || name.caseInsensitiveASCIIEqual("trailer") || name.caseInsensitiveASCIIEqual("transfer-encoding")
            || name.caseInsensitiveASCIIEqual("upgrade")
    }
}

/// What a message's Connection header said.
public struct ConnectionTokens: Sendable, Equatable {
    public var close = false
    public var keepAlive = false
    public init() {}
}

extension String {
    /// ASCII case-insensitive comparison without allocating.
    @inlinable
    public func caseInsensitiveASCIIEqual(_ other: String) -> Bool {
        let a = self.utf8
        let b = other.utf8
        guard a.count == b.count else { return false }
        for (x, y) in zip(a, b) where x != y {
            let lx = x >= 65 && x <= 90 ? x | 0x20 : x
            let ly = y >= 65 && y <= 90 ? y | 0x20 : y
            if lx != ly { return false }
        }
        return true
    }
}
