//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOHTTP1
import PorticoCore
import Testing

@Suite struct HeaderRewritingTests {
    @Test func hopByHopHeadersAreRemoved() {
        var h: HTTPHeaders = [
            "Connection": "keep-alive, X-Secret", "X-Secret": "1", "Keep-Alive": "timeout=5", "Proxy-Connection": "x",
            "TE": "trailers", "Trailer": "Expires", "Transfer-Encoding": "chunked", "Upgrade": "websocket",
            "Content-Length": "3", "Accept": "*/*",
        ]
        let tokens = HopByHopHeaders.strip(&h)
        #expect(tokens.keepAlive && !tokens.close)
        #expect(h.map(\.name).sorted() == ["Accept", "Content-Length"])
    }

    @Test func connectionCannotRemoveFraming() {
        var h: HTTPHeaders = ["Connection": "close, content-length, host", "Content-Length": "3", "Host": "a"]
        let tokens = HopByHopHeaders.strip(&h)
        #expect(tokens.close)
        #expect(h["content-length"] == ["3"])
        #expect(h["host"] == ["a"])
    }

    /// RFC 9112 §9.3, the same answers as NIO's `isKeepAlive` (which allocates) for every shape.
    @Test func clientKeepAliveFollowsVersionAndConnectionTokens() {
        let cases: [(HTTPVersion, HTTPHeaders, Bool)] = [
            (.http1_1, [:], true),
            (.http1_1, ["Connection": "close"], false),
            (.http1_1, ["connection": "Keep-Alive, CLOSE"], false),
            (.http1_1, ["Connection": "upgrade", "Connection": " close "], false),
            (.http1_0, [:], false),
            (.http1_0, ["Connection": "keep-alive"], true),
            (.http1_0, ["Connection": "x, Keep-Alive"], true),
            (.http1_0, ["Connection": "keep-alive, close"], false),
            (.http1_1, ["X-Connection": "close"], true),
        ]
        for (version, headers, expected) in cases {
            #expect(HopByHopHeaders.clientKeepsAlive(version, headers) == expected, "\(version) \(headers)")
            #expect(HTTPRequestHead(version: version, method: .GET, uri: "/", headers: headers).isKeepAlive == expected, "NIO: \(version) \(headers)")
        }
    }

    @Test func forwardedHeadersFromUntrustedClientAreReplaced() {
        let p = ForwardingPolicy(ForwardingConfig(xRealIp: true, forwarded: true))
        var h: HTTPHeaders = ["X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https", "Forwarded": "for=6.6.6.6", "X-Real-IP": "6.6.6.6"]
        p.applyRequest(&h, clientIP: "203.0.113.7", trusted: false, scheme: "http", host: "app.test")
        #expect(h["x-forwarded-for"] == ["203.0.113.7"])
        #expect(h["x-forwarded-proto"] == ["http"])
        #expect(h["x-forwarded-host"] == ["app.test"])
        #expect(h["x-real-ip"] == ["203.0.113.7"])
        #expect(h["forwarded"] == ["for=203.0.113.7;proto=http;host=app.test"])
        #expect(h["via"] == ["1.1 portico"])
    }

    /// Spoofing gaps (issue 10 §6): with `x_real_ip` off an untrusted client's own X-Real-IP is removed, and the
    /// mTLS identity fields are removed from untrusted clients on every listener (kept for a verified certificate,
    /// whose fields the listener's identity filter set, and from trusted proxies).
    @Test func spoofableFieldsFromUntrustedClientsAreRemoved() {
        let p = ForwardingPolicy(ForwardingConfig(trustedProxies: ["10.0.0.0/8"]))
        let sent: HTTPHeaders = ["X-Real-IP": "6.6.6.6", "X-Client-Subject": "CN=admin", "X-Client-Cert-SHA256": "ab"]
        var untrusted = sent
        p.applyRequest(&untrusted, clientIP: "203.0.113.7", trusted: false, scheme: "http", host: "a")
        #expect(untrusted["x-real-ip"].isEmpty && untrusted["x-client-subject"].isEmpty && untrusted["x-client-cert-sha256"].isEmpty)
        var proxied = sent
        p.applyRequest(&proxied, clientIP: "10.0.0.1", trusted: true, scheme: "http", host: "a")
        #expect(proxied["x-real-ip"] == ["6.6.6.6"] && proxied["x-client-subject"] == ["CN=admin"])
        var verified = sent
        p.applyRequest(&verified, clientIP: "203.0.113.7", trusted: false, scheme: "https", host: "a", verifiedIdentity: true)
        #expect(verified["x-client-subject"] == ["CN=admin"])
    }

    @Test func forwardedHeadersFromTrustedProxyAreAppended() {
        let p = ForwardingPolicy(ForwardingConfig(forwarded: true, trustedProxies: ["10.0.0.0/8"]))
        #expect(p.isTrusted(IPAddressBytes("10.1.1.1")))
        #expect(!p.isTrusted(IPAddressBytes("11.1.1.1")))
        var h: HTTPHeaders = ["X-Forwarded-For": "198.51.100.1", "X-Forwarded-Proto": "https", "Forwarded": "for=198.51.100.1"]
        p.applyRequest(&h, clientIP: "::1", trusted: true, scheme: "http", host: "a.test")
        #expect(h["x-forwarded-for"] == ["198.51.100.1, ::1"])
        #expect(h["x-forwarded-proto"] == ["https"])
        #expect(h["forwarded"] == ["for=198.51.100.1, for=\"[::1]\";proto=http;host=a.test"])
    }

    @Test func responseMasking() {
        let p = ForwardingPolicy(ForwardingConfig(via: ""))
        var h: HTTPHeaders = [
            "Server": "Apache/2.4", "X-Powered-By": "PHP", "Location": "http://origin.test:9001/login?next=/",
            "Content-Location": "http://other:1/x",
        ]
        p.applyResponse(&h, upstreamAuthority: "origin.test:9001", publicBase: "https://app.test")
        #expect(h["server"].isEmpty && h["x-powered-by"].isEmpty && h["via"].isEmpty)
        #expect(h["location"] == ["https://app.test/login?next=/"])
        #expect(h["content-location"] == ["http://other:1/x"])

        let replace = ForwardingPolicy(ForwardingConfig(serverHeader: "portico"))
        var h2: HTTPHeaders = ["Server": "nginx"]
        replace.applyResponse(&h2, upstreamAuthority: "a:1", publicBase: nil)
        #expect(h2["server"] == ["portico"])
    }

    @Test func headerRulesRemoveSetAdd() {
        let rules = HeaderRules(HeaderRulesConfig(set: ["X-A": "1"], add: ["X-B": "2"], remove: ["X-C"]))
        var h: HTTPHeaders = ["X-A": "0", "X-B": "1", "X-C": "gone"]
        rules.apply(to: &h)
        #expect(h["x-a"] == ["1"])
        #expect(h["x-b"] == ["1", "2"])
        #expect(h["x-c"].isEmpty)
    }
}
