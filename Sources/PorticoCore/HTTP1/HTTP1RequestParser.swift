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

/// Portico's HTTP/1.1 request parser (RFC 9112), strict where the RFC says MUST and wherever leniency has let
/// requests be smuggled past other proxies: CL with TE, repeated or malformed CL, any TE that is not a final
/// `chunked`, TE on HTTP/1.0, obs-fold, whitespace before the colon, CTL and NUL in names and values, bare CR or
/// LF, invalid chunk sizes and extensions, a missing or repeated Host, an absolute-form target whose authority
/// disagrees with Host, heads over the size limit (431) and targets over theirs (414).
///
/// It reads the receive buffer in place: a head is located line by line as bytes arrive (each byte is looked at
/// once while locating, once while parsing), then parsed in one pass into an `HTTP1RequestHead` that indexes
/// the client's bytes. Body parts are slices of the receive buffer, never copies.
///
/// A pure value: no channels, no allocation but the head's field array. Runs on the connection's EventLoop.
package struct HTTP1RequestParser: Sendable {
    package struct Limits: Hashable, Sendable {
        /// Request line and fields together; more gives 431.
        package var maxHeadBytes: Int
        /// The request target; longer gives 414.
        package var maxTargetBytes: Int
        package var maxFields: Int
        package var maxTrailerBytes: Int

        package init(maxHeadBytes: Int = 16384, maxTargetBytes: Int = 8192, maxFields: Int = 256, maxTrailerBytes: Int = 16384) {
            self.maxHeadBytes = maxHeadBytes
            self.maxTargetBytes = maxTargetBytes
            self.maxFields = maxFields
            self.maxTrailerBytes = maxTrailerBytes
        }
    }

    package enum Part: Sendable {
        case head(HTTP1RequestHead)
        /// A slice of the receive buffer.
        case body(ByteBuffer)
        case end(HTTPHeaders?)
    }

    private enum State: Sendable {
        /// Locating the end of a head; lines up to `scanned` end in CRLF.
        case head(scanned: Int)
        case endPending
        case contentLength(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers(scanned: Int)
        /// After a request that switches protocols (Upgrade, CONNECT): what follows is not HTTP/1.1.
        case stopped
        case failed(HTTP1ParseError)
    }

    package let limits: Limits
    private var state: State = .head(scanned: 0)
    /// After the current request's end, stop (`State.stopped`).
    private var stopAfterRequest = false

    package init(limits: Limits = .init()) {
        self.limits = limits
    }

    /// A parser for one message body only, framed by Content-Length or chunked, that stops at the body's end: the
    /// body parts of an upstream response (`HTTP1ResponseParser`), with the same chunk and trailer checks.
    package init(bodyOfLength contentLength: Int?, limits: Limits) {
        self.limits = limits
        self.stopAfterRequest = true
        if let contentLength {
            self.state = contentLength == 0 ? .endPending : .contentLength(remaining: contentLength)
        } else {
            self.state = .chunkSize
        }
    }

    /// True once a protocol switch was requested: the bytes that follow the request belong to the new protocol.
    package var isStopped: Bool {
        if case .stopped = self.state { return true }
        return false
    }

    /// The next part from `buffer`, consuming its bytes; nil when more bytes are needed (or after a protocol
    /// switch). Throws on malformed input; every later call throws the same error.
    package mutating func next(_ buffer: inout ByteBuffer) throws(HTTP1ParseError) -> Part? {
        switch self.state {
        case .failed(let error):
            throw error
        case .stopped:
            return nil
        case .endPending:
            return self.finishRequest(trailers: nil)
        case .head(let scanned):
            do {
                return try self.parseHead(&buffer, scanned: scanned)
            } catch {
                self.state = .failed(error)
                throw error
            }
        case .contentLength(let remaining):
            guard buffer.readableBytes > 0 else { return nil }
            let n = min(remaining, buffer.readableBytes)
            let slice = buffer.readSlice(length: n)!
            self.state = n == remaining ? .endPending : .contentLength(remaining: remaining - n)
            return .body(slice)
        case .chunkSize, .chunkData, .chunkDataEnd, .trailers:
            do {
                return try self.parseChunked(&buffer)
            } catch {
                self.state = .failed(error)
                throw error
            }
        }
    }

    private mutating func finishRequest(trailers: HTTPHeaders?) -> Part {
        self.state = self.stopAfterRequest ? .stopped : .head(scanned: 0)
        return .end(trailers)
    }

    // MARK: Head

    private mutating func parseHead(_ buffer: inout ByteBuffer, scanned: Int) throws(HTTP1ParseError) -> Part? {
        // RFC 9112 §2.2: empty lines before the request line are ignored.
        if scanned == 0 {
            while buffer.readableBytes >= 2, buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) == 0x0D0A {
                buffer.moveReaderIndex(forwardBy: 2)
            }
            if buffer.readableBytes == 1, buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) == 0x0D { return nil }
        }
        let limits = self.limits
        let located: Int? = try buffer.withUnsafeReadableBytes { (p) throws(HTTP1ParseError) -> Int? in
            try Self.locateHeadEnd(p, from: scanned, limits: limits)
        }
        guard let end = located else {
            // Remember how far complete lines go (only whole lines: the last one may still be arriving).
            self.state = .head(scanned: Self.endOfLastLine(buffer, from: scanned))
            return nil
        }
        // `end` is just past the empty line's LF; the head proper excludes the empty line.
        let headBytes = buffer.readSlice(length: end)!
        let head = try Self.parseHead(headBytes.getSlice(at: headBytes.readerIndex, length: end - 2)!, limits: limits)
        // RFC 9110 §7.8: Upgrade counts only when Connection names it, never on HTTP/1.0, and (Portico's rule) never
        // on a request with a body. CONNECT ends HTTP/1.1 on the connection too (it is refused with 405).
        self.stopAfterRequest =
            (head.upgradeIndex != nil && head.connectionUpgrade && head.version.minor >= 1
                && (head.framing == .none || head.framing == .contentLength(0)))
            || head.method == .CONNECT
        switch head.framing {
        case .none: self.state = .endPending
        case .contentLength(let n): self.state = n == 0 ? .endPending : .contentLength(remaining: n)
        case .chunked: self.state = .chunkSize
        }
        return .head(head)
    }

    /// Finds the end of the head (the index just past the empty line's LF), checking that every line ends in
    /// CRLF and that the size limits hold. Nil when the head is not complete yet.
    private static func locateHeadEnd(_ p: UnsafeRawBufferPointer, from scanned: Int, limits: Limits) throws(HTTP1ParseError) -> Int? {
        var lineStart = scanned
        let count = p.count
        guard let base = p.baseAddress else { return nil }
        while lineStart < count {
            guard let lf = memchr(base + lineStart, 0x0A, count - lineStart) else { break }
            let j = base.distance(to: UnsafeRawPointer(lf))
            if j == 0 || p[j - 1] != 0x0D { throw HTTP1ParseError(.bareLineFeed) }
            if j - 1 == lineStart {
                // The empty line: the head is complete.
                if j + 1 - 2 > limits.maxHeadBytes { throw HTTP1ParseError(.headTooLarge) }
                return j + 1
            }
            if lineStart == 0 {
                // The request line is complete: its target alone may be too long.
                try Self.checkRequestLineLength(p, end: j - 1, limits: limits)
            }
            lineStart = j + 1
        }
        if lineStart == 0 {
            // Still in the request line.
            try Self.checkRequestLineLength(p, end: count, limits: limits)
        }
        if count > limits.maxHeadBytes + 2 { throw HTTP1ParseError(.headTooLarge) }
        return nil
    }

    /// Just past the last LF in `buffer` at or after `scanned` (where the next scan may start).
    private static func endOfLastLine(_ buffer: ByteBuffer, from scanned: Int) -> Int {
        buffer.withUnsafeReadableBytes { p -> Int in
            var i = p.count
            while i > scanned, p[i - 1] != 0x0A { i -= 1 }
            return i
        }
    }

    /// 414 as soon as the target is known to be over the limit, even before the line is complete.
    private static func checkRequestLineLength(_ p: UnsafeRawBufferPointer, end: Int, limits: Limits) throws(HTTP1ParseError) {
        guard end > limits.maxTargetBytes else { return }
        var i = 0
        while i < end, p[i] != 0x20 { i += 1 }
        let targetStart = i + 1
        var j = targetStart
        // A CR ends the target too (the LF of a complete line may not have arrived yet).
        while j < end, p[j] != 0x20, p[j] != 0x0D { j += 1 }
        if j - targetStart > limits.maxTargetBytes { throw HTTP1ParseError(.uriTooLong) }
    }

    /// Parses a complete head (request line and field lines, each ending in CRLF, no empty line).
    package static func parseHead(_ bytes: ByteBuffer, limits: Limits) throws(HTTP1ParseError) -> HTTP1RequestHead {
        try bytes.withUnsafeReadableBytes { (p) throws(HTTP1ParseError) -> HTTP1RequestHead in
            var scanner = HeadScanner(p: p, bytes: bytes, limits: limits)
            return try scanner.parse()
        }
    }

    // MARK: Chunked body (RFC 9112 §7.1)

    private mutating func parseChunked(_ buffer: inout ByteBuffer) throws(HTTP1ParseError) -> Part? {
        while true {
            switch self.state {
            case .chunkSize:
                let maxLine = 4096
                let found: (size: Int, lineLength: Int)? = try buffer.withUnsafeReadableBytes { (p) throws(HTTP1ParseError) -> (Int, Int)? in
                    guard let base = p.baseAddress, let lf = memchr(base, 0x0A, min(p.count, maxLine)) else {
                        if p.count >= maxLine { throw HTTP1ParseError(.invalidChunkExtension) }
                        return nil
                    }
                    let j = base.distance(to: UnsafeRawPointer(lf))
                    if j == 0 || p[j - 1] != 0x0D { throw HTTP1ParseError(.bareLineFeed) }
                    return (try Self.parseChunkSizeLine(UnsafeRawBufferPointer(rebasing: p[0..<(j - 1)])), j + 1)
                }
                guard let found else { return nil }
                buffer.moveReaderIndex(forwardBy: found.lineLength)
                self.state = found.size == 0 ? .trailers(scanned: 0) : .chunkData(remaining: found.size)
            case .chunkData(let remaining):
                guard buffer.readableBytes > 0 else { return nil }
                let n = min(remaining, buffer.readableBytes)
                let slice = buffer.readSlice(length: n)!
                self.state = n == remaining ? .chunkDataEnd : .chunkData(remaining: remaining - n)
                return .body(slice)
            case .chunkDataEnd:
                guard buffer.readableBytes >= 2 else {
                    if buffer.readableBytes == 1, buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) != 0x0D {
                        throw HTTP1ParseError(.invalidChunkEnd)
                    }
                    return nil
                }
                guard buffer.readInteger(as: UInt16.self) == 0x0D0A else { throw HTTP1ParseError(.invalidChunkEnd) }
                self.state = .chunkSize
            case .trailers(let scanned):
                return try self.parseTrailers(&buffer, scanned: scanned)
            default:
                preconditionFailure("not in a chunked body")
            }
        }
    }

    /// `chunk-size [ chunk-ext ]` without the CRLF: 1*HEXDIG, then *( BWS ";" BWS name [ BWS "=" BWS value ] ).
    private static func parseChunkSizeLine(_ p: UnsafeRawBufferPointer) throws(HTTP1ParseError) -> Int {
        var i = 0
        var size = 0
        while i < p.count, let d = Self.hexValue(p[i]) {
            // 15 hex digits keep the size below 2^60: no overflow, and far beyond any real body.
            guard i < 15 else { throw HTTP1ParseError(.invalidChunkSize) }
            size = size << 4 | d
            i += 1
        }
        guard i > 0 else { throw HTTP1ParseError(.invalidChunkSize) }
        // Extensions: parsed to check their syntax, then ignored (RFC 9112 §7.1.1). BWS only before ";" and "=".
        while i < p.count {
            let whitespace = i
            while i < p.count, p[i] == 0x20 || p[i] == 0x09 { i += 1 }
            guard i < p.count else {
                if i > whitespace { throw HTTP1ParseError(.invalidChunkExtension) }
                break
            }
            guard p[i] == UInt8(ascii: ";") else { throw HTTP1ParseError(.invalidChunkSize) }
            i += 1
            while i < p.count, p[i] == 0x20 || p[i] == 0x09 { i += 1 }
            let nameStart = i
            while i < p.count, HTTP1Bytes.isTokenChar(p[i]) { i += 1 }
            guard i > nameStart else { throw HTTP1ParseError(.invalidChunkExtension) }
            var k = i
            while k < p.count, p[k] == 0x20 || p[k] == 0x09 { k += 1 }
            guard k < p.count, p[k] == UInt8(ascii: "=") else {
                if k > i && k == p.count { throw HTTP1ParseError(.invalidChunkExtension) }
                i = k
                continue
            }
            i = k + 1
            while i < p.count, p[i] == 0x20 || p[i] == 0x09 { i += 1 }
            guard i < p.count else { throw HTTP1ParseError(.invalidChunkExtension) }
            if p[i] == UInt8(ascii: "\"") {
                i += 1
                var closed = false
                while i < p.count {
                    let b = p[i]
                    if b == UInt8(ascii: "\"") {
                        closed = true
                        i += 1
                        break
                    }
                    if b == UInt8(ascii: "\\") {
                        i += 1
                        guard i < p.count, HTTP1Bytes.isFieldValueChar(p[i]) else { throw HTTP1ParseError(.invalidChunkExtension) }
                    } else if !HTTP1Bytes.isFieldValueChar(b) {
                        throw HTTP1ParseError(.invalidChunkExtension)
                    }
                    i += 1
                }
                guard closed else { throw HTTP1ParseError(.invalidChunkExtension) }
            } else {
                let valueStart = i
                while i < p.count, HTTP1Bytes.isTokenChar(p[i]) { i += 1 }
                guard i > valueStart else { throw HTTP1ParseError(.invalidChunkExtension) }
            }
        }
        return size
    }

    private static func hexValue(_ b: UInt8) -> Int? {
        switch b {
        case 0x30...0x39: return Int(b - 0x30)
        case 0x41...0x46: return Int(b - 0x41 + 10)
        case 0x61...0x66: return Int(b - 0x61 + 10)
        default: return nil
        }
    }

    /// The trailer section after the last chunk: field lines, then an empty line.
    private mutating func parseTrailers(_ buffer: inout ByteBuffer, scanned: Int) throws(HTTP1ParseError) -> Part? {
        // Common case: no trailers, just CRLF.
        if scanned == 0, buffer.readableBytes >= 2, buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) == 0x0D0A {
            buffer.moveReaderIndex(forwardBy: 2)
            return self.finishRequest(trailers: nil)
        }
        let maxTrailer = self.limits.maxTrailerBytes
        let located: Int? = try buffer.withUnsafeReadableBytes { (p) throws(HTTP1ParseError) -> Int? in
            var lineStart = scanned
            guard let base = p.baseAddress else { return nil }
            while lineStart < p.count {
                guard let lf = memchr(base + lineStart, 0x0A, p.count - lineStart) else { break }
                let j = base.distance(to: UnsafeRawPointer(lf))
                if j == 0 || p[j - 1] != 0x0D { throw HTTP1ParseError(.bareLineFeed) }
                if j - 1 == lineStart {
                    if j - 1 > maxTrailer { throw HTTP1ParseError(.trailersTooLarge) }
                    return j + 1
                }
                lineStart = j + 1
            }
            if p.count > maxTrailer { throw HTTP1ParseError(.trailersTooLarge) }
            return nil
        }
        guard let end = located else {
            self.state = .trailers(scanned: Self.endOfLastLine(buffer, from: scanned))
            return nil
        }
        let section = buffer.readSlice(length: end)!
        let limits = self.limits
        let trailers: HTTPHeaders = try section.withUnsafeReadableBytes { (p) throws(HTTP1ParseError) -> HTTPHeaders in
            var scanner = HeadScanner(p: UnsafeRawBufferPointer(rebasing: p[0..<(end - 2)]), bytes: section, limits: limits)
            let fields = try scanner.parseFieldLines()
            var headers = HTTPHeaders()
            for f in fields {
                headers.add(
                    name: section.getString(at: section.readerIndex + Int(f.nameStart), length: Int(f.nameLength)) ?? "",
                    value: section.getString(at: section.readerIndex + Int(f.valueStart), length: Int(f.valueLength)) ?? ""
                )
            }
            return headers
        }
        return self.finishRequest(trailers: trailers)
    }
}

/// Byte classes of RFC 9110 §5.6.2 (token) and §5.5 (field values).
package enum HTTP1Bytes {
    /// tchar: "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
    @inline(__always)
    package static func isTokenChar(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E: return true
        default: return false
        }
    }

    /// field-vchar, SP and HTAB: VCHAR (0x21-0x7E), obs-text (0x80-0xFF). Never NUL, CR, LF, other CTLs or DEL.
    @inline(__always)
    package static func isFieldValueChar(_ b: UInt8) -> Bool {
        b >= 0x20 ? b != 0x7F : b == 0x09
    }

    /// Characters of a request target: visible ASCII (RFC 3986 plus what clients send unencoded in queries), but
    /// never `#` (a fragment is not sent, RFC 9112 §3.2.1) or `\` (some origins read it as `/`): either would let
    /// Portico route on one path while the origin serves another.
    @inline(__always)
    package static func isTargetChar(_ b: UInt8) -> Bool {
        b > 0x20 && b < 0x7F && b != UInt8(ascii: "#") && b != UInt8(ascii: "\\")
    }

    /// Characters of a Host value: reg-name, IP literal and port (RFC 3986 §3.2.2).
    @inline(__always)
    package static func isHostChar(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        case UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: ":"),
            UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: "%"), UInt8(ascii: "!"), UInt8(ascii: "$"),
            UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "*"),
            UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="):
            return true
        default: return false
        }
    }
}
