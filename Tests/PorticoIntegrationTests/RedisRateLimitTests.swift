//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import NIOCore
import NIOPosix
import PorticoCore
import PorticoTestSupport
import Testing

/// Rate limits shared through a real `redis-server` (Debian; `.ci/run` installs it), started by each test on a free
/// loopback port and stopped by its PID.
@Suite(.serialized) struct RedisRateLimitTests {
    static let redisServer = "/usr/bin/redis-server"

    final class Redis {
        let port: Int
        private(set) var process: Process?

        init(port: Int? = nil) throws {
            self.port = try port ?? ProxyProtocolIntegrationTests.freePort()
        }

        func start() async throws {
            try #require(FileManager.default.isExecutableFile(atPath: RedisRateLimitTests.redisServer),
                         "redis-server is not installed (.ci/run installs it: apt-get install -y redis-server)")
            let p = Process()
            p.executableURL = URL(fileURLWithPath: RedisRateLimitTests.redisServer)
            p.arguments = ["--port", String(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "yes"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            self.process = p
            try await waitUntil("redis-server listens on \(self.port)") {
                try #require(p.isRunning, "redis-server exited")
                return (try? RawHTTPClient(port: self.port)) != nil
            }
        }

        /// SIGKILL: it holds nothing worth saving, and a child of the test runner may inherit a blocked SIGTERM.
        func stop() {
            guard let p = self.process, p.isRunning else { return }
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            self.process = nil
        }

        deinit { self.stop() }
    }

    static func config(redis: Int, onError: String = "local", rate: Int = 20, timeout: String = "2s") -> String {
        """
        listeners: [ { name: main, address: "127.0.0.1:0" } ]
        access_log: { destination: "off" }
        routes:
          - respond: { body: "ok" }
            rate_limits:
              - { name: shared, key: route, rate: \(rate), per: 1m, burst: \(rate), store: redis,
                  redis: { address: "127.0.0.1:\(redis)", timeout: \(timeout), on_error: \(onError) } }
        """
    }

    /// Two Portico processes, one Redis: together they admit the limit, not twice it.
    @Test func twoProcessesShareOneLimit() async throws {
        let redis = try Redis()
        try await redis.start()
        defer { redis.stop() }
        let path = try BinaryTests.tempFile("redis-shared.yaml", Self.config(redis: redis.port, rate: 40))
        let (a, portA, _) = try BinaryTests.start(["run", "--config", path, "--log-level", "notice"])
        defer { if a.isRunning { kill(a.processIdentifier, SIGKILL) } }
        let (b, portB, _) = try BinaryTests.start(["run", "--config", path, "--log-level", "notice"])
        defer { if b.isRunning { kill(b.processIdentifier, SIGKILL) } }
        var admitted = [0, 0]
        for i in 0..<120 {
            let c = try RawHTTPClient(port: i % 2 == 0 ? portA : portB)
            try c.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            if c.readResponses(1).first?.status == 200 { admitted[i % 2] += 1 }
        }
        // 40 per minute with bursts of 40: in a few seconds, 40 (one more per 1.5 s the test takes).
        let total = admitted[0] + admitted[1]
        #expect((40...42).contains(total), "admitted \(admitted)")
        #expect(admitted[0] > 0 && admitted[1] > 0)
        for p in [a, b] {
            kill(p.processIdentifier, SIGTERM)
            p.waitUntilExit()
        }
    }

    /// Redis goes away: the limit falls back as configured, and is shared again once Redis is back.
    @Test func fallsBackWhileRedisIsDownAndRecovers() async throws {
        let redis = try Redis()
        try await redis.start()
        let local = try await ProxyHarness.start(yaml: Self.config(redis: redis.port, onError: "local", rate: 3, timeout: "500ms"), workers: 1)
        let deny = try await ProxyHarness.start(yaml: Self.config(redis: redis.port, onError: "deny", rate: 3, timeout: "500ms"), workers: 1)
        defer { Task { await local.shutdown(); await deny.shutdown() } }
        func get(_ proxy: ProxyHarness) async throws -> Int {
            try await offThePool {
                let c = try RawHTTPClient(port: proxy.port())
                try c.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                return c.readResponses(1).first?.status ?? 0
            }
        }
        // Shared: the two (same route, same limit name) count together in Redis.
        var codes: [Int] = []
        for i in 0..<6 { codes.append(try await get(i % 2 == 0 ? local : deny)) }
        #expect(codes.filter { $0 == 200 }.count == 3, "\(codes)")

        redis.stop()
        // Local fallback: this process's own budget (3); deny: 503.
        var fallback: [Int] = []
        for _ in 0..<5 { fallback.append(try await get(local)) }
        #expect(fallback == [200, 200, 200, 429, 429], "\(fallback)")
        #expect(try await get(deny) == 503)

        // Redis is back (empty: a new process): the shared count starts again and the deny instance admits.
        let again = try Redis(port: redis.port)
        try await again.start()
        defer { again.stop() }
        try await waitUntil("the shared limit is back in force", timeout: .seconds(10)) { try await get(deny) == 200 }
    }
}
