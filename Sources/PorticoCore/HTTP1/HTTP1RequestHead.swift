//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1

/// Where one header field's name and value lie in `HTTP1RequestHead.bytes` (offsets from its reader index).
/// The value is already trimmed of optional whitespace (RFC 9110 §5.5).
package struct HTTP1Field: Hashable, Sendable {
    package var nameStart: Int32
    package var nameLength: Int32
    package var valueStart: Int32
    package var valueLength: Int32
}

/// A parsed HTTP/1.1 request head that keeps the client's bytes and records where each part lies, instead of
/// building a string per name and value. What the proxy needs to decide about the request (framing, Host,
/// Connection tokens, Upgrade, Expect, TE) was gathered in the parser's one pass and is stored here.
///
/// A value type; made and read on the connection's EventLoop. `bytes` is a slice of the receive buffer, so
/// holding a head keeps that buffer alive until the head is dropped.
package struct HTTP1RequestHead: Sendable {
    /// How the request's body is delimited (RFC 9112 §6.3).
    package enum Framing: Hashable, Sendable {
        /// No body (no Content-Length, no Transfer-Encoding).
        case none
        case contentLength(Int)
        case chunked
    }

    /// The request line and the field lines, each ending in CRLF, without the empty line.
    package let bytes: ByteBuffer
    package var method: HTTPMethod
    package var version: HTTPVersion
    package var targetStart: Int32
    package var targetLength: Int32
    package var fields: [HTTP1Field]
    package var framing: Framing
    /// The index in `fields` of the Host field.
    package var hostIndex: Int?
    /// The index in `fields` of the Upgrade field.
    package var upgradeIndex: Int?
    /// Connection tokens (RFC 9110 §7.6.1).
    package var connectionClose = false
    package var connectionKeepAlive = false
    package var connectionUpgrade = false
    /// Connection names fields other than close, keep-alive and upgrade: those fields are hop-by-hop too.
    package var connectionNamesOtherFields = false
    /// `Expect: 100-continue` (RFC 9110 §10.1.1).
    package var expectContinue = false
    /// `TE` includes `trailers` (RFC 9110 §10.1.4).
    package var teTrailers = false
    /// The authority of an absolute-form target (RFC 9112 §3.2.2), if the target had that form.
    package var absoluteFormAuthority: Range<Int32>?

    package init(bytes: ByteBuffer, method: HTTPMethod, version: HTTPVersion, targetStart: Int32, targetLength: Int32) {
        self.bytes = bytes
        self.method = method
        self.version = version
        self.targetStart = targetStart
        self.targetLength = targetLength
        self.fields = []
        self.framing = .none
    }

    /// Whether the connection stays open after this request (RFC 9112 §9.3).
    package var keepAlive: Bool {
        if self.connectionClose { return false }
        return self.version.minor >= 1 || self.connectionKeepAlive
    }

    package var target: String { self.string(self.targetStart, self.targetLength) }

    package func name(_ field: HTTP1Field) -> String { self.string(field.nameStart, field.nameLength) }
    package func value(_ field: HTTP1Field) -> String { self.string(field.valueStart, field.valueLength) }

    /// The Host field's value.
    package var host: String? { self.hostIndex.map { self.value(self.fields[$0]) } }

    /// The first value of a field, by a lowercase name. Compares without allocating.
    package func first(_ lowercasedName: StaticString) -> String? {
        for f in self.fields where self.nameEquals(f, lowercasedName) {
            return self.value(f)
        }
        return nil
    }

    /// Whether `field`'s name is `lowercasedName`, ignoring ASCII case.
    package func nameEquals(_ field: HTTP1Field, _ lowercasedName: StaticString) -> Bool {
        guard Int(field.nameLength) == lowercasedName.utf8CodeUnitCount else { return false }
        return self.bytes.withUnsafeReadableBytes { p in
            let expected = UnsafeRawBufferPointer(start: lowercasedName.utf8Start, count: lowercasedName.utf8CodeUnitCount)
            let start = Int(field.nameStart)
            for i in 0..<expected.count where p[start + i] | 0x20 != expected[i] {
                return false
            }
            return true
        }
    }

    /// NIO's head type, for code that still works with `HTTPHeaders` (one string per name and value).
    package func makeNIOHead() -> HTTPRequestHead {
        var headers: [(String, String)] = []
        headers.reserveCapacity(self.fields.count)
        for f in self.fields { headers.append((self.name(f), self.value(f))) }
        return HTTPRequestHead(version: self.version, method: self.method, uri: self.target, headers: HTTPHeaders(headers))
    }

    private func string(_ start: Int32, _ length: Int32) -> String {
        self.bytes.getString(at: self.bytes.readerIndex + Int(start), length: Int(length)) ?? ""
    }
}
