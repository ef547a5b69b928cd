//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// The path routes are matched against: the request target's path without its query, with percent-encoded
/// unreserved characters decoded and dot segments removed (RFC 3986 §2.3, §5.2.4), so `/api/../admin` and
/// `/%61dmin` are routed as `/admin` is. The original target is what goes upstream; this only decides the route,
/// so a prefix rule cannot be bypassed by spelling the path differently.
public enum PathNormalizer {
    /// `target` is the request target in origin form (`/a/b?q`). Returns it unchanged when it is already normal
    /// (the common case, no allocation beyond the substring).
    public static func routingPath(_ target: Substring) -> Substring {
        let path: Substring
        if let q = target.utf8.firstIndex(where: { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }) {
            path = target[..<q]
        } else {
            path = target
        }
        var needsWork = false
        var prev: UInt8 = 0
        for b in path.utf8 {
            if b == UInt8(ascii: "%") || (b == UInt8(ascii: ".") && prev == UInt8(ascii: "/")) {
                needsWork = true
                break
            }
            prev = b
        }
        if !needsWork { return path }
        return Substring(removeDotSegments(decodeUnreserved(path)))
    }

    static func decodeUnreserved(_ s: Substring) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count)
        let bytes = Array(s.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%"), i + 2 < bytes.count, let v = hexByte(bytes[i + 1], bytes[i + 2]),
                isUnreserved(v)
            {
                out.append(v)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func removeDotSegments(_ path: String) -> String {
        var output: [Substring] = []
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        for (i, seg) in segments.enumerated() {
            if i == 0 { continue }  // before the leading "/"
            if seg == "." {
                if i == segments.count - 1 { output.append("") }
                continue
            }
            if seg == ".." {
                if !output.isEmpty { output.removeLast() }
                if i == segments.count - 1 { output.append("") }
                continue
            }
            output.append(seg)
        }
        return "/" + output.joined(separator: "/")
    }

    private static func isUnreserved(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    private static func hexByte(_ a: UInt8, _ b: UInt8) -> UInt8? {
        func v(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        guard let hi = v(a), let lo = v(b) else { return nil }
        return hi << 4 | lo
    }
}
