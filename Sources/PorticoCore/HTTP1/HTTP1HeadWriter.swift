//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1

/// Writes an HTTP/1.1 request head into one buffer by copying the client's field bytes from an
/// `HTTP1RequestHead`, leaving out the fields the caller drops and appending the caller's own, then framing the
/// body itself: `Content-Length` or `Transfer-Encoding: chunked`, never the client's framing fields
/// (RFC 9112 §6: the proxy frames every body it forwards).
///
/// A pure function of its inputs; runs on the connection's EventLoop and allocates only when `buffer` grows.
package enum HTTP1HeadWriter {
    /// Whether a field is hop-by-hop or framing, and never copied as is (RFC 9110 §7.6.1, RFC 9112 §6).
    package static func isHopByHopOrFraming(_ head: HTTP1RequestHead, _ field: HTTP1Field) -> Bool {
        switch field.nameLength {
        case 2: return head.nameEquals(field, "te")
        case 7: return head.nameEquals(field, "upgrade") || head.nameEquals(field, "trailer")
        case 10: return head.nameEquals(field, "connection") || head.nameEquals(field, "keep-alive")
        case 14: return head.nameEquals(field, "content-length")
        case 16: return head.nameEquals(field, "proxy-connection")
        case 17: return head.nameEquals(field, "transfer-encoding")
        case 19: return head.nameEquals(field, "proxy-authorization") || head.nameEquals(field, "proxy-authenticate")
        default: return false
        }
    }

    /// Writes `method SP target SP HTTP/1.1 CRLF`, the kept fields, `extra`, the framing field and the empty line.
    package static func writeRequest(
        _ head: HTTP1RequestHead,
        target: String? = nil,
        framing: HTTP1RequestHead.Framing,
        extra: [(String, String)] = [],
        into buffer: inout ByteBuffer,
        keep: (HTTP1Field) -> Bool = { _ in true }
    ) {
        buffer.writeString(head.method.rawValue)
        buffer.writeInteger(UInt8(ascii: " "))
        if let target {
            buffer.writeString(target)
        } else {
            var t = head.bytes.getSlice(at: head.bytes.readerIndex + Int(head.targetStart), length: Int(head.targetLength))!
            buffer.writeBuffer(&t)
        }
        buffer.writeStaticString(" HTTP/1.1\r\n")
        for f in head.fields where !Self.isHopByHopOrFraming(head, f) && keep(f) {
            var name = head.bytes.getSlice(at: head.bytes.readerIndex + Int(f.nameStart), length: Int(f.nameLength))!
            var value = head.bytes.getSlice(at: head.bytes.readerIndex + Int(f.valueStart), length: Int(f.valueLength))!
            buffer.writeBuffer(&name)
            buffer.writeStaticString(": ")
            buffer.writeBuffer(&value)
            buffer.writeStaticString("\r\n")
        }
        for (name, value) in extra {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        switch framing {
        case .none:
            break
        case .contentLength(let n):
            buffer.writeStaticString("Content-Length: ")
            buffer.writeString(String(n))
            buffer.writeStaticString("\r\n")
        case .chunked:
            buffer.writeStaticString("Transfer-Encoding: chunked\r\n")
        }
        buffer.writeStaticString("\r\n")
    }

    /// One chunk of a chunked body (RFC 9112 §7.1); an empty `data` writes nothing (a zero chunk would end it).
    package static func writeChunk(_ data: ByteBuffer, into buffer: inout ByteBuffer) {
        guard data.readableBytes > 0 else { return }
        buffer.writeString(String(data.readableBytes, radix: 16))
        buffer.writeStaticString("\r\n")
        var d = data
        buffer.writeBuffer(&d)
        buffer.writeStaticString("\r\n")
    }

    /// The last chunk and the trailer section.
    package static func writeLastChunk(trailers: HTTPHeaders?, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("0\r\n")
        for (name, value) in trailers ?? [:] {
            buffer.writeString(name)
            buffer.writeStaticString(": ")
            buffer.writeString(value)
            buffer.writeStaticString("\r\n")
        }
        buffer.writeStaticString("\r\n")
    }
}
