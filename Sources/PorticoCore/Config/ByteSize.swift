//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// A size in bytes written `512`, `64KiB`, `10MiB`, `1GiB` (powers of 1024) or `10KB`, `5MB`, `1GB` (powers of
/// 1000, as the SI prefixes say). `k`, `K`, `m`, `M`, `g`, `G` alone mean KiB, MiB and GiB, as nginx reads them.
public struct ByteSize: Codable, Sendable, Hashable, Comparable, CustomStringConvertible {
    public var bytes: Int

    public init(bytes: Int) { self.bytes = bytes }
    public static func kibibytes(_ v: Int) -> Self { .init(bytes: v * 1024) }
    public static func mebibytes(_ v: Int) -> Self { .init(bytes: v * 1024 * 1024) }
    public static func < (a: Self, b: Self) -> Bool { a.bytes < b.bytes }

    public init?(parsing text: String) {
        let s = text.trimmingSpaces()
        guard let split = s.firstIndex(where: { !$0.isNumber }) else {
            guard let n = Int(s), n >= 0 else { return nil }
            self.bytes = n
            return
        }
        guard let n = Int(s[s.startIndex..<split]), n >= 0 else { return nil }
        let unit = String(s[split...]).trimmingSpaces()
        let scale: Int
        switch unit {
        case "B", "b": scale = 1
        case "KiB", "k", "K", "kib": scale = 1 << 10
        case "MiB", "m", "M", "mib": scale = 1 << 20
        case "GiB", "g", "G", "gib": scale = 1 << 30
        case "TiB": scale = 1 << 40
        case "KB", "kB", "kb": scale = 1_000
        case "MB", "mb": scale = 1_000_000
        case "GB", "gb": scale = 1_000_000_000
        default: return nil
        }
        let (v, overflow) = n.multipliedReportingOverflow(by: scale)
        if overflow { return nil }
        self.bytes = v
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int.self) {
            guard n >= 0 else { throw DecodingError.dataCorruptedError(in: c, debugDescription: "size must not be negative") }
            self.bytes = n
            return
        }
        let s = try c.decode(String.self)
        guard let v = ByteSize(parsing: s) else {
            throw DecodingError.dataCorruptedError(
                in: c,
                debugDescription: "invalid size \"\(s)\" (expected e.g. 512, 64KiB, 10MiB)"
            )
        }
        self = v
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(self.description)
    }

    public var description: String {
        let b = self.bytes
        if b != 0 && b % (1 << 30) == 0 { return "\(b >> 30)GiB" }
        if b != 0 && b % (1 << 20) == 0 { return "\(b >> 20)MiB" }
        if b != 0 && b % (1 << 10) == 0 { return "\(b >> 10)KiB" }
        return "\(b)"
    }
}
