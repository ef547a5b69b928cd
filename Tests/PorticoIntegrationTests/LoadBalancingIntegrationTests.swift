//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
@testable import PorticoControl
import PorticoCore
import PorticoTestSupport
import Testing

/// Balancing, health and failover with three real origins on port 0.
@Suite(.serialized) struct LoadBalancingIntegrationTests {
    /// One GET through the proxy; the origin that answered, or nil when the request failed.
    static func get(_ port: Int, _ path: String = "/", headers: [(String, String)] = []) async -> (origin: String?, status: Int, headers: HTTPHeaders) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        for (n, v) in headers { request.headers.add(name: n, value: v) }
        do {
            let r = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            _ = try await r.body.collect(upTo: 1 << 20)
            return (r.headers.first(name: "x-origin"), Int(r.status.code), r.headers)
        } catch {
            return (nil, 0, [:])
        }
    }

    /// The proxy's shared state of `origin`'s address (active health, ejection, slow start, resolved addresses).
    static func hostState(_ proxy: ProxyHarness, _ origin: TestOrigin) async -> HostState {
        await proxy.server.hosts.state(for: HostPort(host: origin.host, port: origin.port), cluster: "c", now: 0)
    }

    static func yaml(_ names: [String], cluster: String, workers: Int = 1, extraHosts: String = "") -> String {
        let hosts = names.map { "{ address: \"{{origin:\($0)}}\" }" }.joined(separator: ", ")
        return """
            workers: \(workers)
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes: [ { cluster: c } ]
            clusters:
              - name: c
                hosts: [ \(hosts)\(extraHosts) ]
            \(cluster.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
            """
    }

    @Test func killingAnOriginFailsNoRequestAndItComesBackWithSlowStart() async throws {
        var origins = [try await TestOrigin.start(name: "a"), try await TestOrigin.start(name: "b"), try await TestOrigin.start(name: "c")]
        let cPort = origins[2].port
        let config = Self.yaml(["a", "b", "c"], cluster: """
            balancer: weighted_round_robin
            slow_start: 4s
            health_check: { passive: { consecutive_failures: 1, base_ejection_time: 1s, max_ejection_percent: 50 } }
            retries: { retry_on: [connect_failure, reset, "502", "503", "504"], max_retries: 2, backoff_base: 1ms }
            """)
        let proxy = try await ProxyHarness.start(yaml: config, origins: origins, workers: 1, logLevel: .critical)
        let port = proxy.port()

        var failures = 0
        var seen: [String: Int] = [:]
        for _ in 0..<60 {
            let r = await Self.get(port)
            if r.status != 200 { failures += 1 }
            seen[r.origin ?? "-", default: 0] += 1
        }
        #expect(failures == 0)
        #expect(seen["a", default: 0] > 10 && seen["b", default: 0] > 10 && seen["c", default: 0] > 10)

        // Kill c while requests keep coming: none fails, and c is ejected (it gets nothing).
        await origins[2].shutdown()
        var afterKill: [String: Int] = [:]
        for _ in 0..<60 {
            let r = await Self.get(port)
            if r.status != 200 { failures += 1 }
            afterKill[r.origin ?? "-", default: 0] += 1
        }
        #expect(failures == 0, "failed requests in the kill-one-origin test: \(failures)")
        #expect(afterKill["c", default: 0] == 0)

        // Bring c back on the same port; once its ejection ends it takes traffic again, ramping up (slow start).
        // Traffic keeps flowing while c restarts, so an ejection that runs out before c is back is renewed.
        // The ramp runs from the end of c's last ejection, as the proxy recorded it (c's `availableSince`); that is
        // final once c serves again (it is no longer ejected, and nothing ejects a host that answers).
        typealias Sample = (elapsed: TimeAmount, isC: Bool)
        let cState = await Self.hostState(proxy, origins[2])
        var samples: [Sample] = []
        var restarted = false
        var enough = false
        let start = NIODeadline.now()
        func recordedRampStart() -> TimeAmount { .nanoseconds(cState.availableSince - Int64(start.uptimeNanoseconds)) }
        // Early: the first 1.4 s of the 4 s ramp (c at 10% to 40% of its weight); late: after 4.5 s (full weight). The
        // windows are long enough to hold 20 requests even on a loaded 2-core machine.
        func windows(_ samples: [Sample], rampStart: TimeAmount) -> (early: [Sample], late: [Sample]) {
            (
                samples.filter { $0.elapsed >= rampStart && $0.elapsed < rampStart + .milliseconds(1400) },
                samples.filter { $0.elapsed > rampStart + .milliseconds(4500) }
            )
        }
        while NIODeadline.now() - start < .seconds(30) {
            if !restarted && NIODeadline.now() - start > .milliseconds(300) {
                origins[2] = try await TestOrigin.start(name: "c", port: cPort)
                restarted = true
            }
            // Four at a time: a loaded machine (other suites run alongside) still fills each window with samples.
            async let r1 = Self.get(port)
            async let r2 = Self.get(port)
            async let r3 = Self.get(port)
            async let r4 = Self.get(port)
            for r in await [r1, r2, r3, r4] {
                if r.status != 200 { failures += 1 }
                samples.append((NIODeadline.now() - start, r.origin == "c"))
            }
            // Stop once c served again, 30 requests went out well after its return, and the ramp's late window holds
            // 20 (not after a fixed time: a stalled test thread only makes the loop run longer). The late window
            // starts after the early one ends, so the early window is complete by then; requests sent later cannot
            // add to it.
            if let first = samples.first(where: { $0.isC }),
                samples.lazy.filter({ $0.elapsed > first.elapsed + .milliseconds(5000) }).count >= 30,
                windows(samples, rampStart: recordedRampStart()).late.count >= 20
            {
                enough = true
                break
            }
        }
        #expect(failures == 0)
        #expect(enough, "30 s passed before c served again and enough requests went out after its ramp (\(samples.count) requests)")
        let firstC = try #require(samples.first(where: { $0.isC }), "c is used again after it recovers").elapsed
        let afterReturn = samples.filter { $0.elapsed > firstC + .milliseconds(5000) }
        #expect(afterReturn.count >= 30 && afterReturn.contains(where: { $0.isC }), "c takes traffic after slow start")
        // The ramp itself is unit-tested (BalancerTests.slowStartRampsWeight); this checks the proxy applies it.
        let rampStart = recordedRampStart()
        let (earlyWindow, lateWindow) = windows(samples, rampStart: rampStart)
        #expect(
            earlyWindow.count >= 20 && lateWindow.count >= 20,
            "slow start: \(earlyWindow.count) requests in the first 1.4 s of c's ramp and \(lateWindow.count) after 4.5 s; 20 of each are needed to compare c's shares"
        )
        let earlyShare = Double(earlyWindow.filter { $0.isC }.count) / Double(max(earlyWindow.count, 1))
        let lateShare = Double(lateWindow.filter { $0.isC }.count) / Double(max(lateWindow.count, 1))
        #expect(earlyShare < lateShare, "slow start: early share \(earlyShare), late share \(lateShare)")

        await proxy.shutdown()
        for o in origins { await o.shutdown() }
    }

    @Test func activeCheckTakesOutAHostWhoseHealthPathFails() async throws {
        let origins = [try await TestOrigin.start(name: "a"), try await TestOrigin.start(name: "b"), try await TestOrigin.start(name: "c")]
        let config = Self.yaml(["a", "b", "c"], cluster: """
            health_check: { active: { path: /health, interval: 100ms, jitter: 0s, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 2 } }
            """)
        let proxy = try await ProxyHarness.start(yaml: config, origins: origins, workers: 2, logLevel: .critical)
        defer { Task { await proxy.shutdown(); for o in origins { await o.shutdown() } } }
        let port = proxy.port()

        let bState = await Self.hostState(proxy, origins[1])
        origins[1].healthy = false
        try await waitUntil("the active check marks b unhealthy") { !bState.isActiveHealthy }
        var seen: [String: Int] = [:]
        for _ in 0..<40 { seen[await Self.get(port).origin ?? "-", default: 0] += 1 }
        #expect(seen["b", default: 0] == 0)
        #expect(seen["a", default: 0] + seen["c", default: 0] == 40)
        // b's other paths still work: only its health path fails.
        let direct = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://\(origins[1].address)/page"), timeout: .seconds(5))
        #expect(direct.status == .ok)

        origins[1].healthy = true
        try await waitUntil("the active check marks b healthy again") { bState.isActiveHealthy }
        seen = [:]
        for _ in 0..<40 { seen[await Self.get(port).origin ?? "-", default: 0] += 1 }
        #expect(seen["b", default: 0] > 0)
    }

    @Test func backupHostsTakeOverWhenEveryPrimaryIsDown() async throws {
        let a = try await TestOrigin.start(name: "a")
        let b = try await TestOrigin.start(name: "b")
        let backup = try await TestOrigin.start(name: "backup")
        var config = Self.yaml(["a", "b"], cluster: """
            health_check: { active: { path: /health, interval: 100ms, jitter: 0s, healthy_threshold: 1, unhealthy_threshold: 1 } }
            """, extraHosts: ", { address: \"{{origin:backup}}\", backup: true }")
        config = config.replacingOccurrences(of: "{{origin:backup}}", with: backup.address)
        let proxy = try await ProxyHarness.start(yaml: config, origins: [a, b], workers: 1, logLevel: .critical)
        defer { Task { await proxy.shutdown(); await a.shutdown(); await b.shutdown(); await backup.shutdown() } }
        let port = proxy.port()

        var seen: [String: Int] = [:]
        for _ in 0..<20 { seen[await Self.get(port).origin ?? "-", default: 0] += 1 }
        #expect(seen["backup", default: 0] == 0)
        let aState = await Self.hostState(proxy, a)
        let bState = await Self.hostState(proxy, b)
        a.healthy = false
        b.healthy = false
        try await waitUntil("the active check marks a and b unhealthy") { !aState.isActiveHealthy && !bState.isActiveHealthy }
        seen = [:]
        for _ in 0..<20 { seen[await Self.get(port).origin ?? "-", default: 0] += 1 }
        #expect(seen == ["backup": 20])
        a.healthy = true
        try await waitUntil("the active check marks a healthy again") { aState.isActiveHealthy }
        seen = [:]
        for _ in 0..<20 { seen[await Self.get(port).origin ?? "-", default: 0] += 1 }
        #expect(seen == ["a": 20])
    }

    @Test func noAvailableHostGives503WithRetryAfter() async throws {
        let a = try await TestOrigin.start(name: "a")
        let config = Self.yaml(["a"], cluster: """
            health_check: { active: { path: /health, interval: 100ms, jitter: 0s, unhealthy_threshold: 1 } }
            """)
        let proxy = try await ProxyHarness.start(yaml: config, origins: [a], workers: 1, logLevel: .critical)
        defer { Task { await proxy.shutdown(); await a.shutdown() } }
        let aState = await Self.hostState(proxy, a)
        a.healthy = false
        try await waitUntil("the active check marks a unhealthy") { !aState.isActiveHealthy }
        let r = await Self.get(proxy.port())
        #expect(r.status == 503)
        #expect(r.headers.first(name: "retry-after") != nil)
    }

    @Test func stickySessionsAndConsistentHashing() async throws {
        let origins = [try await TestOrigin.start(name: "a"), try await TestOrigin.start(name: "b"), try await TestOrigin.start(name: "c")]
        let config = Self.yaml(["a", "b", "c"], cluster: "sticky: { cookie: lb }", workers: 2)
        let proxy = try await ProxyHarness.start(yaml: config, origins: origins, workers: 2, logLevel: .critical)
        let first = await Self.get(proxy.port())
        let setCookie = try #require(first.headers.first(name: "set-cookie"))
        #expect(setCookie.hasPrefix("lb="))
        #expect(!setCookie.contains(String(origins[0].port)) && !setCookie.contains("127.0.0.1"))  // opaque
        let cookie = String(setCookie.split(separator: ";")[0])
        for _ in 0..<20 {
            let r = await Self.get(proxy.port(), headers: [("Cookie", cookie)])
            #expect(r.origin == first.origin)
        }
        await proxy.shutdown()

        let hashed = Self.yaml(["a", "b", "c"], cluster: "balancer: consistent_hash\nhash: { source: header, name: X-User }", workers: 2)
        let proxy2 = try await ProxyHarness.start(yaml: hashed, origins: origins, workers: 2, logLevel: .critical)
        var owners: Set<String> = []
        for user in 0..<30 {
            let one = await Self.get(proxy2.port(), headers: [("X-User", "user-\(user)")]).origin
            let two = await Self.get(proxy2.port(), headers: [("X-User", "user-\(user)")]).origin
            #expect(one == two)
            if let one { owners.insert(one) }
        }
        #expect(owners.count == 3)
        await proxy2.shutdown()
        for o in origins { await o.shutdown() }
    }

    @Test func statusRetriesGoToAnotherHost() async throws {
        let a = try await TestOrigin.start(name: "a")
        let b = try await TestOrigin.start(name: "b")
        let config = Self.yaml(["a", "b"], cluster: "retries: { retry_on: [\"503\"], max_retries: 1 }")
        let proxy = try await ProxyHarness.start(yaml: config, origins: [a, b], workers: 1, logLevel: .critical)
        defer { Task { await proxy.shutdown(); await a.shutdown(); await b.shutdown() } }
        // /status/503 answers 503 on every origin: the proxy tries the other host once, then passes the 503 on.
        let before = a.requestCount + b.requestCount
        let r = await Self.get(proxy.port(), "/status/503")
        #expect(r.status == 503)
        #expect(a.requestCount + b.requestCount - before == 2)
        #expect(a.requestCount >= 1 && b.requestCount >= 1)
    }

    @Test func circuitBreakerQueuesThenRefusesWith503() async throws {
        let a = try await TestOrigin.start(name: "a")
        let config = Self.yaml(["a"], cluster: "circuit_breaker: { max_connections: 1, max_pending: 1, queue_timeout: 2s }")
        let proxy = try await ProxyHarness.start(yaml: config, origins: [a], workers: 1, logLevel: .critical)
        defer { Task { await proxy.shutdown(); await a.shutdown() } }
        let port = proxy.port()
        let breaker = await proxy.server.hosts.breaker(forCluster: "c")
        // One request holds the only connection; a second waits in the queue and then gets it; a third overflows.
        let first = try RawHTTPClient(port: port)
        try first.send("GET /delay/400 HTTP/1.1\r\nHost: t\r\n\r\n")
        try await waitUntil("the first request holds the only connection") { a.requestCount == 1 }
        let second = try RawHTTPClient(port: port)
        try second.send("GET /status/201 HTTP/1.1\r\nHost: t\r\n\r\n")
        try await waitUntil("the second request waits in the queue") { breaker.pending == 1 }
        let third = try RawHTTPClient(port: port)
        try third.send("GET /status/202 HTTP/1.1\r\nHost: t\r\n\r\n")
        let refused = third.readResponses(1).first
        #expect(refused?.status == 503)
        #expect(refused?.header("retry-after") != nil)
        #expect(first.readResponses(1).first?.status == 200)
        #expect(second.readResponses(1).first?.status == 201)
        #expect(a.connectionCount == 1)
    }

    @Test func circuitBreakerQueueTimesOut() async throws {
        let a = try await TestOrigin.start(name: "a")
        let config = Self.yaml(["a"], cluster: "circuit_breaker: { max_connections: 1, max_pending: 4, queue_timeout: 300ms }")
        let proxy = try await ProxyHarness.start(yaml: config, origins: [a], workers: 1, logLevel: .critical)
        defer { Task { await proxy.shutdown(); await a.shutdown() } }
        let first = try RawHTTPClient(port: proxy.port())
        let firstSent = ContinuousClock.now
        try first.send("GET /delay/1500 HTTP/1.1\r\nHost: t\r\n\r\n")
        try await waitUntil("the first request holds the only connection") { a.requestCount == 1 }
        // The second request finds no free connection and waits in the queue; 300 ms later it is refused. Not at once
        // (that would be an overflow without queueing), and before the first response, which the origin holds for
        // 1.5 s (once the connection is free, a queued request takes it).
        let second = try RawHTTPClient(port: proxy.port())
        let secondSent = ContinuousClock.now
        try second.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        let refused = second.readResponses(1).first
        let refusedAt = ContinuousClock.now
        #expect(refused?.status == 503)
        #expect(refused?.header("retry-after") != nil)
        #expect(refusedAt - secondSent >= .milliseconds(250), "the 503 came \(refusedAt - secondSent) after the request: it did not wait in the queue")
        #expect(refusedAt - firstSent < .milliseconds(1500), "the 503 came \(refusedAt - firstSent) after the first request, whose response takes 1.5 s")
        #expect(first.readResponses(1).first?.status == 200)
        #expect(a.requestCount == 1)
    }

    @Test func hostsByNameAreResolvedAndKeepTheirLastGoodAddresses() async throws {
        let a = try await TestOrigin.start(name: "a")
        let config = Self.yaml([], cluster: "dns_refresh: 200ms\nretries: { retry_on: [connect_failure], max_retries: 2 }", extraHosts: "{ address: \"localhost:\(a.port)\" }")
        let proxy = try await ProxyHarness.start(yaml: config, origins: [a], workers: 1, logLevel: .critical)
        defer { Task { await proxy.shutdown(); await a.shutdown() } }
        // NIO would resolve "localhost" for each new connection by itself: wait until the refresh service has
        // published the addresses, so that the request below goes to one of them.
        let named = await proxy.server.hosts.state(for: HostPort(host: "localhost", port: a.port), cluster: "c", now: 0)
        try await waitUntil("the DNS refresh resolves localhost:\(a.port) to 127.0.0.1") {
            named.resolvedAddresses.contains { $0.ipAddress == "127.0.0.1" }
        }
        let r = await Self.get(proxy.port())
        #expect(r.status == 200 && r.origin == "a")

        let addresses = try DNSRefreshService.resolve("localhost", port: 80)
        #expect(addresses.contains { $0.ipAddress == "127.0.0.1" })
        // A failed resolution leaves the last good addresses in place.
        let state = HostState(address: HostPort(host: "no-such-host.invalid", port: 80))
        state.setResolved(addresses)
        let host = UpstreamHost(index: 0, address: state.address, weight: 1, state: state, stickyID: "x")
        await DNSRefreshService.refresh(host, threadPool: NIOThreadPool.singleton, logger: Logger(label: "t"))
        #expect(state.resolvedAddresses.map(\.description) == addresses.map(\.description))
    }
}
