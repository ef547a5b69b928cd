//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import NIOSSL
import PorticoCompression
import PorticoCore
import PorticoTestSupport
import Testing

/// Response compression through real listeners and a real origin, each body decoded with the reference C
/// libraries (zlib, brotli, zstd) as a client would.
@Suite(.serialized) struct CompressionTests {
    static let yaml = """
        listeners: [ { name: l, address: "127.0.0.1:0" } ]
        access_log: { destination: "off" }
        routes:
          - { match: { path: /local }, respond: { body: "\(String(repeating: "local answer ", count: 200))" }, compression: {} }
          - { cluster: c, compression: {} }
        clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
        """

    static func get(_ port: Int, _ target: String, _ fields: [String] = [], method: String = "GET") throws -> RawResponse {
        let c = try RawHTTPClient(port: port)
        try c.send("\(method) \(target) HTTP/1.1\r\nHost: t\r\n" + fields.map { $0 + "\r\n" }.joined() + "\r\n")
        guard let r = c.readResponses(1, headIndexes: method == "HEAD" ? [0] : []).first else { throw RawClientError("no response") }
        return r
    }

    static func respond(size: Int, _ fields: [String] = ["Content-Type: text/html; charset=utf-8"], chunked: Bool = false, status: Int = 200) -> String {
        var q = "/respond?status=\(status)&size=\(size)"
        for f in fields { q += "&h=" + f.replacingOccurrences(of: " ", with: "%20").replacingOccurrences(of: "+", with: "%2B") }
        return chunked ? q + "&chunked=1" : q
    }

    /// Each coding, from an origin with a Content-Length and from a chunked one: the body decodes to the origin's,
    /// the head says how it was encoded (RFC 9110 §8.4) and that it varies (§12.5.5), and it goes chunked.
    @Test func everyCodingRoundTrips() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: Self.yaml, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let expected = TestOrigin.text(size: 200_000)
        for coding in ["gzip", "deflate", "br", "zstd"] {
            for chunked in [false, true] {
                let r = try Self.get(proxy.port(), Self.respond(size: 200_000, chunked: chunked), ["Accept-Encoding: \(coding)"])
                #expect(r.status == 200)
                #expect(r.header("content-encoding") == coding, "\(coding)")
                #expect(r.header("content-length") == nil && r.header("transfer-encoding") == "chunked")
                #expect(r.header("vary") == "Accept-Encoding")
                #expect(r.bytes.count < 20_000, "\(coding): \(r.bytes.count) bytes")
                #expect(ContentDecoder.decode(r.bytes, coding: coding) == expected, "\(coding) chunked=\(chunked)")
            }
        }
        // The client's weights and Portico's preference (zstd, br, gzip, deflate) choose.
        for (accept, coding) in [("gzip, br", "br"), ("gzip;q=1, zstd;q=0.5", "gzip"), ("*", "zstd"), ("identity", nil), ("compress", nil)] {
            let r = try Self.get(proxy.port(), Self.respond(size: 5000), ["Accept-Encoding: \(accept)"])
            #expect(r.header("content-encoding") == coding, "\(accept)")
            #expect(r.header("vary") == "Accept-Encoding")
            if coding == nil { #expect(r.body == TestOrigin.text(size: 5000)) }
        }
    }

    /// Responses that are never compressed pass through byte for byte, with their own length.
    @Test func whatIsNeverCompressed() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: Self.yaml, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let accept = ["Accept-Encoding: gzip, br, zstd"]
        let cases: [(String, String, vary: Bool)] = [
            ("below min_length (512)", Self.respond(size: 300), true),
            ("a type not listed", Self.respond(size: 5000, ["Content-Type: image/png"]), false),
            ("no Content-Type", Self.respond(size: 5000, []), false),
            ("already encoded", Self.respond(size: 5000, ["Content-Type: text/plain", "Content-Encoding: br"]), false),
            ("no-transform", Self.respond(size: 5000, ["Content-Type: text/plain", "Cache-Control: public, no-transform"]), false),
            ("a partial response", Self.respond(size: 5000, ["Content-Type: text/plain", "Content-Range: bytes 0-4999/10000"], status: 206), false),
        ]
        for (what, target, vary) in cases {
            let r = try Self.get(proxy.port(), target, accept)
            #expect(r.header("content-encoding") == (what == "already encoded" ? "br" : nil), "\(what)")
            #expect(r.header("content-length") == String(r.bytes.count), "\(what)")
            #expect((r.header("vary") != nil) == vary, "\(what)")
        }
        // HEAD: the length of the uncompressed body, as the origin said.
        let head = try Self.get(proxy.port(), Self.respond(size: 5000), accept, method: "HEAD")
        #expect(head.status == 200 && head.header("content-encoding") == nil && head.header("content-length") == "5000")
        for status in [204, 304] {
            let r = try Self.get(proxy.port(), "/status/\(status)", accept)
            #expect(r.status == status && r.header("content-encoding") == nil)
        }
        // A client that refuses identity gets even a short body compressed (RFC 9110 §12.5.3).
        let forced = try Self.get(proxy.port(), Self.respond(size: 300), ["Accept-Encoding: gzip, identity;q=0"])
        #expect(forced.header("content-encoding") == "gzip")
        #expect(ContentDecoder.decode(forced.bytes, coding: "gzip") == TestOrigin.text(size: 300))
    }

    /// The compressed representation is a different one: its ETag is weak (RFC 9110 §8.8.1), the origin's Vary
    /// is kept, ranges are not offered; status codes other than 200 are compressed too.
    @Test func headFieldsOfACompressedResponse() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: Self.yaml, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let r = try Self.get(
            proxy.port(), Self.respond(size: 5000, ["Content-Type: text/css", "ETag: \"v7\"", "Vary: Origin", "Accept-Ranges: bytes"], status: 404),
            ["Accept-Encoding: br"])
        #expect(r.status == 404 && r.header("content-encoding") == "br")
        #expect(r.header("etag") == "W/\"v7\"")
        #expect(r.headers.filter { $0.0.lowercased() == "vary" }.map(\.1) == ["Origin", "Accept-Encoding"])
        #expect(r.header("accept-ranges") == nil)
        #expect(ContentDecoder.decode(r.bytes, coding: "br") == TestOrigin.text(size: 5000))
    }

    /// A 304 to a client that would have got the compressed 200 carries that 200's weak ETag and Vary (RFC 9110
    /// §15.4.5), so the client does not store a strong validator for compressed bytes; other 304s are left alone.
    @Test func notModifiedMatchesTheCompressedRepresentation() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: Self.yaml, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let notModified = Self.respond(size: 0, ["ETag: \"v7\""], status: 304)
        let r = try Self.get(proxy.port(), notModified, ["Accept-Encoding: gzip", "If-None-Match: W/\"v7\""])
        #expect(r.status == 304 && r.header("etag") == "W/\"v7\"" && r.header("vary") == "Accept-Encoding")
        let identity = try Self.get(proxy.port(), notModified, ["If-None-Match: \"v7\""])
        #expect(identity.status == 304 && identity.header("etag") == "\"v7\"" && identity.header("vary") == nil)
        let image = try Self.get(proxy.port(), Self.respond(size: 0, ["ETag: \"i\"", "Content-Type: image/png"], status: 304), ["Accept-Encoding: gzip"])
        #expect(image.header("etag") == "\"i\"")
    }

    /// A route's own answer is compressed too, and has a Content-Length (its whole body is known).
    @Test func localAnswersAreCompressed() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: Self.yaml, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let r = try Self.get(proxy.port(), "/local", ["Accept-Encoding: zstd"])
        #expect(r.header("content-encoding") == "zstd")
        #expect(r.header("content-length") == String(r.bytes.count) && r.bytes.count < 200)
        #expect(ContentDecoder.decode(r.bytes, coding: "zstd") == String(repeating: "local answer ", count: 200))
    }

    /// Streaming: when the origin pauses, what it sent so far reaches the client decodable (server-sent events,
    /// long polls). The origin holds its second event for a minute; the first must decode while it does.
    @Test(arguments: ["gzip", "deflate", "br", "zstd"])
    func aPausedStreamIsFlushed(coding: String) async throws {
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: Self.yaml, origins: [origin], workers: 1)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let c = try RawHTTPClient(port: proxy.port(), timeoutSeconds: 30)
        try c.send("GET /stream/60000 HTTP/1.1\r\nHost: t\r\nAccept-Encoding: \(coding)\r\n\r\n")
        let head = try #require(c.readUntil("\r\n\r\n"))
        #expect(head.contains("Content-Encoding: \(coding)") && head.contains("Transfer-Encoding: chunked"))
        let decoder = ContentDecoder(coding: coding)
        var decoded: [UInt8] = []
        while !String(decoding: decoded, as: UTF8.self).contains("data: first\n\n") {
            let line = try #require(c.readUntil("\r\n"), "no chunk before the origin's pause ended")
            let size = try #require(Int(String(decoding: line.utf8.dropLast(2), as: UTF8.self), radix: 16))
            let chunk = try #require(c.readExactly(size + 2))
            decoded += decoder.feed(Array(chunk.dropLast(2)))
            #expect(!decoder.failed)
        }
        #expect(origin.streamsFinished == 0, "the first event arrived only after the origin's pause")
    }

    /// HTTP/2 clients get compressed DATA frames the same way.
    @Test func http2ResponsesAreCompressed() async throws {
        let certs = try TestCertificates()
        let cert = try certs.issue("localhost", dnsNames: ["localhost"])
        let origin = try await TestOrigin.start(name: "o")
        let yaml = """
            listeners: [ { name: https, address: "127.0.0.1:0", tls: { certificates: [ { cert_file: "\(cert.0)", key_file: "\(cert.1)" } ] } } ]
            access_log: { destination: "off" }
            routes: [ { cluster: c, compression: { encodings: [br, gzip] } } ]
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 1)
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(certs.caFile)
        var config = HTTPClient.Configuration(tlsConfiguration: tls)
        config.httpVersion = .automatic
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        do {
            var request = HTTPClientRequest(url: "https://localhost:\(proxy.port())" + Self.respond(size: 100_000))
            request.headers.add(name: "Accept-Encoding", value: "gzip, br, zstd")
            let r = try await client.execute(request, timeout: .seconds(10))
            #expect(r.version == .http2)
            #expect(r.headers["content-encoding"] == ["br"])
            let body = try await r.body.collect(upTo: 1 << 20)
            #expect(ContentDecoder.decode(Array(buffer: body), coding: "br") == TestOrigin.text(size: 100_000))
        } catch {
            Issue.record("\(error)")
        }
        try await client.shutdown()
        await proxy.shutdown()
        await origin.shutdown()
    }

    /// The encoder on its own: many small parts with flushes between some, every level, decodes to the input.
    @Test(arguments: ContentCoding.allCases)
    func encoderRoundTripsPartsAndFlushes(coding: ContentCoding) throws {
        let text = TestOrigin.text(size: 300_000)
        for level in coding == .br ? [0, 4, 11] : coding == .zstd ? [1, 3, 19] : [1, 6, 9] {
            for sizeHint in [nil, 300_000, 100] as [Int?] {
                let encoder = try #require(BodyEncoder(coding: coding, level: level, sizeHint: sizeHint))
                var out: [UInt8] = []
                var rest = Substring(text)
                var i = 0
                while !rest.isEmpty {
                    let part = rest.prefix(1 + (i * 7919) % 20_000)
                    rest = rest.dropFirst(part.count)
                    out += Array(buffer: encoder.encode(ByteBuffer(string: String(part)), .process))
                    if i % 5 == 0 { out += Array(buffer: encoder.encode(ByteBuffer(), .flush)) }
                    i += 1
                }
                out += Array(buffer: encoder.encode(ByteBuffer(), .finish))
                #expect(encoder.encode(ByteBuffer(string: "late"), .finish).readableBytes == 0)
                #expect(ContentDecoder.decode(out, coding: coding.rawValue) == text, "\(coding) level \(level) hint \(String(describing: sizeHint))")
            }
        }
    }
}
