//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2
import PorticoCore

/// How an HTTP/2 stream's header blocks map to the HTTP/1-style parts `ProxyHandler` reads and writes (RFC 9113
/// §8.3), for `HTTP2StreamTable`. Pure functions, callable from any thread.
///
/// Requests: `:method`, `:path` and `:authority` become the request line and `Host` (when the request has none); a
/// request of a method that may carry content, without `content-length`, gets `content-length: 0` when the
/// HEADERS end the stream and `transfer-encoding: chunked` otherwise (`ProxyHandler` frames bodies for the
/// upstream itself); a second HEADERS block is the trailers. NIOHTTP2 has validated the block already
/// (pseudo-header fields present, once, first; RFC 9113 §8.3.1). Responses: a head becomes its HPACK block in one
/// pass, connection-specific fields removed (RFC 9113 §8.2.2) and names lowercased (§8.2), without lowercasing
/// names already in lower case.
///
/// WebSocket over HTTP/2 (RFC 8441): an extended CONNECT (`:method CONNECT`, `:protocol websocket`, §4) becomes
/// what an HTTP/1.1 WebSocket client sends (RFC 6455 §4.1): `GET`, `Upgrade: websocket`, a fresh
/// `Sec-WebSocket-Key` (HTTP/2 clients send none), and the client's `Sec-WebSocket-Version` / `-Protocol` /
/// `-Extensions`. `ProxyHandler` then treats it as any WebSocket upgrade and answers the upstream's 101 with
/// `:status 200` (RFC 8441 §5).
enum HTTP2StreamMapping {
    /// Whether the block has `:protocol` (pseudo-header fields come first: RFC 9113 §8.3, validated).
    static func hasProtocol(_ block: HPACKHeaders) -> Bool {
        for (name, _, _) in block {
            guard name.utf8.first == UInt8(ascii: ":") else { return false }
            if name == ":protocol" { return true }
        }
        return false
    }

    static func requestHead(_ block: HPACKHeaders, endStream: Bool) -> Result<HTTPRequestHead, NIOHTTP2Errors.MissingPseudoHeader> {
        var method: String?
        var path: String?
        var authority: String?
        var hasHost = false
        var hasLength = false
        var fields: [(String, String)] = []
        fields.reserveCapacity(block.count)
        for (name, value, _) in block {
            if name.utf8.first == UInt8(ascii: ":") {
                switch name {
                case ":method": method = value
                case ":path": path = value
                case ":authority": authority = value
                default: break  // :scheme, :protocol (the extended CONNECT handler has seen it)
                }
                continue
            }
            if !hasHost && name == "host" { hasHost = true }
            if !hasLength && name == "content-length" { hasLength = true }
            fields.append((name, value))
        }
        guard let method else { return .failure(NIOHTTP2Errors.missingPseudoHeader(":method")) }
        // No `:path` (a plain CONNECT) or no authority at all (`:authority` nor `host`, RFC 9113 §8.3.1): passed on
        // as an empty target or without Host, which `ProxyHandler` answers with a 400 as for HTTP/1.1.
        if !hasHost, let authority { fields.insert(("host", authority), at: 0) }
        let m = HTTPMethod(rawValue: method)
        switch m {
        case .GET, .HEAD, .DELETE, .CONNECT, .TRACE:
            break
        default:
            if !hasLength { fields.append(endStream ? ("content-length", "0") : ("transfer-encoding", "chunked")) }
        }
        return .success(HTTPRequestHead(version: HTTPVersion(major: 2, minor: 0), method: m, uri: path ?? "", headers: HTTPHeaders(fields)))
    }

    static func regularFields(_ block: HPACKHeaders) -> HTTPHeaders {
        var fields: [(String, String)] = []
        fields.reserveCapacity(block.count)
        for (name, value, _) in block where name.utf8.first != UInt8(ascii: ":") { fields.append((name, value)) }
        return HTTPHeaders(fields)
    }

    /// `:status` (for a head) and the fields, lowercased, without connection-specific ones (RFC 9113 §8.2.2).
    static func block(status: UInt?, _ fields: HTTPHeaders) -> HPACKHeaders {
        var block = HPACKHeaders()
        block.reserveCapacity(fields.count + 1)
        if let status { block.add(name: ":status", value: String(status)) }
        let connection = fields.contains(name: "connection") ? fields[canonicalForm: "connection"] : []
        for (name, value) in fields {
            let lower = Self.lowercased(name)
            if Self.isConnectionSpecific(lower) || connection.contains(where: { $0.caseInsensitiveASCIIEqual(lower) }) {
                continue
            }
            block.add(name: lower, value: value)
        }
        return block
    }

    /// RFC 9113 §8.2.2's connection-specific fields (a lower-case name): by length first, so a field per response
    /// costs no hashing.
    static func isConnectionSpecific(_ name: String) -> Bool {
        switch name.utf8.count {
        case 10: return name == "connection" || name == "keep-alive"
        case 16: return name == "proxy-connection"
        case 17: return name == "transfer-encoding"
        case 7: return name == "upgrade"
        default: return false
        }
    }

    /// `name` in lower case; the same string (no copy) when it is already.
    private static func lowercased(_ name: String) -> String {
        name.utf8.contains(where: { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }) ? name.lowercased() : name
    }

    /// The HTTP/1.1 WebSocket handshake request for an RFC 8441 extended CONNECT, or nil for any other request.
    /// Other `:protocol` values are left to `ProxyHandler`, which refuses CONNECT.
    static func webSocketRequest(from h: HPACKHeaders) -> HPACKHeaders? {
        guard h.first(name: ":method") == "CONNECT", h.first(name: ":protocol")?.lowercased() == "websocket" else { return nil }
        var out = HPACKHeaders()
        out.reserveCapacity(h.count + 3)
        out.add(name: ":method", value: "GET")
        for (name, value, indexing) in h where name.utf8.first == UInt8(ascii: ":") && name != ":method" && name != ":protocol" {
            out.add(name: name, value: value, indexing: indexing)
        }
        for (name, value, indexing) in h where name.utf8.first != UInt8(ascii: ":") && name != "sec-websocket-key" {
            out.add(name: name, value: value, indexing: indexing)
        }
        out.add(name: "upgrade", value: "websocket")
        out.add(name: "sec-websocket-key", value: Self.randomKey())
        return out
    }

    /// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64 (RFC 6455 §4.1).
    static func randomKey() -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        var rng = SystemRandomNumberGenerator()
        let bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) } + [0, 0]
        var out: [UInt8] = []
        out.reserveCapacity(24)
        for i in stride(from: 0, to: 18, by: 3) {
            let n = Int(bytes[i]) << 16 | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
            out += [alphabet[n >> 18 & 63], alphabet[n >> 12 & 63], alphabet[n >> 6 & 63], alphabet[n & 63]]
        }
        out[22] = UInt8(ascii: "=")
        out[23] = UInt8(ascii: "=")
        return String(decoding: out, as: UTF8.self)
    }
}
