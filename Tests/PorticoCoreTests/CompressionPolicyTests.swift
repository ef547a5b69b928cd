//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOHTTP1
import Testing

@testable import PorticoCore

/// Compression decisions without I/O: `Accept-Encoding` negotiation (RFC 9110 §12.5.3), which responses are
/// never compressed, and what compressing does to a head.
@Suite struct CompressionPolicyTests {
    static let policy = CompressionPolicy(CompressionConfig())

    /// The coding chosen for each `Accept-Encoding`, against the default preference (zstd, br, gzip, deflate).
    @Test(arguments: [
        ("gzip, br, zstd", "zstd"),  // equal weights: the server's preference
        ("gzip;q=1, br;q=0.5", "gzip"),  // the highest weight wins
        ("br;q=0.8, gzip;q=0.8", "br"),
        ("GZIP", "gzip"),  // codings are case-insensitive
        ("x-gzip", "gzip"),  // RFC 9110 §8.4.1.3
        ("*", "zstd"),
        ("*;q=0.5, gzip", "gzip"),
        ("*, zstd;q=0", "br"),  // an explicit q=0 refuses that coding even under *
        ("deflate", "deflate"),
        ("gzip ; q=0.5 , deflate;Q=0.9", "deflate"),  // OWS around parameters, Q in capitals
        ("identity", "-"),
        ("gzip;q=0, br;q=0", "-"),
        ("", "-"),  // an empty field value: identity only
        ("compress", "-"),
        ("gzip;q=abc", "-"),  // an invalid weight drops the member
        ("gzip;q=1.5", "-"),
        ("gzip;q=0.0001", "-"),  // at most three decimals
        ("br;q=0.001", "br"),
    ])
    func negotiation(acceptEncoding: String, expected: String) {
        let accept = AcceptEncoding(fieldValues: [acceptEncoding])
        #expect(accept.choose(from: Self.policy.preference)?.rawValue ?? "-" == expected, "\(acceptEncoding)")
    }

    @Test func identityCanBeRefused() {
        #expect(AcceptEncoding(fieldValues: ["gzip"]).acceptsIdentity)
        #expect(!AcceptEncoding(fieldValues: ["gzip, identity;q=0"]).acceptsIdentity)
        #expect(!AcceptEncoding(fieldValues: ["gzip, *;q=0"]).acceptsIdentity)
        #expect(AcceptEncoding(fieldValues: ["*;q=0, identity"]).acceptsIdentity)
        // Several fields are one list (RFC 9110 §5.3).
        #expect(AcceptEncoding(fieldValues: ["br;q=0.1", "gzip"]).choose(from: [.br, .gzip]) == .gzip)
    }

    @Test func serverPreferenceIsConfigurable() {
        let policy = CompressionPolicy(CompressionConfig(encodings: [.gzip, .br]))
        #expect(AcceptEncoding(fieldValues: ["zstd, br, gzip"]).choose(from: policy.preference) == .gzip)
        #expect(AcceptEncoding(fieldValues: ["zstd"]).choose(from: policy.preference) == nil)
    }

    static func response(_ status: Int = 200, _ fields: [(String, String)]) -> HTTPResponseHead {
        HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status), headers: HTTPHeaders(fields))
    }

    static let text: [(String, String)] = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "5000")]
    static let gzip = AcceptEncoding(fieldValues: ["gzip"])

    /// What is never compressed (RFC 9110 §15.3.5, §15.4.5, §8.4; RFC 9111 §5.2.2.6), and what only varies.
    @Test func decisions() {
        let p = Self.policy
        func decide(_ fields: [(String, String)], status: Int = 200, method: HTTPMethod = .GET, accept: AcceptEncoding? = Self.gzip) -> CompressionPolicy.Decision {
            p.decide(method: method, response: Self.response(status, fields), accept: accept)
        }
        #expect(decide(Self.text) == .compress(.gzip))
        #expect(decide([("Content-Type", "application/json")]) == .compress(.gzip))  // unknown length
        #expect(decide([("Content-Type", "application/vnd.api+json"), ("Content-Length", "600")]) == .compress(.gzip))
        #expect(decide([("Content-Type", "image/svg+xml")]) == .compress(.gzip))
        #expect(decide(Self.text, status: 404) == .compress(.gzip))
        // Types that are not listed, or no type at all.
        #expect(decide([("Content-Type", "image/png")]) == .leave)
        #expect(decide([("Content-Length", "5000")]) == .leave)
        #expect(decide([("Content-Type", "text")]) == .leave)
        // Already encoded, ranges, no-transform, empty, bodyless statuses.
        #expect(decide(Self.text + [("Content-Encoding", "br")]) == .leave)
        #expect(decide(Self.text + [("Content-Encoding", "identity")]) == .compress(.gzip))
        #expect(decide(Self.text + [("Content-Range", "bytes 0-4999/9000")], status: 206) == .leave)
        #expect(decide(Self.text + [("Content-Range", "bytes 0-4999/9000")]) == .leave)
        #expect(decide(Self.text + [("Cache-Control", "public, No-Transform")]) == .leave)
        #expect(decide([("Content-Type", "text/plain"), ("Content-Length", "0")]) == .leave)
        for status in [101, 204] { #expect(decide(Self.text, status: status) == .leave) }
        // A 304 is never compressed; for a client that would get the compressed 200 it takes that 200's ETag and Vary.
        #expect(decide(Self.text, status: 304) == .notModified)
        #expect(decide(Self.text, status: 304, accept: nil) == .leave)
        #expect(decide(Self.text, status: 304, method: .HEAD) == .leave)
        #expect(decide([("Content-Type", "image/png")], status: 304) == .leave)
        // Would have been compressed for another request: Vary only.
        #expect(decide(Self.text, method: .HEAD) == .leaveVarying)
        #expect(decide(Self.text, accept: nil) == .leaveVarying)
        #expect(decide(Self.text, accept: AcceptEncoding(fieldValues: ["identity"])) == .leaveVarying)
        #expect(decide([("Content-Type", "text/plain"), ("Content-Length", "100")]) == .leaveVarying)
        // Below the minimum length, unless the client refuses identity.
        #expect(decide([("Content-Type", "text/plain"), ("Content-Length", "100")], accept: AcceptEncoding(fieldValues: ["gzip, identity;q=0"])) == .compress(.gzip))
    }

    @Test func mediaTypePatterns() {
        let custom = CompressionPolicy(CompressionConfig(minLength: ByteSize(bytes: 0), types: ["TEXT/*", "application/*+xml", "application/x-thing"]))
        func compresses(_ type: String) -> Bool {
            custom.decide(method: .GET, response: Self.response(200, [("Content-Type", type)]), accept: Self.gzip) == .compress(.gzip)
        }
        #expect(compresses("text/css"))
        #expect(compresses("Text/CSS; charset=utf-8"))
        #expect(compresses("application/atom+xml"))
        #expect(compresses("application/x-thing"))
        #expect(!compresses("application/xml"))  // the suffix pattern needs a subtype before +xml… or an exact entry
        #expect(!compresses("application/json"))
        #expect(!compresses("text/"))
        #expect(MediaTypePattern(parsing: "text") == nil)
        #expect(MediaTypePattern(parsing: "*/*") == nil)
        #expect(MediaTypePattern(parsing: "text/ht*") == nil)
    }

    /// Compressing: the coding, no length, Vary added once, a weak ETag, no Accept-Ranges (RFC 9110 §8.8.1).
    @Test func preparingTheHead() {
        var head = Self.response(200, Self.text + [("ETag", "\"v1\""), ("Accept-Ranges", "bytes"), ("Vary", "Origin")])
        CompressionPolicy.prepare(&head, for: .br)
        #expect(head.headers["content-encoding"] == ["br"])
        #expect(head.headers["content-length"].isEmpty && head.headers["accept-ranges"].isEmpty)
        #expect(head.headers["etag"] == ["W/\"v1\""])
        #expect(head.headers[canonicalForm: "vary"].map(String.init) == ["Origin", "Accept-Encoding"])
        var weak = Self.response(200, Self.text + [("ETag", "W/\"v1\""), ("Vary", "accept-encoding")])
        CompressionPolicy.prepare(&weak, for: .gzip)
        #expect(weak.headers["etag"] == ["W/\"v1\""])
        #expect(weak.headers["vary"] == ["accept-encoding"])
        var star = Self.response(200, [("Vary", "*")])
        CompressionPolicy.addVary(&star.headers)
        #expect(star.headers["vary"] == ["*"])
    }

    @Test func configErrorsNameTheirKeys() {
        let yaml = """
            listeners: [ { name: l, address: "127.0.0.1:0" } ]
            clusters: [ { name: c, hosts: [ { address: "127.0.0.1:1" } ] } ]
            routes:
              - cluster: c
                compression: { encodings: [gzip, gzip], types: ["text"], levels: { gzip: 10, br: 12, zstd: 0 } }
              - { cluster: c, compression: { encodings: [] } }
            """
        guard case .failure(let errors) = ConfigLoader.load(text: yaml, file: "t.yaml") else {
            Issue.record("accepted")
            return
        }
        let paths = Set(errors.all.map(\.path))
        for p in [
            "routes[0].compression.encodings", "routes[0].compression.types[0]", "routes[0].compression.levels.gzip",
            "routes[0].compression.levels.br", "routes[0].compression.levels.zstd", "routes[1].compression.encodings",
        ] {
            #expect(paths.contains(p), "\(p) in \(paths)")
        }
        let unknown = "listeners: [ { name: l, address: \"127.0.0.1:0\" } ]\nroutes: [ { respond: {}, compression: { encodings: [lzma] } } ]\n"
        guard case .failure(let e2) = ConfigLoader.load(text: unknown, file: "t.yaml") else { Issue.record("accepted lzma"); return }
        #expect(e2.all.contains { $0.path == "routes[0].compression.encodings[0]" && $0.line == 2 })
    }
}
