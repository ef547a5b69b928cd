//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

// libFuzzer target over `HTTP1RequestParser` (built only with PORTICO_FUZZ=1; see scripts/fuzz-http1-parser.sh).
//
// For every input it checks three properties, and traps (a crash libFuzzer saves) when one fails:
// 1. Parsing never crashes, whatever the bytes.
// 2. Feeding the input in pieces (sizes taken from the input itself) gives the same requests, or the same error,
//    as feeding it whole: no state of the parser decides differently on a split.
// 3. Differential: every request accepted, written again by `HTTP1HeadWriter` with the framing Portico chooses
//    and parsed again, gives the same method, target, fields (less framing and Host) and body.

import NIOCore
import NIOHTTP1
import PorticoCore

struct Parsed: Equatable {
    var method = ""
    var target = ""
    var fields: [String] = []
    var body: [UInt8] = []
    var trailers: [String] = []
    var framing = HTTP1RequestHead.Framing.none
}

enum Outcome: Equatable {
    case requests([Parsed], pending: Bool)
    case failed(HTTP1ParseError)
}

/// Small limits, so the fuzzer reaches them.
let fuzzLimits = HTTP1RequestParser.Limits(maxHeadBytes: 2048, maxTargetBytes: 512, maxFields: 32, maxTrailerBytes: 1024)

func run(_ input: [UInt8], pieces: [Int], limits: HTTP1RequestParser.Limits = fuzzLimits) -> Outcome {
    var parser = HTTP1RequestParser(limits: limits)
    var buffer = ByteBuffer()
    var out: [Parsed] = []
    var current: Parsed?
    var offset = 0
    var piece = 0
    repeat {
        let size = pieces.isEmpty ? input.count : max(1, pieces[piece % pieces.count])
        piece += 1
        let end = min(input.count, offset + size)
        buffer.writeBytes(input[offset..<end])
        offset = end
        do {
            while let part = try parser.next(&buffer) {
                switch part {
                case .head(let h):
                    precondition(current == nil, "a head inside a request")
                    var p = Parsed(method: h.method.rawValue, target: h.target)
                    p.fields = h.fields.map { "\(h.name($0)): \(h.value($0))" }
                    p.framing = h.framing
                    current = p
                case .body(let b):
                    precondition(current != nil, "a body outside a request")
                    precondition(b.readableBytes > 0, "an empty body part")
                    current!.body += b.readableBytesView
                case .end(let t):
                    precondition(current != nil, "an end outside a request")
                    if case .contentLength(let n) = current!.framing { precondition(current!.body.count == n, "body length differs from Content-Length") }
                    current!.trailers = t.map { $0.map { "\($0.name): \($0.value)" } } ?? []
                    out.append(current!)
                    current = nil
                }
            }
        } catch {
            return .failed(error)
        }
    } while offset < input.count
    return .requests(out, pending: current != nil)
}

func withoutFraming(_ fields: [String]) -> [String] {
    fields.filter {
        let l = $0.lowercased()
        return !(l.hasPrefix("content-length:") || l.hasPrefix("transfer-encoding:") || l.hasPrefix("host:")
            || l.hasPrefix("connection:") || l.hasPrefix("te:") || l.hasPrefix("upgrade:") || l.hasPrefix("keep-alive:")
            || l.hasPrefix("trailer:") || l.hasPrefix("proxy-connection:") || l.hasPrefix("proxy-authorization:")
            || l.hasPrefix("proxy-authenticate:"))
    }
}

/// Writes the first request of `input` again, as Portico would forward it.
func reserialize(_ input: [UInt8]) -> [UInt8]? {
    var parser = HTTP1RequestParser()
    var buffer = ByteBuffer(bytes: input)
    var out = ByteBuffer()
    var chunked = false
    do {
        while let part = try parser.next(&buffer) {
            switch part {
            case .head(let h):
                let framing = h.framing
                chunked = framing == .chunked
                // The target as the writer would send it (absolute-form stays as it is, with a Host that agrees).
                // Without Host (HTTP/1.0), Portico sends one: the absolute-form authority when there is one.
                var extra: [(String, String)] = []
                if h.hostIndex == nil {
                    let authority = h.absoluteFormAuthority.map {
                        h.bytes.getString(at: h.bytes.readerIndex + Int($0.lowerBound), length: $0.count) ?? ""
                    }
                    extra.append(("Host", authority ?? "added.example"))
                }
                // Host is kept; the writer drops framing and hop-by-hop fields itself.
                HTTP1HeadWriter.writeRequest(h, framing: framing, extra: extra, into: &out)
            case .body(let b):
                if chunked { HTTP1HeadWriter.writeChunk(b, into: &out) } else { out.writeImmutableBuffer(b) }
            case .end(let t):
                if chunked { HTTP1HeadWriter.writeLastChunk(trailers: t, into: &out) }
                return Array(out.readableBytesView)
            }
        }
    } catch {
        return nil
    }
    return nil
}

/// The same input read as upstream responses (`HTTP1ResponseParser`): heads, body bytes and trailers per response,
/// and whether one was still arriving; or the error. `head`: the requests were HEADs.
enum ResponseOutcome: Equatable {
    case responses([String], pending: Bool)
    case failed(HTTP1ParseError)
}

func runResponses(_ input: [UInt8], pieces: [Int], head: Bool) -> ResponseOutcome {
    var parser = HTTP1ResponseParser(limits: fuzzLimits)
    var buffer = ByteBuffer()
    var out: [String] = []
    var inResponse = false
    var body: [UInt8] = []
    var declaredLength: Int?
    var offset = 0
    var piece = 0
    repeat {
        let size = pieces.isEmpty ? input.count : max(1, pieces[piece % pieces.count])
        piece += 1
        let end = min(input.count, offset + size)
        buffer.writeBytes(input[offset..<end])
        offset = end
        do {
            while let part = try parser.next(&buffer, requestMethod: head ? .HEAD : .GET) {
                switch part {
                case .head(let h):
                    precondition(!inResponse || h.status.code < 200, "a head inside a response")
                    out.append("\(h.status.code) " + h.headers.map { "\($0.name): \($0.value)" }.joined(separator: "|"))
                    let code = h.status.code
                    inResponse = code >= 200 || code == 101
                    declaredLength = h.headers.first(name: "content-length").flatMap { Int($0) }
                    if head || code < 200 || code == 204 || code == 304 { declaredLength = 0 }
                    body = []
                case .body(let b):
                    precondition(inResponse, "a body outside a response")
                    precondition(b.readableBytes > 0, "an empty body part")
                    body += b.readableBytesView
                case .end(let t):
                    precondition(inResponse, "an end outside a response")
                    if let n = declaredLength, !out.last!.lowercased().contains("transfer-encoding") {
                        precondition(body.count == n, "body length differs from Content-Length")
                    }
                    out.append("body \(body.count) \(body.hashValue) trailers \(t?.count ?? -1)")
                    inResponse = false
                }
            }
        } catch {
            return .failed(error)
        }
    } while offset < input.count
    if let end = parser.inputClosed(), case .end = end {
        precondition(inResponse, "an end at the close outside a response")
        out.append("body \(body.count) \(body.hashValue) closed")
        inResponse = false
    }
    return .responses(out, pending: inResponse || !buffer.readableBytesView.isEmpty && !parser.isStopped)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP1Parser(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    let whole = run(input, pieces: [])
    // Piece sizes from the last bytes of the input (so the fuzzer explores splits as well as contents).
    let pieces = input.suffix(4).map { Int($0 % 17) + 1 }
    let split = run(input, pieces: pieces)
    switch (whole, split) {
    case (.failed(let a), .failed(let b)):
        // A size limit may be noticed before a syntax error further on, depending on where a read ends.
        precondition(a == b || a.status != 400 || b.status != 400, "split changed the error: \(a) vs \(b)")
    case (.requests(let a, let pendingA), .requests(let b, let pendingB)):
        precondition(a == b && pendingA == pendingB, "split changed the requests")
    case (.requests, .failed(let e)), (.failed(let e), .requests):
        preconditionFailure("accepted whole or split but not both: \(e)")
    }
    // The same bytes as responses: the same outcome whole and split.
    let asHead = (input.first ?? 0) & 1 == 1
    switch (runResponses(input, pieces: [], head: asHead), runResponses(input, pieces: pieces, head: asHead)) {
    case (.failed(let a), .failed(let b)):
        precondition(a == b || a.kind == .headTooLarge || b.kind == .headTooLarge || a.kind == .trailersTooLarge
            || b.kind == .trailersTooLarge, "split changed the response error: \(a) vs \(b)")
    case (.responses(let a, let pendingA), .responses(let b, let pendingB)):
        precondition(a == b && pendingA == pendingB, "split changed the responses")
    case (.responses, .failed(let e)), (.failed(let e), .responses):
        preconditionFailure("response accepted whole or split but not both: \(e)")
    }
    if case .requests(let requests, _) = whole, let first = requests.first,
        first.method != "CONNECT", let again = reserialize(input)
    {
        // What Portico writes is parsed with the default limits: it may add a field (Host) to one at the limit.
        guard case .requests(let reparsed, _) = run(again, pieces: [], limits: .init()), let second = reparsed.first else {
            preconditionFailure("a request Portico wrote was refused: \(String(decoding: again, as: UTF8.self).debugDescription)")
        }
        precondition(first.method == second.method, "method changed")
        precondition(first.target == second.target, "target changed")
        precondition(withoutFraming(first.fields) == withoutFraming(second.fields), "fields changed")
        precondition(first.body == second.body, "body changed")
    }
    return 0
}

// SwiftPM links an executable's entry point as `<module>_main`; it starts libFuzzer's driver with the target
// above (libFuzzer's own `main` is then not linked in).
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

@_cdecl("PorticoFuzzHTTP1_main")
public func fuzzerMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return runFuzzerDriver(&argc, &argv) { data, size in
        guard let data else { return 0 }
        return fuzzHTTP1Parser(data, size)
    }
}
