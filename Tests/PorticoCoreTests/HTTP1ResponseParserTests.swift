//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1
import Testing

@testable import PorticoCore

/// The upstream response parser: framing by RFC 9112 §6.3 (HEAD, 1xx, 204, 304, chunked, Content-Length, until
/// close), interim responses, a 101's stop, and the ambiguous or malformed responses it refuses.
@Suite struct HTTP1ResponseParserTests {
    /// What the parser made of the input: "head <code> <fields>", "body <bytes>", "end [trailers]", in order.
    static func parse(_ text: String, methods: [HTTPMethod] = [.GET], split: Int = 0, close: Bool = false) throws(HTTP1ParseError) -> [String] {
        var parser = HTTP1ResponseParser()
        var buffer = ByteBuffer()
        var out: [String] = []
        var methods = methods
        let bytes = Array(text.utf8)
        var body: [UInt8] = []
        func drain() throws(HTTP1ParseError) {
            while let part = try parser.next(&buffer, requestMethod: methods.first ?? .GET) {
                switch part {
                case .head(let head):
                    out.append("head \(head.status.code) \(head.headers.map { "\($0.name)=\($0.value)" }.joined(separator: ","))")
                case .body(let slice):
                    body += slice.readableBytesView
                case .end(let trailers):
                    if !body.isEmpty { out.append("body \(String(decoding: body, as: UTF8.self))") }
                    body = []
                    out.append("end" + (trailers.map { " " + $0.map { "\($0.name)=\($0.value)" }.joined(separator: ",") } ?? ""))
                    if !methods.isEmpty { methods.removeFirst() }
                }
            }
        }
        let step = split > 0 ? split : max(bytes.count, 1)
        var i = 0
        while i < bytes.count {
            buffer.writeBytes(bytes[i..<min(i + step, bytes.count)])
            i += step
            try drain()
        }
        if close, let end = parser.inputClosed(), case .end = end {
            if !body.isEmpty { out.append("body \(String(decoding: body, as: UTF8.self))") }
            out.append("end")
        }
        return out
    }

    @Test func contentLengthAndChunkedBodiesInAnyPieces() throws {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello"
            + "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nGrpc-Status: 0\r\n\r\n"
        for split in [0, 1, 2, 7] {
            #expect(try Self.parse(text, methods: [.GET, .POST], split: split) == [
                "head 200 Content-Length=5,X-A=1", "body hello", "end",
                "head 201 Transfer-Encoding=chunked", "body abcde", "end Grpc-Status=0",
            ], "split \(split)")
        }
    }

    @Test func noBodyAfterHeadAnd204And304() throws {
        #expect(try Self.parse("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", methods: [.HEAD]) == ["head 200 Content-Length=100", "end"])
        #expect(try Self.parse("HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", methods: [.GET, .GET])
            == ["head 204 ", "end", "head 304 Content-Length=9", "end"])
    }

    @Test func aBodyWithoutLengthRunsUntilTheClose() throws {
        #expect(try Self.parse("HTTP/1.0 200 OK\r\n\r\nall of this", close: true) == ["head 200 ", "body all of this", "end"])
        // Transfer-Encoding that does not end in chunked: read until the close too (RFC 9112 §6.3, rule 4).
        #expect(try Self.parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz", close: true) == ["head 200 Transfer-Encoding=gzip", "body zz", "end"])
        // A close between responses, or in the middle of one, is no end.
        #expect(try Self.parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", close: true) == ["head 200 Content-Length=9"])
    }

    @Test func interimResponsesHaveNoEndAndA101Stops() throws {
        #expect(try Self.parse("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            == ["head 100 ", "head 103 Link=</a>", "head 200 Content-Length=0", "end"])
        var parser = HTTP1ResponseParser()
        var buffer = ByteBuffer(string: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\nabc")
        guard case .head(let head) = try parser.next(&buffer, requestMethod: .GET) else { Issue.record("no head"); return }
        #expect(head.status == .switchingProtocols)
        guard case .end = try parser.next(&buffer, requestMethod: .GET) else { Issue.record("no end"); return }
        #expect(parser.isStopped)
        #expect(try parser.next(&buffer, requestMethod: .GET) == nil)
        #expect(buffer.readableBytes == 3, "the tunnel's bytes are left for it")
        // A 1xx never has content, whatever its fields say (RFC 9110 §15.2; found by the fuzzer's own check).
        var withLength = HTTP1ResponseParser()
        var bytes = ByteBuffer(string: "HTTP/1.1 101 Switching Protocols\r\nContent-Length: 2\r\n\r\nab")
        _ = try withLength.next(&bytes, requestMethod: .GET)
        guard case .end = try withLength.next(&bytes, requestMethod: .GET) else { Issue.record("no end"); return }
        #expect(bytes.readableBytes == 2)
    }

    @Test func ambiguousOrMalformedResponsesAreRefused() {
        let refused: [(String, HTTP1ParseError.Kind)] = [
            ("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", .contentLengthWithTransferEncoding),
            ("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", .repeatedContentLength),
            ("HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n", .repeatedContentLength),
            ("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", .invalidContentLength),
            ("HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n", .invalidContentLength),
            ("HTTP/1.1 200 OK\nContent-Length: 3\r\n\r\n", .bareLineFeed),
            ("HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n", .obsFold),
            ("HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n", .whitespaceBeforeColon),
            ("HTTP/1.1 200 OK\r\nX-A: a\u{0}b\r\n\r\n", .invalidFieldValue),
            ("HTTP/2.0 200 OK\r\n\r\n", .invalidStatusLine),
            ("HTTP/1.1 20 OK\r\n\r\n", .invalidStatusLine),
            ("HTTP/1.1 099 Low\r\n\r\n", .invalidStatusLine),
            ("ICY 200 OK\r\n\r\n", .invalidStatusLine),
            ("\r\n", .invalidStatusLine),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", .invalidChunkSize),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd", .invalidChunkEnd),
        ]
        for (text, kind) in refused {
            #expect(throws: HTTP1ParseError(kind), "\(text.debugDescription)") { try Self.parse(text) }
        }
        // Identical repeated lengths are one length (RFC 9110 §8.6); a missing reason phrase is accepted.
        #expect((try? Self.parse("HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nab")) == ["head 200 Content-Length=2, 2", "body ab", "end"])
        #expect((try? Self.parse("HTTP/1.1 204\r\n\r\n")) == ["head 204 ", "end"])
    }

    @Test func aHeadOverTheLimitIsRefused() {
        let limits = HTTP1RequestParser.Limits(maxHeadBytes: 64, maxTargetBytes: 64, maxFields: 4)
        var parser = HTTP1ResponseParser(limits: limits)
        var big = ByteBuffer(string: "HTTP/1.1 200 OK\r\nX-Long: " + String(repeating: "a", count: 100))
        #expect(throws: HTTP1ParseError(.headTooLarge)) { _ = try parser.next(&big, requestMethod: .GET) }
        var many = HTTP1ResponseParser(limits: limits)
        var fields = ByteBuffer(string: "HTTP/1.1 200 OK\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n\r\n")
        #expect(throws: HTTP1ParseError(.tooManyFields)) { _ = try many.next(&fields, requestMethod: .GET) }
    }
}
