//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Portico's parser for the responses of an HTTP/1.1 upstream (RFC 9112), replacing NIO's llhttp-based decoder on
/// the proxy's hot path. The head is located line by line as bytes arrive and parsed in one pass with the request
/// parser's field scanner (the same checks: no obs-fold, no whitespace before the colon, no CTL or NUL, no bare CR
/// or LF); bodies are slices of the receive buffer, framed by the request parser's Content-Length and chunked
/// decoding (chunk sizes, extensions and trailers checked the same way).
///
/// Framing (RFC 9112 §6.3): no body after a HEAD request, a 1xx, 204 or 304; chunked when Transfer-Encoding ends
/// in `chunked`; Content-Length when given; otherwise the body runs until the connection closes (`inputClosed`).
/// A response is refused (the connection is closed and the client gets 502) when it carries both
/// Transfer-Encoding and Content-Length, or differing or malformed Content-Length values:
/// the ambiguous framing nginx also rejects (`upstream sent "Content-Length" and "Transfer-Encoding" headers at the
/// same time`). Interim 1xx heads come without an end; a 101's head and end come, then the parser stops: the bytes
/// that follow are the new protocol's.
///
/// A pure value, no channels. Runs on the upstream connection's EventLoop.
package struct HTTP1ResponseParser: Sendable {
    package enum Part: Sendable {
        case head(HTTPResponseHead)
        /// A slice of the receive buffer.
        case body(ByteBuffer)
        case end(HTTPHeaders?)
    }

    private enum State: Sendable {
        case head(scanned: Int)
        case body(HTTP1RequestParser)
        case untilClose
        /// The response had no body: its end comes next (then, after a 101, nothing more).
        case endPending(thenStop: Bool)
        case stopped
        case failed(HTTP1ParseError)
    }

    private var state = State.head(scanned: 0)
    package let limits: HTTP1RequestParser.Limits

    /// Heads up to 64 KiB by default (NIO's decoder allowed 80 KB; nginx's `proxy_buffer_size` is 4–8 KiB).
    package init(limits: HTTP1RequestParser.Limits = .init(maxHeadBytes: 65536, maxTargetBytes: 65536, maxFields: 256)) {
        self.limits = limits
    }

    /// After a 101: what follows belongs to the new protocol.
    package var isStopped: Bool {
        if case .stopped = self.state { return true }
        return false
    }

    /// The next part from `buffer`, consuming its bytes; nil when more bytes are needed. `requestMethod` is the
    /// method of the request this response answers (a HEAD's response has no body). Every call after an error
    /// throws it again.
    package mutating func next(_ buffer: inout ByteBuffer, requestMethod: HTTPMethod) throws(HTTP1ParseError) -> Part? {
        switch self.state {
        case .failed(let error):
            throw error
        case .stopped:
            return nil
        case .endPending(let thenStop):
            self.state = thenStop ? .stopped : .head(scanned: 0)
            return .end(nil)
        case .untilClose:
            guard buffer.readableBytes > 0 else { return nil }
            return .body(buffer.readSlice(length: buffer.readableBytes)!)
        case .body(var body):
            self.state = .stopped  // no copy of the body parser while it runs
            defer { if case .stopped = self.state { self.state = body.isStopped ? .head(scanned: 0) : .body(body) } }
            do {
                return try body.next(&buffer).map { part in
                    switch part {
                    case .body(let slice): return .body(slice)
                    case .end(let trailers): return .end(trailers)
                    case .head: preconditionFailure("a body parser yields no head")
                    }
                }
            } catch {
                self.state = .failed(error)
                throw error
            }
        case .head(let scanned):
            do {
                return try self.parseHead(&buffer, scanned: scanned, requestMethod: requestMethod)
            } catch {
                self.state = .failed(error)
                throw error
            }
        }
    }

    /// The upstream closed its side: the end of a close-delimited body; nil otherwise (between responses, or a
    /// response cut short, which the connection's close reports).
    package mutating func inputClosed() -> Part? {
        guard case .untilClose = self.state else { return nil }
        self.state = .head(scanned: 0)
        return .end(nil)
    }

    // MARK: Head

    private mutating func parseHead(_ buffer: inout ByteBuffer, scanned: Int, requestMethod: HTTPMethod) throws(HTTP1ParseError) -> Part? {
        let maxHead = self.limits.maxHeadBytes
        let located: Int? = try buffer.withUnsafeReadableBytes { (p) throws(HTTP1ParseError) -> Int? in
            var lineStart = scanned
            guard let base = p.baseAddress else { return nil }
            while lineStart < p.count {
                guard let lf = memchr(base + lineStart, 0x0A, p.count - lineStart) else { break }
                let j = base.distance(to: UnsafeRawPointer(lf))
                if j == 0 || p[j - 1] != 0x0D { throw HTTP1ParseError(.bareLineFeed) }
                if j - 1 == lineStart {
                    if lineStart == 0 { throw HTTP1ParseError(.invalidStatusLine) }
                    if j - 1 > maxHead { throw HTTP1ParseError(.headTooLarge) }
                    return j + 1
                }
                lineStart = j + 1
            }
            if p.count > maxHead + 2 { throw HTTP1ParseError(.headTooLarge) }
            return nil
        }
        guard let end = located else {
            let lastLine = buffer.withUnsafeReadableBytes { p -> Int in
                var i = p.count
                while i > scanned, p[i - 1] != 0x0A { i -= 1 }
                return i
            }
            self.state = .head(scanned: lastLine)
            return nil
        }
        let bytes = buffer.readSlice(length: end)!
        let limits = self.limits
        let (head, framing) = try bytes.withUnsafeReadableBytes { (p) throws(HTTP1ParseError) -> (HTTPResponseHead, Framing) in
            try Self.parse(UnsafeRawBufferPointer(rebasing: p[0..<(end - 2)]), bytes, limits: limits, requestMethod: requestMethod)
        }
        switch framing {
        case .none:
            let code = head.status.code
            if code >= 100 && code < 200 && code != 101 {
                // Interim (100 Continue, 103 Early Hints): the final response follows; no end of its own.
                self.state = .head(scanned: 0)
            } else {
                self.state = .endPending(thenStop: code == 101)
            }
        case .contentLength(let n):
            self.state = n == 0 ? .endPending(thenStop: false) : .body(HTTP1RequestParser(bodyOfLength: n, limits: limits))
        case .chunked:
            self.state = .body(HTTP1RequestParser(bodyOfLength: nil, limits: limits))
        case .untilClose:
            self.state = .untilClose
        }
        return .head(head)
    }

    private enum Framing {
        case none
        case contentLength(Int)
        case chunked
        case untilClose
    }

    /// `HTTP-version SP status-code SP [ reason-phrase ] CRLF` (RFC 9112 §4; a missing SP after the code is
    /// accepted, as by nginx and HAProxy), then the field lines.
    private static func parse(_ p: UnsafeRawBufferPointer, _ bytes: ByteBuffer, limits: HTTP1RequestParser.Limits,
                              requestMethod: HTTPMethod) throws(HTTP1ParseError) -> (HTTPResponseHead, Framing) {
        guard p.count >= 12, p[0] == UInt8(ascii: "H"), p[1] == UInt8(ascii: "T"), p[2] == UInt8(ascii: "T"),
            p[3] == UInt8(ascii: "P"), p[4] == UInt8(ascii: "/"), p[5] == UInt8(ascii: "1"), p[6] == UInt8(ascii: "."),
            (0x30...0x39).contains(p[7]), p[8] == 0x20,
            (0x31...0x39).contains(p[9]), (0x30...0x39).contains(p[10]), (0x30...0x39).contains(p[11])
        else { throw HTTP1ParseError(.invalidStatusLine) }
        let minor = Int(p[7] - 0x30)
        let code = Int(p[9] - 0x30) * 100 + Int(p[10] - 0x30) * 10 + Int(p[11] - 0x30)
        var i = 12
        if i < p.count, p[i] == 0x20 {
            i += 1
        } else if i < p.count, p[i] != 0x0D {
            throw HTTP1ParseError(.invalidStatusLine)
        }
        // The reason phrase is checked, not kept: the status code's standard phrase goes to the client (as NIO's
        // decoder did), and a custom one would cost a string per response.
        while i < p.count, p[i] != 0x0D {
            guard p[i] == 0x09 || p[i] >= 0x20, p[i] != 0x7F else { throw HTTP1ParseError(.invalidStatusLine) }
            i += 1
        }
        guard i + 1 < p.count, p[i + 1] == 0x0A else { throw HTTP1ParseError(.bareCarriageReturn) }
        var scanner = HeadScanner(p: p, bytes: bytes, limits: limits)
        scanner.i = min(i + 2, p.count)
        var contentLength: Int?
        var badContentLength: HTTP1ParseError.Kind?
        var transferEncoding = false
        var lastIsChunked = false
        var headers: [(String, String)] = []
        headers.reserveCapacity(16)
        try scanner.scanFieldLines { f in
            let name = UnsafeRawBufferPointer(rebasing: p[Int(f.nameStart)..<Int(f.nameStart + f.nameLength)])
            let value = UnsafeRawBufferPointer(rebasing: p[Int(f.valueStart)..<Int(f.valueStart + f.valueLength)])
            if name.count == 14, HeadScanner.equals(name, "content-length") {
                // RFC 9110 §8.6: a list of identical values is one value; anything else is refused.
                var rest = value[...]
                while let element = HeadScanner.nextListElement(&rest) {
                    guard !element.isEmpty, element.count <= 18, element.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                        badContentLength = .invalidContentLength
                        break
                    }
                    let n = element.reduce(0) { $0 * 10 + Int($1 - 0x30) }
                    if let known = contentLength, known != n { badContentLength = .repeatedContentLength }
                    contentLength = n
                }
            } else if name.count == 17, HeadScanner.equals(name, "transfer-encoding") {
                var rest = value[...]
                while let element = HeadScanner.nextListElement(&rest) {
                    transferEncoding = true
                    lastIsChunked = HeadScanner.equals(UnsafeRawBufferPointer(rebasing: element), "chunked")
                }
            }
            headers.append((String(decoding: name, as: UTF8.self), String(decoding: value, as: UTF8.self)))
        }
        if let badContentLength { throw HTTP1ParseError(badContentLength) }
        let head = HTTPResponseHead(
            version: HTTPVersion(major: 1, minor: minor),
            status: HTTPResponseStatus(statusCode: code),
            headers: HTTPHeaders(headers))

        // RFC 9112 §6.3, in its order.
        if requestMethod == .HEAD || code < 200 || code == 204 || code == 304 { return (head, .none) }
        if transferEncoding {
            if contentLength != nil { throw HTTP1ParseError(.contentLengthWithTransferEncoding) }
            return (head, lastIsChunked ? .chunked : .untilClose)
        }
        if let contentLength { return (head, .contentLength(contentLength)) }
        return (head, .untilClose)
    }
}
