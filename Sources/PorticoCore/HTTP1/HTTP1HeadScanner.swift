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

/// One pass over a complete request head (or a trailer section) whose lines are known to end in CRLF.
/// Used by `HTTP1RequestParser` only; the grammar is RFC 9112 §3 (request line) and §5 (field lines).
struct HeadScanner {
    let p: UnsafeRawBufferPointer
    let bytes: ByteBuffer
    let limits: HTTP1RequestParser.Limits
    var i = 0

    init(p: UnsafeRawBufferPointer, bytes: ByteBuffer, limits: HTTP1RequestParser.Limits) {
        self.p = p
        self.bytes = bytes
        self.limits = limits
    }

    private static let sp: UInt8 = 0x20
    private static let htab: UInt8 = 0x09
    private static let cr: UInt8 = 0x0D
    private static let lf: UInt8 = 0x0A

    mutating func parse() throws(HTTP1ParseError) -> HTTP1RequestHead {
        let p = self.p
        // method SP request-target SP HTTP-version CRLF
        while self.i < p.count, HTTP1Bytes.isTokenChar(p[self.i]) { self.i += 1 }
        guard self.i > 0, self.i < p.count, p[self.i] == Self.sp else { throw HTTP1ParseError(.invalidMethod) }
        let method = Self.method(UnsafeRawBufferPointer(rebasing: p[0..<self.i]))
        self.i += 1
        let targetStart = self.i
        while self.i < p.count, HTTP1Bytes.isTargetChar(p[self.i]) { self.i += 1 }
        guard self.i > targetStart, self.i < p.count, p[self.i] == Self.sp else {
            throw HTTP1ParseError(self.i < p.count && p[self.i] == Self.cr ? .invalidRequestLine : .invalidTarget)
        }
        let targetEnd = self.i
        if targetEnd - targetStart > self.limits.maxTargetBytes { throw HTTP1ParseError(.uriTooLong) }
        self.i += 1
        let version = try self.parseVersion()
        var head = HTTP1RequestHead(
            bytes: self.bytes,
            method: method,
            version: version,
            targetStart: Int32(targetStart),
            targetLength: Int32(targetEnd - targetStart)
        )
        head.fields = try self.parseFieldLines()
        try Self.analyze(&head, p)
        try Self.checkTarget(&head, p)
        return head
    }

    /// "HTTP/" DIGIT "." DIGIT CRLF. HTTP/1.0 and HTTP/1.1 are served; any other well-formed version gets 505.
    private mutating func parseVersion() throws(HTTP1ParseError) -> HTTPVersion {
        let p = self.p
        let i = self.i
        guard i + 10 <= p.count, p[i] == UInt8(ascii: "H"), p[i + 1] == UInt8(ascii: "T"), p[i + 2] == UInt8(ascii: "T"),
            p[i + 3] == UInt8(ascii: "P"), p[i + 4] == UInt8(ascii: "/"), p[i + 6] == UInt8(ascii: "."),
            (0x30...0x39).contains(p[i + 5]), (0x30...0x39).contains(p[i + 7])
        else { throw HTTP1ParseError(.invalidVersion) }
        guard p[i + 8] == Self.cr, p[i + 9] == Self.lf else {
            throw HTTP1ParseError(p[i + 8] == Self.cr ? .bareCarriageReturn : .invalidVersion)
        }
        self.i = i + 10
        let major = Int(p[i + 5] - 0x30)
        let minor = Int(p[i + 7] - 0x30)
        guard major == 1, minor <= 1 else { throw HTTP1ParseError(.unsupportedVersion) }
        return HTTPVersion(major: major, minor: minor)
    }

    /// Field lines from `i` to the end: `field-name ":" OWS field-value OWS CRLF`.
    mutating func parseFieldLines() throws(HTTP1ParseError) -> [HTTP1Field] {
        var fields: [HTTP1Field] = []
        if self.i < self.p.count { fields.reserveCapacity(16) }
        try self.scanFieldLines { fields.append($0) }
        return fields
    }

    /// Checks the field lines from `i` to the end and hands each to `visit`, without gathering them (a response's
    /// fields go straight into its `HTTPHeaders`).
    mutating func scanFieldLines(_ visit: (HTTP1Field) -> Void) throws(HTTP1ParseError) {
        let p = self.p
        var i = self.i
        let count = p.count
        var fieldCount = 0
        while i < count {
            let first = p[i]
            // RFC 9112 §5.2: obs-fold is rejected with 400.
            if first == Self.sp || first == Self.htab { throw HTTP1ParseError(.obsFold) }
            let nameStart = i
            while i < count, HTTP1Bytes.isTokenChar(p[i]) { i += 1 }
            guard i < count, p[i] == UInt8(ascii: ":") else {
                // RFC 9112 §5.1: no whitespace between the name and the colon.
                if i < count, p[i] == Self.sp || p[i] == Self.htab { throw HTTP1ParseError(.whitespaceBeforeColon) }
                throw HTTP1ParseError(.invalidFieldName)
            }
            guard i > nameStart else { throw HTTP1ParseError(.invalidFieldName) }
            let nameEnd = i
            i += 1
            while i < count, p[i] == Self.sp || p[i] == Self.htab { i += 1 }
            let valueStart = i
            var valueEnd = i
            while i < count {
                let b = p[i]
                if b == Self.cr { break }
                guard HTTP1Bytes.isFieldValueChar(b) else { throw HTTP1ParseError(.invalidFieldValue) }
                if b != Self.sp && b != Self.htab { valueEnd = i + 1 }
                i += 1
            }
            // Every line was checked to end in CRLF; a CR anywhere else is a bare CR.
            guard i + 1 < count, p[i + 1] == Self.lf else { throw HTTP1ParseError(.bareCarriageReturn) }
            i += 2
            fieldCount += 1
            if fieldCount > self.limits.maxFields { throw HTTP1ParseError(.tooManyFields) }
            visit(
                HTTP1Field(
                    nameStart: Int32(nameStart),
                    nameLength: Int32(nameEnd - nameStart),
                    valueStart: Int32(valueStart),
                    valueLength: Int32(valueEnd - valueStart)
                )
            )
        }
        self.i = i
    }

    // MARK: What the proxy needs, gathered once

    /// Framing (RFC 9112 §6), Host (§3.2), Connection (RFC 9110 §7.6.1), Upgrade, Expect and TE.
    private static func analyze(_ head: inout HTTP1RequestHead, _ p: UnsafeRawBufferPointer) throws(HTTP1ParseError) {
        var contentLength: Int?
        var transferEncoding = false
        var chunkedSeen = false
        var lastIsChunked = false
        var otherCoding = false
        for index in head.fields.indices {
            let f = head.fields[index]
            let name = UnsafeRawBufferPointer(rebasing: p[Int(f.nameStart)..<Int(f.nameStart + f.nameLength)])
            let value = UnsafeRawBufferPointer(rebasing: p[Int(f.valueStart)..<Int(f.valueStart + f.valueLength)])
            switch name.count {
            case 4 where Self.equals(name, "host"):
                guard head.hostIndex == nil else { throw HTTP1ParseError(.repeatedHost) }
                for b in value where !HTTP1Bytes.isHostChar(b) { throw HTTP1ParseError(.invalidHost) }
                head.hostIndex = index
            case 14 where Self.equals(name, "content-length"):
                guard contentLength == nil else { throw HTTP1ParseError(.repeatedContentLength) }
                guard !value.isEmpty, value.count <= 18 else { throw HTTP1ParseError(.invalidContentLength) }
                var n = 0
                for b in value {
                    guard b >= 0x30 && b <= 0x39 else { throw HTTP1ParseError(.invalidContentLength) }
                    n = n * 10 + Int(b - 0x30)
                }
                contentLength = n
            case 17 where Self.equals(name, "transfer-encoding"):
                transferEncoding = true
                var rest = value[...]
                while let element = Self.nextListElement(&rest) {
                    if Self.equals(UnsafeRawBufferPointer(rebasing: element), "chunked") {
                        // RFC 9112 §6.1: chunked is applied at most once.
                        if chunkedSeen { throw HTTP1ParseError(.transferEncodingNotChunked) }
                        chunkedSeen = true
                        lastIsChunked = true
                    } else {
                        otherCoding = true
                        lastIsChunked = false
                    }
                }
            case 10 where Self.equals(name, "connection"):
                var rest = value[...]
                while let element = Self.nextListElement(&rest) {
                    let token = UnsafeRawBufferPointer(rebasing: element)
                    if Self.equals(token, "close") {
                        head.connectionClose = true
                    } else if Self.equals(token, "keep-alive") {
                        head.connectionKeepAlive = true
                    } else if Self.equals(token, "upgrade") {
                        head.connectionUpgrade = true
                    } else {
                        head.connectionNamesOtherFields = true
                    }
                }
            case 7 where Self.equals(name, "upgrade"):
                if head.upgradeIndex == nil { head.upgradeIndex = index }
            case 6 where Self.equals(name, "expect"):
                if Self.equals(value, "100-continue") { head.expectContinue = true }
            case 2 where Self.equals(name, "te"):
                var rest = value[...]
                while let element = Self.nextListElement(&rest) {
                    // A t-codings member may carry parameters ("trailers" has none).
                    if Self.equals(UnsafeRawBufferPointer(rebasing: element), "trailers") { head.teTrailers = true }
                }
            default:
                break
            }
        }
        if transferEncoding {
            // RFC 9112 §6.1: a request with both is a smuggling attempt or an error; either way it is refused.
            if contentLength != nil { throw HTTP1ParseError(.contentLengthWithTransferEncoding) }
            if head.version.minor == 0 { throw HTTP1ParseError(.transferEncodingOnHTTP10) }
            // RFC 9112 §6.3: a request whose final coding is not chunked has no reliable length.
            if !lastIsChunked { throw HTTP1ParseError(.transferEncodingNotChunked) }
            // RFC 9112 §6.1: a coding the server does not understand gets 501.
            if otherCoding { throw HTTP1ParseError(.unsupportedTransferCoding) }
            head.framing = .chunked
        } else if let n = contentLength {
            head.framing = .contentLength(n)
        }
        // RFC 9112 §3.2: an HTTP/1.1 request without Host gets 400.
        if head.version.minor >= 1 && head.hostIndex == nil { throw HTTP1ParseError(.missingHost) }
    }

    /// The request target's form (RFC 9112 §3.2): origin-form, absolute-form (whose authority must agree with
    /// Host), `*` for OPTIONS, authority-form for CONNECT.
    private static func checkTarget(_ head: inout HTTP1RequestHead, _ p: UnsafeRawBufferPointer) throws(HTTP1ParseError) {
        let start = Int(head.targetStart)
        let target = UnsafeRawBufferPointer(rebasing: p[start..<(start + Int(head.targetLength))])
        if target[0] == UInt8(ascii: "/") { return }
        if head.method == .CONNECT { return }
        if target.count == 1 && target[0] == UInt8(ascii: "*") {
            guard head.method == .OPTIONS else { throw HTTP1ParseError(.invalidTarget) }
            return
        }
        let schemeLength: Int
        if target.count >= 7 && Self.equals(UnsafeRawBufferPointer(rebasing: target[0..<7]), "http://") {
            schemeLength = 7
        } else if target.count >= 8 && Self.equals(UnsafeRawBufferPointer(rebasing: target[0..<8]), "https://") {
            schemeLength = 8
        } else {
            throw HTTP1ParseError(.invalidTarget)
        }
        var end = schemeLength
        while end < target.count, target[end] != UInt8(ascii: "/"), target[end] != UInt8(ascii: "?"), target[end] != UInt8(ascii: "#") {
            // userinfo in the authority is deprecated (RFC 9110 §4.2.4) and a classic way to confuse parsers; the
            // authority becomes the Host upstream, so it may hold only what a Host may.
            if target[end] == UInt8(ascii: "@") || !HTTP1Bytes.isHostChar(target[end]) { throw HTTP1ParseError(.invalidTarget) }
            end += 1
        }
        guard end > schemeLength else { throw HTTP1ParseError(.invalidTarget) }
        let authority = UnsafeRawBufferPointer(rebasing: target[schemeLength..<end])
        if let hostIndex = head.hostIndex {
            let f = head.fields[hostIndex]
            let host = UnsafeRawBufferPointer(rebasing: p[Int(f.valueStart)..<Int(f.valueStart + f.valueLength)])
            guard Self.equalsIgnoringCase(authority, host) else { throw HTTP1ParseError(.hostMismatch) }
        }
        head.absoluteFormAuthority = Int32(start + schemeLength)..<Int32(start + end)
    }

    // MARK: Helpers

    /// Case-insensitive comparison with a lowercase ASCII literal, without allocating.
    @inline(__always)
    static func equals(_ bytes: UnsafeRawBufferPointer, _ lowercased: StaticString) -> Bool {
        guard bytes.count == lowercased.utf8CodeUnitCount else { return false }
        let expected = lowercased.utf8Start
        for i in 0..<bytes.count {
            let b = bytes[i]
            let lower = b >= 0x41 && b <= 0x5A ? b | 0x20 : b
            if lower != expected[i] { return false }
        }
        return true
    }

    static func equalsIgnoringCase(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        for i in 0..<a.count {
            let x = a[i] >= 0x41 && a[i] <= 0x5A ? a[i] | 0x20 : a[i]
            let y = b[i] >= 0x41 && b[i] <= 0x5A ? b[i] | 0x20 : b[i]
            if x != y { return false }
        }
        return true
    }

    /// The next member of a comma-separated list (RFC 9110 §5.6.1), trimmed of whitespace and of parameters
    /// after ";"; empty members are skipped.
    static func nextListElement(_ rest: inout Slice<UnsafeRawBufferPointer>) -> Slice<UnsafeRawBufferPointer>? {
        while !rest.isEmpty {
            let comma = rest.firstIndex(of: UInt8(ascii: ",")) ?? rest.endIndex
            var element = rest[rest.startIndex..<comma]
            rest = comma < rest.endIndex ? rest[(comma + 1)...] : rest[rest.endIndex...]
            if let semicolon = element.firstIndex(of: UInt8(ascii: ";")) { element = element[..<semicolon] }
            while let f = element.first, f == 0x20 || f == 0x09 { element = element.dropFirst() }
            while let l = element.last, l == 0x20 || l == 0x09 { element = element.dropLast() }
            if !element.isEmpty { return element }
        }
        return nil
    }

    /// The method, without allocating for the common ones.
    static func method(_ m: UnsafeRawBufferPointer) -> HTTPMethod {
        switch m.count {
        case 3:
            if Self.exact(m, "GET") { return .GET }
            if Self.exact(m, "PUT") { return .PUT }
        case 4:
            if Self.exact(m, "POST") { return .POST }
            if Self.exact(m, "HEAD") { return .HEAD }
        case 5:
            if Self.exact(m, "PATCH") { return .PATCH }
            if Self.exact(m, "TRACE") { return .TRACE }
        case 6:
            if Self.exact(m, "DELETE") { return .DELETE }
        case 7:
            if Self.exact(m, "OPTIONS") { return .OPTIONS }
            if Self.exact(m, "CONNECT") { return .CONNECT }
        default:
            break
        }
        // Methods are case-sensitive (RFC 9110 §9.1): "get" is not GET.
        return HTTPMethod(rawValue: String(decoding: m, as: UTF8.self))
    }

    @inline(__always)
    private static func exact(_ bytes: UnsafeRawBufferPointer, _ s: StaticString) -> Bool {
        guard bytes.count == s.utf8CodeUnitCount else { return false }
        return memcmp(bytes.baseAddress!, s.utf8Start, bytes.count) == 0
    }
}
