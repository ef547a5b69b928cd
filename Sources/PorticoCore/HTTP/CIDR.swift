//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The bytes of an IPv4 (4) or IPv6 (16) address literal.
public struct IPAddressBytes: Sendable, Hashable, CustomStringConvertible {
    /// Dotted IPv4, or IPv6 as eight hex groups (uncompressed; what `inet_pton` and the PROXY protocol take).
    public var description: String {
        if self.bytes.count == 4 { return self.bytes.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: self.bytes.count - 1, by: 2).map {
            String(UInt16(self.bytes[$0]) << 8 | UInt16(self.bytes[$0 + 1]), radix: 16)
        }.joined(separator: ":")
    }

    public var bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }

    public init?(_ text: String) {
        var buffer = [UInt8](repeating: 0, count: 16)
        if inet_pton(AF_INET, text, &buffer) == 1 {
            self.bytes = Array(buffer[0..<4])
            return
        }
        if inet_pton(AF_INET6, text, &buffer) == 1 {
            self.bytes = buffer
            return
        }
        return nil
    }

    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as its IPv4 form; anything else unchanged.
    public var unmapped: IPAddressBytes {
        if self.bytes.count == 16, self.bytes[0..<10].allSatisfy({ $0 == 0 }), self.bytes[10] == 0xff,
            self.bytes[11] == 0xff
        {
            return IPAddressBytes(bytes: Array(self.bytes[12..<16]))
        }
        return self
    }
}

/// An address range such as `10.0.0.0/8` or `fd00::/8`; a bare address means just that address.
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
    public var network: IPAddressBytes
    public var prefixLength: Int

    public init?(parsing text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddressBytes(String(parts[0])) else { return nil }
        let maxLength = address.bytes.count * 8
        var length = maxLength
        if parts.count == 2 {
            guard let n = Int(parts[1]), (0...maxLength).contains(n) else { return nil }
            length = n
        }
        self.network = address
        self.prefixLength = length
    }

    public func contains(_ address: IPAddressBytes) -> Bool {
        let a = address.bytes.count == self.network.bytes.count ? address : address.unmapped
        guard a.bytes.count == self.network.bytes.count else { return false }
        var remaining = self.prefixLength
        var i = 0
        while remaining > 0 {
            let mask: UInt8 = remaining >= 8 ? 0xff : ~(0xff >> UInt8(remaining))
            if a.bytes[i] & mask != self.network.bytes[i] & mask { return false }
            remaining -= 8
            i += 1
        }
        return true
    }

    public var description: String {
        "\(self.network)/\(self.prefixLength)"
    }
}
