//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore

/// The PROXY protocol (HAProxy's spec, versions 1 and 2): the header a proxy sends first on a TCP connection to
/// say whose connection it relays. Pure parsing and encoding; the handlers that use it are in PorticoEngine.
public enum ProxyProtocol {
    /// The addresses a header carries (`nil` source: the sender relays nothing, e.g. its own health check, v2
    /// `LOCAL` or v1 `UNKNOWN`; the socket's address stands).
    public struct Addresses: Sendable, Equatable {
        public var source: SocketAddress?
        public var destination: SocketAddress?
        public init(source: SocketAddress?, destination: SocketAddress?) {
            self.source = source
            self.destination = destination
        }
    }

    public enum ParseResult: Equatable {
        /// More bytes are needed.
        case incomplete
        /// A header of `length` bytes; what follows is the relayed stream.
        case header(Addresses, length: Int)
        /// Not a valid header: the connection must be closed.
        case invalid(String)
    }

    /// The v2 signature (spec §2.2).
    public static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    /// The longest v1 line, CRLF included (spec §2.1).
    static let v1MaxLength = 107

    /// Parses the header at the start of `bytes`, either version.
    public static func parse(_ bytes: ByteBufferView) -> ParseResult {
        guard let first = bytes.first else { return .incomplete }
        if first == 0x0D { return self.parseV2(bytes) }
        if first == UInt8(ascii: "P") { return self.parseV1(bytes) }
        return .invalid("not a PROXY protocol header")
    }

    static func parseV1(_ bytes: ByteBufferView) -> ParseResult {
        let prefix = Array("PROXY ".utf8)
        for (i, b) in zip(bytes.indices, prefix) where bytes[i] != b { return .invalid("not a PROXY protocol header") }
        guard let lf = bytes.firstIndex(of: UInt8(ascii: "\n")) else {
            return bytes.count >= Self.v1MaxLength ? .invalid("v1 line longer than 107 bytes") : .incomplete
        }
        let length = lf - bytes.startIndex + 1
        guard length <= Self.v1MaxLength, length >= 8, bytes[lf - 1] == UInt8(ascii: "\r") else { return .invalid("malformed v1 line") }
        let line = String(decoding: bytes[bytes.startIndex..<(lf - 1)], as: UTF8.self)
        let fields = line.split(separator: " ", omittingEmptySubsequences: false)
        if fields.count >= 2 && fields[1] == "UNKNOWN" {
            return .header(Addresses(source: nil, destination: nil), length: length)
        }
        guard fields.count == 6, fields[1] == "TCP4" || fields[1] == "TCP6",
              let sport = Self.port(fields[4]), let dport = Self.port(fields[5]),
              let source = try? SocketAddress(ipAddress: String(fields[2]), port: sport),
              let destination = try? SocketAddress(ipAddress: String(fields[3]), port: dport),
              Self.family(source) == (fields[1] == "TCP4" ? 4 : 6), Self.family(destination) == Self.family(source)
        else { return .invalid("malformed v1 line") }
        return .header(Addresses(source: source, destination: destination), length: length)
    }

    /// A port as the spec writes it: decimal, no leading zero, at most 65535.
    static func port(_ s: Substring) -> Int? {
        guard !s.isEmpty, s.count <= 5, s.allSatisfy(\.isASCII), s == "0" || s.first != "0", let n = Int(s), n <= 65535 else { return nil }
        return n
    }

    static func family(_ address: SocketAddress) -> Int {
        if case .v4 = address { return 4 }
        if case .v6 = address { return 6 }
        return 0
    }

    static func parseV2(_ bytes: ByteBufferView) -> ParseResult {
        for (i, b) in zip(bytes.indices, Self.v2Signature) where bytes[i] != b { return .invalid("not a PROXY protocol header") }
        guard bytes.count >= 16 else { return .incomplete }
        let s = bytes.startIndex
        let versionCommand = bytes[s + 12], family = bytes[s + 13]
        let length = Int(bytes[s + 14]) << 8 | Int(bytes[s + 15])
        guard versionCommand >> 4 == 2 else { return .invalid("unknown v2 version") }
        guard bytes.count >= 16 + length else { return .incomplete }
        let body = bytes[(s + 16)..<(s + 16 + length)]
        switch versionCommand & 0x0F {
        case 0x0:  // LOCAL: the sender's own connection
            return .header(Addresses(source: nil, destination: nil), length: 16 + length)
        case 0x1:  // PROXY
            break
        default:
            return .invalid("unknown v2 command")
        }
        func address(_ offset: Int, _ size: Int, portAt: Int) -> SocketAddress? {
            let b = body.startIndex
            let ip = Array(body[(b + offset)..<(b + offset + size)])
            let port = Int(body[b + portAt]) << 8 | Int(body[b + portAt + 1])
            return try? SocketAddress(ipAddress: IPAddressBytes(bytes: ip).description, port: port)
        }
        switch family >> 4 {
        case 0x1 where length >= 12:  // AF_INET
            return .header(Addresses(source: address(0, 4, portAt: 8), destination: address(4, 4, portAt: 10)), length: 16 + length)
        case 0x2 where length >= 36:  // AF_INET6
            return .header(Addresses(source: address(0, 16, portAt: 32), destination: address(16, 16, portAt: 34)), length: 16 + length)
        case 0x0, 0x3:  // AF_UNSPEC, AF_UNIX: nothing we can use as a client address
            return .header(Addresses(source: nil, destination: nil), length: 16 + length)
        default:
            return .invalid("malformed v2 addresses")
        }
    }

    /// The header Portico sends to an upstream for a client at `source` that reached `destination` (a listener).
    /// Addresses of different families are both sent as IPv6 (IPv4-mapped).
    public static func encode(_ version: ProxyProtocolVersion, source: SocketAddress?, destination: SocketAddress?) -> ByteBuffer {
        var out = ByteBuffer()
        guard let source, let destination, var src = Self.ipBytes(source), var dst = Self.ipBytes(destination),
              let sport = source.port, let dport = destination.port
        else {
            // Nothing to relay: v1 UNKNOWN, v2 LOCAL.
            if version == .v1 {
                out.writeString("PROXY UNKNOWN\r\n")
            } else {
                out.writeBytes(Self.v2Signature)
                out.writeBytes([0x20, 0x00, 0x00, 0x00])
            }
            return out
        }
        if src.count != dst.count {
            if src.count == 4 { src = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] + src }
            if dst.count == 4 { dst = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] + dst }
        }
        switch version {
        case .v1:
            let family = src.count == 4 ? "TCP4" : "TCP6"
            out.writeString("PROXY \(family) \(IPAddressBytes(bytes: src)) \(IPAddressBytes(bytes: dst)) \(sport) \(dport)\r\n")
        case .v2:
            out.writeBytes(Self.v2Signature)
            out.writeInteger(UInt8(0x21))  // version 2, PROXY
            out.writeInteger(UInt8(src.count == 4 ? 0x11 : 0x21))  // TCP over IPv4 / IPv6
            out.writeInteger(UInt16(src.count * 2 + 4))
            out.writeBytes(src)
            out.writeBytes(dst)
            out.writeInteger(UInt16(sport))
            out.writeInteger(UInt16(dport))
        }
        return out
    }

    static func ipBytes(_ address: SocketAddress) -> [UInt8]? {
        address.ipAddress.flatMap(IPAddressBytes.init)?.bytes
    }
}
