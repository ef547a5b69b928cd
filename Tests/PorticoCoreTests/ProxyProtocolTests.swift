//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import PorticoCore
import Testing

/// The PROXY protocol header, both versions (HAProxy's spec §2.1 and §2.2), parsed and written.
struct ProxyProtocolTests {
    func parse(_ bytes: [UInt8]) -> ProxyProtocol.ParseResult {
        ProxyProtocol.parse(ByteBuffer(bytes: bytes).readableBytesView)
    }

    func parse(_ text: String) -> ProxyProtocol.ParseResult { self.parse(Array(text.utf8)) }

    func addresses(_ src: String, _ sport: Int, _ dst: String, _ dport: Int) throws -> ProxyProtocol.Addresses {
        ProxyProtocol.Addresses(source: try SocketAddress(ipAddress: src, port: sport), destination: try SocketAddress(ipAddress: dst, port: dport))
    }

    @Test func version1() throws {
        let line = "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n"
        #expect(parse(line + "GET / HTTP/1.1\r\n") == .header(try addresses("203.0.113.7", 56324, "192.0.2.1", 443), length: line.utf8.count))
        #expect(parse("PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n") == .header(try addresses("2001:db8::1", 1, "2001:db8::2", 2), length: 40))
        #expect(parse("PROXY UNKNOWN\r\n") == .header(.init(source: nil, destination: nil), length: 15))
        #expect(parse("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n") == .header(.init(source: nil, destination: nil), length: 35))
        #expect(parse("PROXY TCP4 203.0.113.7 192.0.2.1 56324") == .incomplete)
        #expect(parse("PRO") == .incomplete)
        for bad in [
            "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\n",  // no CR
            "PROXY TCP4 203.0.113.7 192.0.2.1 056324 443\r\n",  // leading zero
            "PROXY TCP4 203.0.113.7 192.0.2.1 65536 443\r\n",  // port too large
            "PROXY TCP6 203.0.113.7 192.0.2.1 1 2\r\n",  // family mismatch
            "PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n",
            "PROXY TCP4 203.0.113.7  192.0.2.1 1 2\r\n",  // two spaces
            "PROXY UDP4 203.0.113.7 192.0.2.1 1 2\r\n",
            "GET / HTTP/1.1\r\n",
            "PROXY TCP4 " + String(repeating: "1", count: 100) + "\r\n",
        ] {
            guard case .invalid = parse(bad) else { Issue.record("accepted \(bad.debugDescription)"); continue }
        }
        guard case .invalid = parse("PROXY TCP4 " + String(repeating: "1", count: 120)) else { Issue.record("long line without LF"); return }
    }

    @Test func version2() throws {
        let v4: [UInt8] = ProxyProtocol.v2Signature + [0x21, 0x11, 0x00, 0x0C, 203, 0, 113, 7, 192, 0, 2, 1, 0xDC, 0x04, 0x01, 0xBB]
        #expect(parse(v4 + Array("GET".utf8)) == .header(try addresses("203.0.113.7", 56324, "192.0.2.1", 443), length: 28))
        #expect(parse(Array(v4.prefix(20))) == .incomplete)
        // TLVs after the addresses are skipped.
        let withTLV: [UInt8] = ProxyProtocol.v2Signature + [0x21, 0x11, 0x00, 0x11, 203, 0, 113, 7, 192, 0, 2, 1, 0, 1, 0, 2, 0x04, 0x00, 0x02, 0xAB, 0xCD]
        #expect(parse(withTLV) == .header(try addresses("203.0.113.7", 1, "192.0.2.1", 2), length: 33))
        var v6: [UInt8] = ProxyProtocol.v2Signature + [0x21, 0x21, 0x00, 0x24]
        v6 += [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [1]
        v6 += [0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [2]
        v6 += [0, 80, 1, 0xBB]
        #expect(parse(v6) == .header(try addresses("2001:db8::1", 80, "2001:db8::2", 443), length: 52))
        // LOCAL (a health check): no client.
        #expect(parse(ProxyProtocol.v2Signature + [0x20, 0x00, 0x00, 0x00]) == .header(.init(source: nil, destination: nil), length: 16))
        for bad: [UInt8] in [
            ProxyProtocol.v2Signature + [0x11, 0x11, 0x00, 0x00],  // version 1 in a v2 header
            ProxyProtocol.v2Signature + [0x22, 0x11, 0x00, 0x00],  // unknown command
            ProxyProtocol.v2Signature + [0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4],  // addresses cut short
            [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0B],
        ] {
            guard case .invalid = parse(bad) else { Issue.record("accepted \(bad)"); continue }
        }
    }

    @Test func encodedHeadersParseBack() throws {
        let pairs = [
            try addresses("203.0.113.7", 56324, "192.0.2.1", 443),
            try addresses("2001:db8::1", 1, "2001:db8::2", 2),
        ]
        for version in [ProxyProtocolVersion.v1, .v2] {
            for a in pairs {
                let header = ProxyProtocol.encode(version, source: a.source, destination: a.destination)
                #expect(ProxyProtocol.parse(header.readableBytesView) == .header(a, length: header.readableBytes), "\(version) \(a)")
            }
            // Different families: both as IPv6 (IPv4-mapped).
            let mixed = ProxyProtocol.encode(version, source: try SocketAddress(ipAddress: "203.0.113.7", port: 1), destination: try SocketAddress(ipAddress: "2001:db8::2", port: 2))
            guard case .header(let parsed, _) = ProxyProtocol.parse(mixed.readableBytesView) else { Issue.record("\(version) mixed"); continue }
            #expect(parsed.source?.ipAddress == "::ffff:203.0.113.7")
            let none = ProxyProtocol.encode(version, source: nil, destination: nil)
            #expect(ProxyProtocol.parse(none.readableBytesView) == .header(.init(source: nil, destination: nil), length: none.readableBytes))
        }
        #expect(String(buffer: ProxyProtocol.encode(.v1, source: pairs[0].source, destination: pairs[0].destination)) == "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n")
    }
}
