//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

// Parse and serialize time and allocations per request for a few request shapes, so a regression in the
// HTTP/1.1 codec shows in one command (not part of `swift test`):
//
//     swift run -c release portico-codec-bench [iterations]
//
// Columns: the parser alone (head and body parts to the end of the request); the parser plus the conversion to
// NIO's `HTTPRequestHead` that the downstream handler still makes for the ProxyHandler; the parser plus
// `HTTP1HeadWriter` writing the upstream head (and chunk framing) into a reused buffer.

import CMallocCounter
import Foundation
import NIOCore
import NIOHTTP1
import PorticoCore

#if canImport(Glibc)
import Glibc
#endif

@main
enum CodecBench {
    static let shapes: [(String, String)] = [
        ("minimal GET", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        ("wrk GET", "GET /small HTTP/1.1\r\nHost: 127.0.0.1:19081\r\n\r\n"),
        (
            "browser GET",
            "GET /app/page?id=42&ref=home HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-GB,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\nReferer: https://www.example.com/\r\nConnection: keep-alive\r\nCookie: session=0123456789abcdef0123456789abcdef; theme=dark; consent=yes\r\nUpgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n\r\n"
        ),
        (
            "API POST 1 KiB",
            "POST /v1/items HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc\r\nContent-Length: 1024\r\n\r\n"
                + String(repeating: "x", count: 1024)
        ),
        (
            "chunked upload",
            "PUT /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + String(repeating: "y", count: 1024)
                + "\r\n400\r\n" + String(repeating: "z", count: 1024) + "\r\n0\r\n\r\n"
        ),
    ]

    static func main() throws {
        let iterations = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 200_000
        print("iterations per shape: \(iterations)")
        print("shape".padding(toLength: 16, withPad: " ", startingAt: 0), "| parse ns | allocs | +NIO head ns | allocs | +write ns | allocs")
        for (name, text) in Self.shapes {
            let input = ByteBuffer(string: text)
            var out = ByteBuffer()
            out.reserveCapacity(4096)
            let parse = try Self.measure(iterations) { try Self.parse(input, mode: 0, &out) }
            let nio = try Self.measure(iterations) { try Self.parse(input, mode: 1, &out) }
            let write = try Self.measure(iterations) { try Self.parse(input, mode: 2, &out) }
            func cell(_ m: (Double, Double)) -> String {
                "\(String(format: "%8.0f", m.0)) | \(String(format: "%6.2f", m.1))"
            }
            print(name.padding(toLength: 16, withPad: " ", startingAt: 0), "|", cell(parse), "|    ", cell(nio), "| ", cell(write))
        }
    }

    /// Nanoseconds and allocations per iteration.
    static func measure(_ n: Int, _ body: () throws -> Int) throws -> (Double, Double) {
        var sink = 0
        for _ in 0..<min(n, 1000) { sink &+= try body() }  // warm up
        let allocationsBefore = portico_allocation_count()
        var start = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        for _ in 0..<n { sink &+= try body() }
        var end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &end)
        let allocations = portico_allocation_count() - allocationsBefore
        let ns = Double(end.tv_sec - start.tv_sec) * 1e9 + Double(end.tv_nsec - start.tv_nsec)
        if sink == 42 { print("") }  // keep the work
        return (ns / Double(n), Double(allocations) / Double(n))
    }

    /// One request through the parser; mode 1 also builds NIO's head, mode 2 also writes the upstream head.
    @inline(never)
    static func parse(_ input: ByteBuffer, mode: Int, _ out: inout ByteBuffer) throws -> Int {
        var parser = HTTP1RequestParser()
        var buffer = input
        var result = 0
        var chunked = false
        if mode == 2 { out.clear() }
        while let part = try parser.next(&buffer) {
            switch part {
            case .head(let head):
                result &+= head.fields.count
                if mode == 1 {
                    result &+= head.makeNIOHead().headers.count
                } else if mode == 2 {
                    chunked = head.framing == .chunked
                    HTTP1HeadWriter.writeRequest(head, framing: head.framing, into: &out)
                }
            case .body(let b):
                result &+= b.readableBytes
                if mode == 2 {
                    if chunked { HTTP1HeadWriter.writeChunk(b, into: &out) } else { out.writeImmutableBuffer(b) }
                }
            case .end(let trailers):
                if mode == 2 && chunked { HTTP1HeadWriter.writeLastChunk(trailers: trailers, into: &out) }
                return result
            }
        }
        return result
    }
}
