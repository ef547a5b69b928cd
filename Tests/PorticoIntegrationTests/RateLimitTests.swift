//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import PorticoCore
import PorticoTestSupport
import Testing

/// Local rate limits (issue 10 §1): exact across workers, per key, 429 with Retry-After and the RateLimit
/// fields; allowed responses carry the fields too.
@Suite(.serialized) struct RateLimitTests {
    @Test func limitsPerKeyExactAcrossWorkers() async throws {
        let origin = try await TestOrigin.start(name: "o")
        let yaml = """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes:
              - { name: api, match: { path_prefix: /api/ }, cluster: c, rate_limits: [ { name: per-key, key: "header:X-API-Key", rate: 3, per: 1m } ] }
              - { name: app, cluster: c, rate_limits: [ { name: per-client, rate: 5, per: 1m } ] }
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 2)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        func get(_ path: String, _ fields: [String] = []) throws -> RawResponse {
            let c = try RawHTTPClient(port: proxy.port())  // a new connection each time: both workers take some
            try c.send("GET \(path) HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + fields.map { $0 + "\r\n" }.joined() + "\r\n")
            return try #require(c.readResponses(1).first)
        }
        let responses = try (0..<12).map { _ in try get("/page") }
        #expect(responses.filter { $0.status == 200 }.count == 5, "\(responses.map(\.status))")
        #expect(responses.prefix(5).allSatisfy { $0.status == 200 })
        let first = responses[0], refused = responses[5]
        #expect(first.header("ratelimit-policy") == "\"per-client\";q=5;w=60" && first.header("ratelimit")?.hasPrefix("\"per-client\";r=4;t=") == true)
        #expect(refused.status == 429 && Int(refused.header("retry-after") ?? "") ?? 0 >= 1)
        #expect(refused.header("ratelimit")?.hasPrefix("\"per-client\";r=0;t=") == true)
        // Per header value: each key has its own budget.
        for key in ["a", "b"] {
            let codes = try (0..<4).map { _ in try get("/api/x", ["X-API-Key: \(key)"]).status }
            #expect(codes == [200, 200, 200, 429], "\(key): \(codes)")
        }
        #expect(origin.requestCount == 5 + 6)
    }

    @Test func gcra() {
        let limiter = RateLimiter(rate: 2, periodNanos: 1_000_000_000, burst: 2)  // 2/s, bursts of 2
        #expect(limiter.check("k", now: 0).allowed && limiter.check("k", now: 0).allowed)
        let third = limiter.check("k", now: 0)
        #expect(!third.allowed && third.retryAfter == 500_000_000)
        #expect(!limiter.check("k", now: 499_000_000).allowed)
        #expect(limiter.check("k", now: 500_000_000).allowed)  // one interval later, one more
        #expect(limiter.check("other", now: 0).allowed)  // keys are separate
        let later = limiter.check("k", now: 10_000_000_000)
        #expect(later.allowed && later.remaining == 1)  // the burst is back
    }

    @Test func queuedRequestsWaitTheirTurn() async throws {
        // GCRA with a queue: at 10/s with a burst of 1 and 2 queued, the 2nd and 3rd wait 100 and 200 ms.
        let limiter = RateLimiter(rate: 10, periodNanos: 1_000_000_000, burst: 1, queue: 2)
        let d = (0..<4).map { _ in limiter.check("k", now: 0) }
        #expect(d.map(\.allowed) == [true, true, true, false])
        #expect(d.map(\.delay) == [0, 100_000_000, 200_000_000, 0])
        #expect(d[3].retryAfter == 100_000_000)

        let proxy = try await ProxyHarness.start(yaml: """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes: [ { respond: { body: "ok" }, rate_limits: [ { key: route, rate: 10, per: 1s, burst: 1, queue: 2 } ] } ]
            """)
        defer { Task { await proxy.shutdown() } }
        let port = proxy.port()
        let start = ContinuousClock.now
        // Four at once, on their own connections: one now, two queued, one refused at once.
        let results = try await withThrowingTaskGroup(of: (Int, Duration).self) { group in
            for _ in 0..<4 {
                group.addTask {
                    try await offThePool {
                        let c = try RawHTTPClient(port: port)
                        try c.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                        return (c.readResponses(1).first?.status ?? 0, ContinuousClock.now - start)
                    }
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.map(\.0).sorted() == [200, 200, 200, 429], "\(results)")
        // The last admitted one waited its turn: at least 200 ms (a lower bound only; slowness cannot fail it).
        #expect(results.filter { $0.0 == 200 }.map(\.1).max()! >= .milliseconds(190))
    }

    @Test func configErrors() {
        let yaml = "listeners: [ { name: l, address: \"127.0.0.1:0\" } ]\nroutes: [ { respond: {}, rate_limits: [ { rate: 0, key: \"jwt:sub\", burst: 0 } ] } ]\n"
        guard case .failure(let errors) = ConfigLoader.load(text: yaml, file: nil) else { Issue.record("accepted"); return }
        #expect(Set(errors.all.map(\.path)) == ["routes[0].rate_limits[0].rate", "routes[0].rate_limits[0].key", "routes[0].rate_limits[0].burst"])
        let redis = """
            listeners: [ { name: l, address: "127.0.0.1:0" } ]
            routes:
              - respond: {}
                rate_limits:
                  - { rate: 1, store: redis }
                  - { rate: 1, store: redis, redis: { address: "nowhere", timeout: 0s, password_file: /nonexistent } }
                  - { rate: 1, redis: { address: "127.0.0.1:0" } }
            """
        guard case .failure(let redisErrors) = ConfigLoader.load(text: redis, file: nil) else { Issue.record("accepted"); return }
        #expect(Set(redisErrors.all.map(\.path)) == [
            "routes[0].rate_limits[0].redis", "routes[0].rate_limits[1].redis.address", "routes[0].rate_limits[1].redis.timeout",
            "routes[0].rate_limits[1].redis.password_file", "routes[0].rate_limits[2].redis",
        ], "\(redisErrors)")
    }
}
