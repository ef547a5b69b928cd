//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// A route's host condition: an exact name or a `*.` wildcard that matches subdomains at any depth (nginx's
/// `*.example.org`; the bare `example.org` is not matched by it).
public enum HostPattern: Sendable, Hashable {
    case exact(String)
    /// The suffix including its leading dot: `.example.org`.
    case wildcard(String)

    public init?(parsing text: String) {
        let lower = text.lowercased()
        if lower.hasPrefix("*.") {
            let rest = lower.dropFirst(2)
            guard Self.isHostName(rest) else { return nil }
            self = .wildcard(String(lower.dropFirst(1)))
        } else {
            guard Self.isHostName(Substring(lower)) else { return nil }
            self = .exact(Self.normalize(Substring(lower)))
        }
    }

    static func isHostName(_ s: Substring) -> Bool {
        !s.isEmpty && s.count <= 253 && !s.hasPrefix(".") && !s.contains("..")
            && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "." || $0 == "_" || $0 == ":" || $0 == "[" || $0 == "]") }
    }

    /// Lowercase, without a trailing dot.
    static func normalize(_ s: Substring) -> String {
        var s = s
        if s.hasSuffix(".") { s = s.dropLast() }
        return String(s)
    }

    /// How specific the pattern is, for ordering: exact names first, then longer wildcards.
    var specificity: Int {
        switch self {
        case .exact: return 1_000_000
        case .wildcard(let suffix): return suffix.utf8.count
        }
    }

    func matches(_ host: String) -> Bool {
        switch self {
        case .exact(let name): return host == name
        case .wildcard(let suffix): return host.hasSuffix(suffix) && host.utf8.count > suffix.utf8.count
        }
    }
}

/// The host of a request as routes see it: from the Host header or an absolute-form target (RFC 9112 §3.2.2),
/// lowercased, without port and trailing dot. Allocates only for names longer than 15 bytes.
public func normalizedRequestHost(_ raw: Substring) -> String {
    var host = raw
    if host.hasPrefix("[") {
        if let close = host.firstIndex(of: "]") { host = host[...close] }
    } else if let colon = host.lastIndex(of: ":") {
        host = host[..<colon]
    }
    if host.hasSuffix(".") { host = host.dropLast() }
    var needsLowercase = false
    for b in host.utf8 where b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z") {
        needsLowercase = true
        break
    }
    return needsLowercase ? host.lowercased() : String(host)
}
