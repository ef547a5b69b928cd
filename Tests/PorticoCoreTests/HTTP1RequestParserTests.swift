//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1
import Testing

@testable import PorticoCore

/// The request parser on its own: every malformed class it must refuse (RFC 9112), every framing it must
/// accept, any split of the input across reads, and a differential round trip through `HTTP1HeadWriter`.
@Suite struct HTTP1RequestParserTests {
    /// A parsed request, with its body joined.
    struct Parsed: Equatable {
        var method: String
        var target: String
        var version: String
        var fields: [String]
        var body: [UInt8]
        var trailers: [String]
    }

    /// Parses every request in `input`, fed in pieces of `split` bytes (0: all at once).
    static func parse(_ input: [UInt8], split: Int = 0, limits: HTTP1RequestParser.Limits = .init()) throws(HTTP1ParseError) -> [Parsed] {
        var parser = HTTP1RequestParser(limits: limits)
        var buffer = ByteBuffer()
        var out: [Parsed] = []
        var current: Parsed?
        var offset = 0
        repeat {
            let end = split == 0 ? input.count : min(input.count, offset + split)
            buffer.writeBytes(input[offset..<end])
            offset = end
            while let part = try parser.next(&buffer) {
                switch part {
                case .head(let h):
                    current = Parsed(
                        method: h.method.rawValue,
                        target: h.target,
                        version: "\(h.version)",
                        fields: h.fields.map { "\(h.name($0)): \(h.value($0))" },
                        body: [],
                        trailers: []
                    )
                case .body(let b):
                    current!.body += b.readableBytesView
                case .end(let t):
                    current!.trailers = t.map { $0.map { "\($0.name): \($0.value)" } } ?? []
                    out.append(current!)
                    current = nil
                }
            }
        } while offset < input.count
        return out
    }

    static func parse(_ text: String, split: Int = 0) throws(HTTP1ParseError) -> [Parsed] {
        try Self.parse(Array(text.utf8), split: split)
    }

    static func error(_ text: String, limits: HTTP1RequestParser.Limits = .init()) -> HTTP1ParseError.Kind? {
        do {
            _ = try Self.parse(Array(text.utf8), limits: limits)
            return nil
        } catch {
            return error.kind
        }
    }

    // MARK: Refused (RFC 9112 MUSTs and smuggling vectors)

    /// One row per malformed class: the request, the error, and the status it maps to.
    static let malformed: [(String, HTTP1ParseError.Kind, Int)] = [
        // §6.1, §6.3: Content-Length with Transfer-Encoding.
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", .contentLengthWithTransferEncoding, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", .contentLengthWithTransferEncoding, 400),
        // §6.3: more than one, or a malformed, Content-Length.
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", .repeatedContentLength, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", .invalidContentLength, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", .invalidContentLength, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", .invalidContentLength, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", .invalidContentLength, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", .invalidContentLength, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", .invalidContentLength, 400),
        // §6.1: a Transfer-Encoding that is not a final chunked.
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", .transferEncodingNotChunked, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", .transferEncodingNotChunked, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n", .transferEncodingNotChunked, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", .transferEncodingNotChunked, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", .transferEncodingNotChunked, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", .transferEncodingNotChunked, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", .unsupportedTransferCoding, 501),
        // §6.1: Transfer-Encoding on HTTP/1.0.
        ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", .transferEncodingOnHTTP10, 400),
        // §5.2: obs-fold.
        ("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", .obsFold, 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", .obsFold, 400),
        ("GET / HTTP/1.1\r\n Host: a\r\n\r\n", .obsFold, 400),
        // §5.1: whitespace between the name and the colon.
        ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", .whitespaceBeforeColon, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n", .whitespaceBeforeColon, 400),
        // CTL and NUL in names and values.
        ("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\u{0}c\r\n\r\n", .invalidFieldValue, 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\u{7f}\r\n\r\n", .invalidFieldValue, 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\u{1b}c\r\n\r\n", .invalidFieldValue, 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX\u{0}A: b\r\n\r\n", .invalidFieldName, 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n", .invalidFieldName, 400),
        ("GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", .invalidFieldName, 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n", .whitespaceBeforeColon, 400),
        // §2.2: bare CR or LF line ends.
        ("GET / HTTP/1.1\nHost: a\r\n\r\n", .bareLineFeed, 400),
        ("GET / HTTP/1.1\r\nHost: a\n\r\n", .bareLineFeed, 400),
        ("GET / HTTP/1.1\r\nHost: a\r\n\n", .bareLineFeed, 400),
        ("GET / HTTP/1.1\r\nHost: a\rX-B: c\r\n\r\n", .bareCarriageReturn, 400),
        ("GET / HTTP/1.1\rHost: a\r\n\r\n", .bareCarriageReturn, 400),
        // §7.1: invalid chunk sizes, extensions and chunk ends.
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n", .invalidChunkSize, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", .invalidChunkSize, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\n", .invalidChunkSize, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", .invalidChunkSize, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n", .invalidChunkSize, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 5\r\n", .invalidChunkSize, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;\r\n", .invalidChunkExtension, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", .invalidChunkExtension, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a \r\nhello\r\n0\r\n\r\n", .invalidChunkExtension, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"b\r\n", .invalidChunkExtension, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\u{0}\r\n", .invalidChunkExtension, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n", .bareLineFeed, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", .invalidChunkEnd, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", .invalidChunkEnd, 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX : y\r\n\r\n", .whitespaceBeforeColon, 400),
        // §3.2: a missing or repeated Host; a Host with characters no authority has.
        ("GET / HTTP/1.1\r\n\r\n", .missingHost, 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", .repeatedHost, 400),
        ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", .invalidHost, 400),
        ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", .invalidHost, 400),
        ("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n", .invalidHost, 400),
        // §3.2.2: an absolute-form target whose authority disagrees with Host.
        ("GET http://b.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n", .hostMismatch, 400),
        ("GET http://user@a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n", .invalidTarget, 400),
        // Found by the fuzzer: an authority with characters no Host may have (it becomes the Host upstream).
        ("GUT http://a.''^^/x HTTP/1.0\r\nX-A: 1\r\n\r\n", .invalidTarget, 400),
        // §3: the request line.
        ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", .invalidTarget, 400),
        ("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", .invalidVersion, 400),
        ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", .invalidVersion, 400),
        ("GET /\u{1}x HTTP/1.1\r\nHost: a\r\n\r\n", .invalidTarget, 400),
        ("GET /\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n", .invalidTarget, 400),
        ("GET x HTTP/1.1\r\nHost: a\r\n\r\n", .invalidTarget, 400),
        // A fragment or a backslash: Portico would route on one path and the origin might serve another.
        ("GET /admin#/../public HTTP/1.1\r\nHost: a\r\n\r\n", .invalidTarget, 400),
        ("GET /public\\..\\admin HTTP/1.1\r\nHost: a\r\n\r\n", .invalidTarget, 400),
        ("GET * HTTP/1.1\r\nHost: a\r\n\r\n", .invalidTarget, 400),
        ("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", .invalidMethod, 400),
        (" GET / HTTP/1.1\r\nHost: a\r\n\r\n", .invalidMethod, 400),
        ("GET /\r\nHost: a\r\n\r\n", .invalidRequestLine, 400),
        ("GET / http/1.1\r\nHost: a\r\n\r\n", .invalidVersion, 400),
        ("GET / HTTP/1.10\r\nHost: a\r\n\r\n", .invalidVersion, 400),
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", .unsupportedVersion, 505),
        ("GET / HTTP/1.2\r\nHost: a\r\n\r\n", .unsupportedVersion, 505),
        ("GARBAGE\r\n\r\n", .invalidMethod, 400),
    ]

    @Test(arguments: 0..<Self.malformed.count)
    func refuses(_ row: Int) throws {
        let (request, kind, status) = Self.malformed[row]
        // Whole, and byte by byte (every state must reach the same verdict).
        for split in [0, 1] {
            do {
                let parsed = try Self.parse(Array(request.utf8), split: split)
                Issue.record("accepted \(request.debugDescription): \(parsed)")
            } catch {
                #expect(error.kind == kind, "\(request.debugDescription) split \(split)")
                #expect(error.status == status)
            }
        }
    }

    @Test func sizeLimits() {
        let limits = HTTP1RequestParser.Limits(maxHeadBytes: 256, maxTargetBytes: 64, maxFields: 4)
        #expect(Self.error("GET /\(String(repeating: "a", count: 100)) HTTP/1.1\r\nHost: a\r\n\r\n", limits: limits) == .uriTooLong)
        // Known to be too long before the line is complete.
        #expect(Self.error("GET /\(String(repeating: "a", count: 100))", limits: limits) == .uriTooLong)
        #expect(Self.error("GET / HTTP/1.1\r\nHost: a\r\nX: \(String(repeating: "b", count: 300))\r\n\r\n", limits: limits) == .headTooLarge)
        #expect(Self.error("GET / HTTP/1.1\r\nHost: a\r\nX: \(String(repeating: "b", count: 300))", limits: limits) == .headTooLarge)
        #expect(Self.error("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", limits: limits) == .tooManyFields)
        #expect(Self.error("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", limits: limits) == nil)
        // Found by the fuzzer: a target exactly at the limit, split after the request line's CR, is not too long.
        let atLimit = "GET /\(String(repeating: "a", count: 63)) HTTP/1.1\r\nHost: a\r\n\r\n"
        #expect((try? Self.parse(Array(atLimit.utf8), split: 1, limits: limits))?.count == 1)
        #expect(HTTP1ParseError(.headTooLarge).status == 431 && HTTP1ParseError(.uriTooLong).status == 414)
        // Trailers over their limit, whether they arrive in one read or byte by byte.
        let trailers = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: \(String(repeating: "t", count: 300))\r\n\r\n"
        let small = HTTP1RequestParser.Limits(maxTrailerBytes: 100)
        for split in [0, 1] {
            #expect(throws: HTTP1ParseError(.trailersTooLarge)) { _ = try Self.parse(Array(trailers.utf8), split: split, limits: small) }
        }
    }

    /// After an error, the parser stays failed: nothing after a bad request is ever parsed as a request.
    @Test func staysFailed() {
        var parser = HTTP1RequestParser()
        var buffer = ByteBuffer(string: "GET / HTTP/1.1\r\nHost : a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(throws: HTTP1ParseError.self) { _ = try parser.next(&buffer) }
        #expect(throws: HTTP1ParseError.self) { _ = try parser.next(&buffer) }
    }

    // MARK: Accepted

    @Test func framingsAndFacts() throws {
        let r = try Self.parse(
            "\r\nPOST /up?x=1 HTTP/1.1\r\nHost: Example.com:8080\r\nContent-Length: 5\r\nX-Empty:\r\nX-Pad: \t v \t\r\n\r\nhelloGET / HTTP/1.1\r\nhost: b\r\n\r\n"
        )
        #expect(r.count == 2)
        #expect(r[0] == Parsed(method: "POST", target: "/up?x=1", version: "HTTP/1.1", fields: ["Host: Example.com:8080", "Content-Length: 5", "X-Empty: ", "X-Pad: v"], body: Array("hello".utf8), trailers: []))
        #expect(r[1].method == "GET" && r[1].body.isEmpty)

        let chunked = try Self.parse("PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n5;name=\"v\\\"al\" ; n2 = v2\r\nhello\r\n1\r\n!\r\n0\r\nX-Sum: 1\r\nX-T: 2\r\n\r\n")
        #expect(chunked.first?.body == Array("hello!".utf8))
        #expect(chunked.first?.trailers == ["X-Sum: 1", "X-T: 2"])

        var buffer = ByteBuffer(string: "GET http://A.example/p HTTP/1.1\r\nHost: a.EXAMPLE\r\nConnection: close, X-Foo, Upgrade\r\nUpgrade: websocket\r\nExpect: 100-Continue\r\nTE: trailers;q=1, deflate\r\n\r\n")
        var parser = HTTP1RequestParser()
        guard case .head(let head) = try parser.next(&buffer) else { Issue.record("no head"); return }
        #expect(head.host == "a.EXAMPLE")
        #expect(head.connectionClose && head.connectionNamesOtherFields && !head.keepAlive)
        #expect(head.expectContinue && head.teTrailers)
        #expect(head.upgradeIndex == 2)
        #expect(head.absoluteFormAuthority != nil)
        #expect(head.first("upgrade") == "websocket")
        // After an Upgrade request (Connection names it) the parser stops: what follows belongs to the new protocol.
        buffer.writeBytes([0x81, 0x01, 0x78])
        #expect(try parser.next(&buffer).map { if case .end = $0 { true } else { false } } == true)
        #expect(try parser.next(&buffer) == nil)
        #expect(parser.isStopped && buffer.readableBytes == 3)

        // Upgrade without Connection: upgrade, or with a body, is ignored (RFC 9110 §7.8): the next request is parsed.
        for ignored in [
            "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 1\r\n\r\nxGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            #expect(try Self.parse(ignored).map(\.target) == ["/ws", "/next"])
        }
        let http10 = try Self.parse("GET / HTTP/1.0\r\n\r\n")
        #expect(http10.first?.version == "HTTP/1.0")
        let options = try Self.parse("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(options.first?.target == "*")
        let custom = try Self.parse("PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(custom.first?.method == "PURGE")
    }

    /// Every split of a pipelined stream into reads gives the same requests.
    @Test func everySplitGivesTheSameRequests() throws {
        let text = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcPOST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\n"
        let whole = try Self.parse(text)
        #expect(whole.count == 3)
        for split in 1...17 {
            #expect(try Self.parse(text, split: split) == whole, "split \(split)")
        }
    }

    // MARK: Differential

    /// Any request the parser accepts, written again by `HTTP1HeadWriter` with the framing Portico chooses and
    /// parsed again, gives the same method, target, fields (less the framing fields) and body.
    @Test func roundTripThroughTheWriter() throws {
        let inputs = [
            "GET /x?y=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nX-Many: 1\r\nX-Many: 2\r\n\r\n",
            "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\nhello world",
            "PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;e=1\r\nde\r\n0\r\n\r\n",
            "DELETE /d HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        ]
        for input in inputs {
            let first = try Self.parse(input)
            #expect(first.count == 1)
            let again = try Self.parse(Array(Self.reserialize(input).readableBytesView))
            #expect(again.count == 1)
            #expect(Self.withoutFraming(first[0]) == Self.withoutFraming(again[0]), "\(input.debugDescription)")
        }
    }

    static func withoutFraming(_ p: Parsed) -> Parsed {
        var p = p
        p.fields.removeAll { $0.lowercased().hasPrefix("content-length:") || $0.lowercased().hasPrefix("transfer-encoding:") || $0.lowercased().hasPrefix("host:") }
        p.version = "-"
        return p
    }

    /// Parses `input` (one request) and writes it again: head through `HTTP1HeadWriter`, body as Content-Length
    /// when the client gave one, else chunked.
    static func reserialize(_ input: String) throws -> ByteBuffer {
        var parser = HTTP1RequestParser()
        var buffer = ByteBuffer(string: input)
        var out = ByteBuffer()
        var chunked = false
        while let part = try parser.next(&buffer) {
            switch part {
            case .head(let h):
                let framing = h.framing
                chunked = framing == .chunked
                var extra: [(String, String)] = []
                if h.hostIndex == nil { extra.append(("Host", "added")) }
                HTTP1HeadWriter.writeRequest(h, framing: framing, extra: extra, into: &out)
            case .body(let b):
                if chunked { HTTP1HeadWriter.writeChunk(b, into: &out) } else { out.writeImmutableBuffer(b) }
            case .end(let t):
                if chunked { HTTP1HeadWriter.writeLastChunk(trailers: t, into: &out) }
            }
        }
        return out
    }
}
