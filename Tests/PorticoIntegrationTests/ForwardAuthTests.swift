//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import PorticoTestSupport
import Testing

/// Forward auth (issue 10 §5): a subrequest to an auth service through Portico's own pools. The auth service is a
/// second Portico answering by the request's Authorization (and, for the remembered decisions, a test origin that
/// counts what it is asked).
@Suite(.serialized) struct ForwardAuthTests {
    @Test func theAuthServiceDecides() async throws {
        let origin = try await TestOrigin.start(name: "app")
        let counted = try await TestOrigin.start(name: "auth-counted")
        let slow = try await TestOrigin.start(name: "slow")
        let auth = try await ProxyHarness.start(yaml: """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes:
              - match: { headers: [ { name: Authorization, value: "Bearer good" } ] }
                respond: { status: 200 }
                response_headers: { set: { X-Auth-User: alice, X-Other: not-copied } }
              - match: { headers: [ { name: Authorization, value: "Bearer login" } ] }
                redirect: { status: 302, target: "https://login.example/?next=x" }
              - match: { headers: [ { name: Authorization, value: "Bearer counted" } ] }
                cluster: counted
              - respond: { status: 401, body: "who are you?" }
                response_headers: { set: { WWW-Authenticate: "Bearer realm=\\"test\\"" } }
            clusters: [ { name: counted, hosts: [ { address: "{{origin:auth-counted}}" } ] } ]
            """, origins: [counted])
        let proxy = try await ProxyHarness.start(yaml: """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes:
              - match: { path_prefix: /cached/ }
                cluster: app
                auth: { forward: { cluster: authsvc, path: /check, response_headers: [ X-Auth-User ], cache_for: 1m } }
              - match: { path_prefix: /down/ }
                cluster: app
                auth: { forward: { cluster: nowhere } }
              - match: { path_prefix: /slow/ }
                cluster: app
                auth: { forward: { cluster: slow, path: /delay/3000, timeout: 200ms } }
              - cluster: app
                auth: { forward: { cluster: authsvc, path: /check, response_headers: [ X-Auth-User ] } }
            clusters:
              - { name: app, hosts: [ { address: "{{origin:app}}" } ] }
              - { name: authsvc, hosts: [ { address: "127.0.0.1:\(auth.port())" } ] }
              - { name: nowhere, hosts: [ { address: "127.0.0.1:1" } ] }
              - { name: slow, hosts: [ { address: "{{origin:slow}}" } ] }
            """, origins: [origin, slow])
        defer { Task { await proxy.shutdown(); await auth.shutdown(); await origin.shutdown(); await counted.shutdown(); await slow.shutdown() } }
        func get(_ path: String, _ fields: [String] = [], method: String = "GET") async throws -> RawResponse {
            let port = proxy.port()
            return try await offThePool {
                let c = try RawHTTPClient(port: port)
                try c.send("\(method) \(path) HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n" + fields.map { $0 + "\r\n" }.joined()
                    + (method == "POST" ? "Content-Length: 2\r\n\r\nhi" : "\r\n"))
                return try #require(c.readResponses(1).first)
            }
        }

        // 2xx: through, with the chosen field of the answer (and not the others); the client's own X-Auth-User gone.
        let ok = try await get("/x", ["Authorization: Bearer good", "X-Auth-User: mallory"])
        #expect(ok.status == 200 && ok.body.contains("x-auth-user: alice") && !ok.body.contains("mallory") && !ok.body.contains("x-other"))
        // The original method is kept (a POST with its body reaches the app).
        #expect(try await get("/x", ["Authorization: Bearer good"], method: "POST").status == 200)
        // Anything else goes back as it came: 401 with its challenge and body, 302 with its Location.
        let denied = try await get("/x")
        #expect(denied.status == 401 && denied.header("www-authenticate") == "Bearer realm=\"test\"" && denied.body == "who are you?")
        let login = try await get("/x", ["Authorization: Bearer login"])
        #expect(login.status == 302 && login.header("location") == "https://login.example/?next=x")
        #expect(origin.requestCount == 2)

        // Remembered per credential: three requests, one subrequest; another credential asks again.
        for _ in 0..<3 { #expect(try await get("/cached/a", ["Authorization: Bearer counted"]).status == 200) }
        #expect(counted.requestCount == 1)
        // Remembered per request too: the same credential on another path is asked again.
        #expect(try await get("/cached/b", ["Authorization: Bearer counted"]).status == 200)
        #expect(counted.requestCount == 2)
        #expect(try await get("/cached/a", ["Authorization: Bearer good"]).body.contains("x-auth-user: alice"))
        #expect(counted.requestCount == 2)

        // An unreachable or slow auth service is 503, never a pass.
        #expect(try await get("/down/x", ["Authorization: Bearer good"]).status == 503)
        #expect(try await get("/slow/x", ["Authorization: Bearer good"]).status == 503)
        #expect(origin.requestCount == 7)
    }

    @Test func theBodyGoesAlongWhenAsked() async throws {
        let origin = try await TestOrigin.start(name: "app")
        // The auth service takes at most 5 bytes of body: what it answers shows what it was sent.
        let auth = try await ProxyHarness.start(yaml: """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes: [ { respond: { status: 204 }, max_body_bytes: 5 } ]
            """)
        let proxy = try await ProxyHarness.start(yaml: """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes:
              - cluster: app
                auth: { forward: { cluster: authsvc, path: /check, max_body: 1KiB } }
            clusters:
              - { name: app, hosts: [ { address: "{{origin:app}}" } ] }
              - { name: authsvc, hosts: [ { address: "127.0.0.1:\(auth.port())" } ] }
            """, origins: [origin])
        defer { Task { await proxy.shutdown(); await auth.shutdown(); await origin.shutdown() } }
        func post(_ body: String, chunked: Bool = false) async throws -> RawResponse {
            let port = proxy.port()
            return try await offThePool {
                let c = try RawHTTPClient(port: port)
                let framing = chunked
                    ? "Transfer-Encoding: chunked\r\n\r\n\(String(body.utf8.count, radix: 16))\r\n\(body)\r\n0\r\n\r\n"
                    : "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
                try c.send("POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + framing)
                return try #require(c.readResponses(1).first)
            }
        }
        // Small enough for the auth service: it passes, and the body still reaches the app (which echoes it).
        let ok = try await post("abc")
        #expect(ok.status == 200 && ok.body == "abc")
        #expect(try await post("abcd", chunked: true).body == "abcd")
        // Too big for the auth service (it got the body, and refused it): its 413 goes back as it came.
        #expect(try await post("0123456789").status == 413)
        // Over max_body: Portico answers 413 itself, and neither is asked.
        #expect(try await post(String(repeating: "x", count: 2000)).status == 413)
        #expect(origin.requestCount == 2)
    }
}
