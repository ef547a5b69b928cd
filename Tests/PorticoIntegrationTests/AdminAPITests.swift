//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import AsyncHTTPClient
import Foundation
import Logging
import NIOHTTP1
import NIOSSL
import NIOCore
import PorticoControl
import PorticoCore
import PorticoTestSupport
import Testing
import Yams

/// The admin API on its own listener: config read and change (with ETags), validation, cluster state, draining,
/// health, metrics, bearer tokens, and every operation of `docs/admin-api.openapi.yaml` as documented.
@Suite(.serialized) struct AdminAPITests {
    static func yaml(extraRoute: String = "", admin: String = "admin: { address: \"127.0.0.1:0\" }") -> String {
        """
        \(admin)
        listeners: [ { name: main, address: "127.0.0.1:0" } ]
        access_log: { destination: "off" }
        routes:
        \(extraRoute)
          - { name: app, cluster: c }
        clusters: [ { name: c, hosts: [ { address: "{{origin:a}}" }, { address: "{{origin:b}}" } ] } ]
        """
    }

    struct Setup {
        let a: TestOrigin
        let b: TestOrigin
        let proxy: ProxyHarness
        let adminPort: Int

        static func start(_ yaml: String = AdminAPITests.yaml()) async throws -> Setup {
            let a = try await TestOrigin.start(name: "a")
            let b = try await TestOrigin.start(name: "b")
            let proxy = try await ProxyHarness.start(yaml: yaml, origins: [a, b], workers: 2, logLevel: .critical)
            let port = try #require(await proxy.server.adminAddress?.port)
            return Setup(a: a, b: b, proxy: proxy, adminPort: port)
        }

        func stop() async {
            await self.proxy.shutdown()
            await self.a.shutdown()
            await self.b.shutdown()
        }

        /// An admin request, sent from a thread of its own: the admin API answers from Swift concurrency's threads,
        /// which a blocking read here would hold.
        func admin(_ method: String, _ path: String, _ fields: [String] = [], body: String? = nil) async throws -> RawResponse {
            let port = self.adminPort
            return try await offThePool {
                let c = try RawHTTPClient(port: port, timeoutSeconds: 30)
                let length = body.map { "Content-Length: \($0.utf8.count)\r\n" } ?? (method == "POST" ? "Content-Length: 0\r\n" : "")
                try c.send("\(method) \(path) HTTP/1.1\r\nHost: admin\r\n\(length)" + fields.map { $0 + "\r\n" }.joined() + "\r\n" + (body ?? ""))
                guard let r = c.readResponses(1).first else { throw RawClientError("no answer to \(method) \(path)") }
                return r
            }
        }

        func proxied(_ path: String = "/x") throws -> RawResponse {
            let c = try RawHTTPClient(port: self.proxy.port(of: "main"))
            try c.send("GET \(path) HTTP/1.1\r\nHost: t\r\n\r\n")
            guard let r = c.readResponses(1).first else { throw RawClientError("no response") }
            return r
        }

        /// The config text with origins filled in.
        func configText(_ yaml: String) -> String {
            yaml.replacingOccurrences(of: "{{origin:a}}", with: self.a.address).replacingOccurrences(of: "{{origin:b}}", with: self.b.address)
        }
    }

    static func json(_ r: RawResponse) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(r.bytes))
    }

    @Test func healthAndReadiness() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        #expect(try await s.admin("GET", "/healthz").status == 200)
        #expect(try await s.admin("GET", "/readyz").status == 200)
        #expect(try await s.admin("GET", "/nowhere").status == 404)
        #expect(try await s.admin("DELETE", "/config").status == 405)
    }

    /// GET the running config (JSON, ETag), change it with If-Match, and the proxy serves the new generation;
    /// stale or missing ETags and invalid configs are refused with what is wrong, and the running config stays.
    @Test func configReadValidateAndChange() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let got = try await s.admin("GET", "/config")
        #expect(got.status == 200 && got.header("etag") == "\"1\"" && got.header("content-type") == "application/json")
        let config = try #require(try Self.json(got) as? [String: Any])
        #expect((config["routes"] as? [[String: Any]])?.first?["name"] as? String == "app")
        #expect((config["admin"] as? [String: Any])?["address"] as? String == "127.0.0.1:0")

        let next = s.configText(Self.yaml(extraRoute: "  - { name: fixed, match: { path: /fixed }, respond: { status: 418, body: tea } }"))
        #expect(try await s.admin("POST", "/config", body: next).status == 428)
        #expect(try await s.admin("POST", "/config", ["If-Match: \"7\""], body: next).status == 412)
        let bad = "listeners: [ { name: main, address: \"127.0.0.1:0\" } ]\nroutes:\n  - { cluster: nope, bogus: 1 }\n"
        let refused = try await s.admin("POST", "/config", ["If-Match: \"1\""], body: bad)
        #expect(refused.status == 422)
        let errors = try #require((try Self.json(refused) as? [String: Any])?["errors"] as? [[String: Any]])
        let paths = Set(errors.compactMap { $0["path"] as? String })
        #expect(paths.contains("routes[0].bogus") && paths.contains("routes[0].cluster"), "\(paths)")
        #expect(errors.allSatisfy { $0["line"] as? Int != nil })
        #expect(try s.proxied("/fixed").status == 200)  // still the running config

        #expect(try await s.admin("POST", "/config/validate", body: next).status == 200)
        #expect(try await s.admin("POST", "/config/validate", body: bad).status == 422)

        let applied = try await s.admin("POST", "/config", ["If-Match: \"1\""], body: next)
        #expect(applied.status == 200 && applied.header("etag") == "\"2\"")
        #expect(try s.proxied("/fixed").status == 418)
        #expect(try await s.admin("GET", "/config").header("etag") == "\"2\"")
        #expect(try await s.admin("POST", "/config", ["If-Match: \"1\""], body: next).status == 412)
    }

    /// Cluster state, and draining a host: it gets no new requests until undrained.
    @Test func clustersAndDraining() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let clusters = try #require(try Self.json(await s.admin("GET", "/clusters")) as? [[String: Any]])
        let hosts = try #require(clusters.first?["hosts"] as? [[String: Any]])
        #expect(clusters.first?["name"] as? String == "c" && hosts.count == 2)
        #expect(hosts.allSatisfy { $0["available"] as? Bool == true && $0["drained"] as? Bool == false })
        #expect(try await s.admin("GET", "/clusters/nope").status == 404)
        #expect(try await s.admin("POST", "/clusters/c/hosts/127.0.0.1:1/drain").status == 404)
        // What a web page could send to a loopback admin listener is refused (no draining from a browser tab).
        let drainA = "/clusters/c/hosts/\(s.a.address)/drain"
        #expect(try await s.admin("POST", drainA, ["Content-Type: application/x-www-form-urlencoded"]).status == 415)
        #expect(try await s.admin("POST", drainA, ["Origin: http://evil.example"]).status == 403)
        #expect(try await s.admin("POST", drainA, ["Sec-Fetch-Site: cross-site"]).status == 403)
        let untouched = try #require(try Self.json(await s.admin("GET", "/clusters/c")) as? [String: Any])
        #expect((untouched["hosts"] as? [[String: Any]])?.allSatisfy { $0["drained"] as? Bool == false } == true)

        let drained = try await s.admin("POST", "/clusters/c/hosts/\(s.a.address)/drain")
        let drainedHost = try Self.json(drained) as? [String: Any]
        #expect(drained.status == 200 && drainedHost?["drained"] as? Bool == true)
        let origins = try (0..<6).map { _ in try s.proxied().header("x-origin") }
        #expect(origins.allSatisfy { $0 == "b" }, "\(origins)")
        #expect(try await s.admin("POST", "/clusters/c/hosts/\(s.a.address)/undrain").status == 200)
        let after = try (0..<6).map { _ in try s.proxied().header("x-origin") }
        #expect(after.contains("a"))
    }

    /// Counters are per worker and summed at scrape: the request count is exact.
    @Test func metricsCountRequests() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        for _ in 0..<7 { _ = try s.proxied() }
        _ = try s.proxied("/status/503")
        let text = try await s.admin("GET", "/metrics")
        #expect(text.status == 200 && text.header("content-type")?.hasPrefix("text/plain; version=0.0.4") == true)
        let body = text.body
        #expect(body.contains("portico_requests_total{route=\"app\",cluster=\"c\",code=\"2xx\"} 7"), "\(body)")
        #expect(body.contains("portico_requests_total{route=\"app\",cluster=\"c\",code=\"5xx\"} 1"))
        #expect(body.contains("portico_listener_requests_total{listener=\"main\",code=\"2xx\"} 7"))
        #expect(body.contains("portico_request_duration_seconds_count{route=\"app\"} 8"))
        #expect(body.contains("portico_upstream_duration_seconds_bucket{cluster=\"c\",le=\"+Inf\"} 8"))
        #expect(body.contains("# TYPE portico_upstream_connects_total counter"))
        #expect(body.contains("portico_upstream_host_available{cluster=\"c\",host=\"\(s.a.address)\"} 1"))
        #expect(body.contains("portico_config_reloads_total 0"))
        #expect(body.contains("portico_overloaded 0") && body.contains("portico_overload_episodes_total 0"))
        // Each family's samples follow its own # TYPE line, in one group (text format 0.0.4).
        var seen: Set<String> = []
        var current = ""
        for line in body.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                current = String(line.split(separator: " ")[2])
                #expect(seen.insert(current).inserted, "\(current) declared twice")
            } else if !line.hasPrefix("#") {
                let name = String(line.prefix { $0 != "{" && $0 != " " })
                #expect(name == current || name.hasPrefix(current + "_"), "\(name) outside its family \(current)")
            }
        }
        // Every sample line is `name{labels} value` or `name value`.
        for line in body.split(separator: "\n") where !line.hasPrefix("#") {
            #expect(line.split(separator: " ").count == 2 && line.hasPrefix("portico_"), "\(line)")
        }
    }

    /// The dashboard: one self-contained page (nothing fetched from elsewhere), and the JSON it draws from.
    @Test func dashboardAndItsStats() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        let page = try await s.admin("GET", "/")
        #expect(page.status == 200 && page.header("content-type")?.hasPrefix("text/html") == true)
        #expect(page.body.contains("<title>Portico</title>") && page.body.contains("fetch(\"stats\""))
        #expect(!page.body.contains("http://") && !page.body.contains("https://") && !page.body.contains("src="))
        for _ in 0..<5 { _ = try s.proxied() }
        _ = try s.proxied("/status/502")
        let stats = try #require(try Self.json(await s.admin("GET", "/stats")) as? [String: Any])
        #expect(stats["generation"] as? Int == 1 && stats["time"] as? Double != nil)
        let bounds = try #require(stats["bucket_bounds"] as? [Double])
        let route = try #require((stats["routes"] as? [[String: Any]])?.first { $0["name"] as? String == "app" })
        #expect(route["cluster"] as? String == "c" && route["requests"] as? [Int] == [0, 5, 0, 0, 1, 0])
        #expect((route["buckets"] as? [Int]).map { $0.count == bounds.count + 1 && $0.reduce(0, +) == 6 } == true)
        let cluster = try #require((stats["clusters"] as? [[String: Any]])?.first)
        #expect((cluster["hosts"] as? [[String: Any]])?.count == 2 && (cluster["upstream_buckets"] as? [Int])?.reduce(0, +) == 6)
        #expect((stats["listeners"] as? [[String: Any]])?.first?["requests"] as? [Int] == [0, 5, 0, 0, 1, 0])
    }

    /// A bearer token from a file guards every endpoint; the config check refuses a non-loopback admin without one.
    @Test func bearerToken() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("portico-admin-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let tokenFile = dir.appendingPathComponent("token").path
        try "s3cret-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let s = try await Setup.start(Self.yaml(admin: "admin: { address: \"127.0.0.1:0\", token_file: \"\(tokenFile)\" }"))
        defer { Task { await s.stop() } }
        let denied = try await s.admin("GET", "/clusters")
        #expect(denied.status == 401 && denied.header("www-authenticate")?.hasPrefix("Bearer") == true)
        #expect(try await s.admin("GET", "/clusters", ["Authorization: Bearer wrong"]).status == 401)
        #expect(try await s.admin("GET", "/clusters", ["Authorization: Bearer s3cret-token"]).status == 200)
        // `portico check` (the same validator) refuses a non-loopback admin listener without a token.
        let open = "admin: { address: \"0.0.0.0:9901\" }\nlisteners: [ { name: l, address: \"127.0.0.1:0\" } ]\nroutes: [ { respond: {} } ]\n"
        guard case .failure(let errors) = ConfigLoader.load(text: open, file: "t.yaml") else { Issue.record("accepted"); return }
        #expect(errors.all.contains { $0.path == "admin.address" && $0.message.contains("token_file") && $0.line == 1 })
    }

    /// Purging the cache from the admin API, by URL (every variant) and by tag.
    @Test func cachePurge() async throws {
        let s = try await Setup.start(Self.yaml().replacingOccurrences(of: "{ name: app, cluster: c }", with: "{ name: app, cluster: c, cache: {} }"))
        defer { Task { await s.stop() } }
        let target = "/respond/p?size=10&h=Cache-Control:%20max-age=60&h=Surrogate-Key:%20t1"
        func fetch() throws -> Bool {
            let before = s.a.requestCount + s.b.requestCount
            _ = try s.proxied(target)
            return s.a.requestCount + s.b.requestCount > before
        }
        #expect(try fetch() && !fetch())  // stored, then a hit
        let byURL = try await s.admin("POST", "/cache/purge", ["Content-Type: application/json"], body: "{\"url\": \"http://t\(target)\"}")
        #expect(byURL.status == 200 && byURL.body.contains("\"purged\" : 1"))
        #expect(try fetch() && !fetch())
        let byTag = try await s.admin("POST", "/cache/purge", ["Content-Type: application/json"], body: "{\"tags\": [\"t1\"]}")
        #expect(byTag.status == 200 && byTag.body.contains("\"purged\" : 1"))
        #expect(try fetch())
        #expect(try await s.admin("POST", "/cache/purge", ["Content-Type: application/json"], body: "{}").status == 400)
    }

    /// Mutual TLS: the admin API over TLS answers only clients with a certificate from the configured CA.
    @Test func mutualTLS() async throws {
        let certs = try TestCertificates()
        let server = try certs.issue("localhost", dnsNames: ["localhost"])
        let client = try certs.issue("operator", dnsNames: [], clientAuth: true)
        let s = try await Setup.start(Self.yaml(admin: """
            admin: { address: "127.0.0.1:0", tls: { cert_file: "\(server.0)", key_file: "\(server.1)", client_ca: "\(certs.caFile)" } }
            """))
        defer { Task { await s.stop() } }
        func call(withCertificate: Bool) async -> Int? {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .file(certs.caFile)
            if withCertificate {
                tls.certificateChain = (try? NIOSSLCertificate.fromPEMFile(client.0))?.map { .certificate($0) } ?? []
                tls.privateKey = (try? NIOSSLPrivateKey(file: client.1, format: .pem)).map { .privateKey($0) }
            }
            let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
            defer { Task { try? await http.shutdown() } }
            let response = try? await http.execute(HTTPClientRequest(url: "https://localhost:\(s.adminPort)/clusters"), timeout: .seconds(10))
            return response.map { Int($0.status.code) }
        }
        #expect(await call(withCertificate: true) == 200)
        #expect(await call(withCertificate: false) == nil)  // the handshake fails
        // A non-loopback admin listener may rely on client certificates instead of a token.
        let open = "admin: { address: \"0.0.0.0:9901\", tls: { cert_file: a, key_file: b, client_ca: c } }\nlisteners: [ { name: l, address: \"127.0.0.1:0\" } ]\nroutes: [ { respond: {} } ]\n"
        guard case .success = ConfigLoader.load(text: open, file: nil) else { Issue.record("refused"); return }
    }

    /// Every operation in the checked-in OpenAPI document answers with a status and media type it documents.
    @Test func everyDocumentedOperationAnswersAsDocumented() async throws {
        let s = try await Setup.start()
        defer { Task { await s.stop() } }
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        let text = try String(contentsOf: root.appendingPathComponent("docs/admin-api.openapi.yaml"), encoding: .utf8)
        let doc = try #require(try Yams.load(yaml: text) as? [String: Any])
        let paths = try #require(doc["paths"] as? [String: Any])
        var checked = 0
        for (path, item) in paths.sorted(by: { $0.key < $1.key }) {
            guard let operations = item as? [String: Any] else { continue }
            for (method, op) in operations {
                guard let op = op as? [String: Any], let responses = op["responses"] as? [String: Any] else { continue }
                let concrete = path.replacingOccurrences(of: "{name}", with: "c").replacingOccurrences(of: "{address}", with: s.b.address)
                var fields: [String] = []
                var body: String?
                if path == "/config" && method == "post" {
                    let etag = try await s.admin("GET", "/config").header("etag") ?? ""
                    fields = ["If-Match: \(etag)"]
                    body = s.configText(Self.yaml())
                } else if path == "/config/validate" {
                    body = s.configText(Self.yaml())
                } else if path == "/cache/purge" {
                    body = "{\"tags\": [\"x\"]}"
                }
                let r = try await s.admin(method.uppercased(), concrete, fields, body: body)
                let documented = try #require(responses["\(r.status)"] as? [String: Any], "\(method) \(path) answered \(r.status), not documented")
                if let content = documented["content"] as? [String: Any] {
                    let type = r.header("content-type") ?? ""
                    #expect(content.keys.contains { type.hasPrefix($0) }, "\(method) \(path): \(type) not in \(content.keys)")
                }
                checked += 1
            }
        }
        #expect(checked == 13)
    }
}
