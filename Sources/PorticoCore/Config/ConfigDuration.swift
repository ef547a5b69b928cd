//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// A duration written as in nginx and Caddy: `250ms`, `5s`, `2m`, `1h`, or combined (`1m30s`).
/// A bare number means seconds. Units: `us`, `ms`, `s`, `m`, `h`, `d`.
public struct ConfigDuration: Codable, Sendable, Hashable, Comparable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    public static func milliseconds(_ v: Int64) -> Self { .init(nanoseconds: v * 1_000_000) }
    public static func seconds(_ v: Int64) -> Self { .init(nanoseconds: v * 1_000_000_000) }

    public static func < (a: Self, b: Self) -> Bool { a.nanoseconds < b.nanoseconds }

    /// Parses `text`, or returns nil when it is not a duration.
    public init?(parsing text: String) {
        let s = text.trimmingSpaces()
        if s.isEmpty { return nil }
        if let whole = Int64(s) {
            guard whole >= 0, whole < Int64.max / 1_000_000_000 else { return nil }
            self.nanoseconds = whole * 1_000_000_000
            return
        }
        var total: Int64 = 0
        var number: Double? = nil
        var digits = ""
        var unit = ""
        func flush() -> Bool {
            guard let n = number ?? Double(digits), !unit.isEmpty else { return false }
            let scale: Double
            switch unit {
            case "ns": scale = 1
            case "us", "µs": scale = 1_000
            case "ms": scale = 1_000_000
            case "s": scale = 1_000_000_000
            case "m": scale = 60_000_000_000
            case "h": scale = 3_600_000_000_000
            case "d": scale = 86_400_000_000_000
            default: return false
            }
            let value = n * scale
            guard value.isFinite, value >= 0, value < 9.2e18 else { return false }
            total += Int64(value)
            number = nil
            digits = ""
            unit = ""
            return true
        }
        for ch in s {
            if ch.isNumber || ch == "." {
                if !unit.isEmpty {
                    guard flush() else { return nil }
                }
                digits.append(ch)
            } else if ch.isLetter || ch == "µ" {
                guard !digits.isEmpty else { return nil }
                unit.append(ch)
            } else {
                return nil
            }
        }
        guard flush() else { return nil }
        self.nanoseconds = total
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int64.self) {
            guard n >= 0 else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "duration must not be negative")
            }
            self = .seconds(n)
            return
        }
        let s = try c.decode(String.self)
        guard let d = ConfigDuration(parsing: s) else {
            throw DecodingError.dataCorruptedError(
                in: c,
                debugDescription: "invalid duration \"\(s)\" (expected e.g. 250ms, 5s, 2m, 1h)"
            )
        }
        self = d
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(self.description)
    }

    public var description: String {
        let ns = self.nanoseconds
        if ns == 0 { return "0s" }
        if ns % 3_600_000_000_000 == 0 { return "\(ns / 3_600_000_000_000)h" }
        if ns % 60_000_000_000 == 0 { return "\(ns / 60_000_000_000)m" }
        if ns % 1_000_000_000 == 0 { return "\(ns / 1_000_000_000)s" }
        if ns % 1_000_000 == 0 { return "\(ns / 1_000_000)ms" }
        if ns % 1_000 == 0 { return "\(ns / 1_000)us" }
        return "\(ns)ns"
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return String(s)
    }
}
