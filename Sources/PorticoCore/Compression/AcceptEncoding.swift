//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// A request's `Accept-Encoding` (RFC 9110 §12.5.3): the codings a client takes, with their weights.
///
/// Parsed once per request of a compressing route, on its EventLoop; small and allocation-light (one array).
public struct AcceptEncoding: Sendable, Hashable {
    /// Weight in thousandths (RFC 9110 §12.4.2 `qvalue` has at most three decimals), per coding, as listed.
    private var weights: [(coding: Substring, q: Int)] = []

    public static func == (a: Self, b: Self) -> Bool {
        a.weights.elementsEqual(b.weights) { $0.coding == $1.coding && $0.q == $1.q }
    }
    public func hash(into hasher: inout Hasher) {
        for w in self.weights {
            hasher.combine(w.coding)
            hasher.combine(w.q)
        }
    }

    /// Parses every `Accept-Encoding` field value of a request. A member with an invalid weight is ignored
    /// (as nginx and Caddy do) rather than failing the request.
    public init<S: Sequence<String>>(fieldValues: S) {
        for value in fieldValues {
            for member in value.split(separator: ",") {
                var params = member.split(separator: ";").makeIterator()
                guard let name = params.next()?.trimmingOWS(), !name.isEmpty else { continue }
                var q = 1000
                var valid = true
                while let param = params.next() {
                    let p = param.trimmingOWS()
                    guard p.count >= 2, p.utf8.first == UInt8(ascii: "q") || p.utf8.first == UInt8(ascii: "Q"),
                        p.utf8.dropFirst().first == UInt8(ascii: "=")
                    else { continue }  // other parameters do not exist for Accept-Encoding; ignored
                    guard let weight = Self.parseQValue(p.dropFirst(2)) else { valid = false; break }
                    q = weight
                }
                if valid { self.weights.append((Substring(name.lowercased()), q)) }
            }
        }
    }

    /// RFC 9110 §12.4.2: `( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
    static func parseQValue(_ s: Substring) -> Int? {
        let bytes = Array(s.utf8)
        guard let first = bytes.first, first == UInt8(ascii: "0") || first == UInt8(ascii: "1") else { return nil }
        var value = Int(first - UInt8(ascii: "0")) * 1000
        guard bytes.count > 1 else { return value }
        guard bytes[1] == UInt8(ascii: "."), bytes.count <= 5 else { return nil }
        var scale = 100
        for b in bytes.dropFirst(2) {
            guard b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") else { return nil }
            value += Int(b - UInt8(ascii: "0")) * scale
            scale /= 10
        }
        return value <= 1000 ? value : nil
    }

    /// The weight the client gives `coding` (its own entry, then `*`), or nil when it names neither.
    func weight(of coding: String) -> Int? {
        var star: Int?
        for w in self.weights {
            if w.coding == coding[...] || (coding == "gzip" && w.coding == "x-gzip") { return w.q }
            if w.coding == "*" { star = w.q }
        }
        return star
    }

    /// The coding to use among `preference` (the server's order): the one with the highest weight above zero,
    /// the server's order breaking ties. Nil when the client accepts none of them.
    public func choose(from preference: [ContentCoding]) -> ContentCoding? {
        var best: ContentCoding?
        var bestQ = 0
        for coding in preference {
            if let q = self.weight(of: coding.rawValue), q > bestQ {
                best = coding
                bestQ = q
            }
        }
        return best
    }

    /// Whether the client takes the response as it is: not when it says `identity;q=0`, or `*;q=0` without an
    /// entry of its own for identity (RFC 9110 §12.5.3).
    public var acceptsIdentity: Bool {
        (self.weight(of: "identity") ?? 1) > 0
    }
}
