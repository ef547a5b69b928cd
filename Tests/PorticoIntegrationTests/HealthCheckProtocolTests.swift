//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import PorticoControl
import PorticoCore
import PorticoTestSupport
import Testing

/// Active health checks speak the cluster's protocol (issue 11 §7): TLS with the cluster's CA and SNI, and HTTP/2
/// for h2 and h2c clusters. A plain HTTP/1.1 probe would mark these healthy hosts down.
@Suite(.serialized) struct HealthCheckProtocolTests {
    // A generous probe timeout: a loaded machine (other suites run alongside) must not fail a probe by its timer.
    static let check = "health_check: { active: { path: /health, interval: 100ms, jitter: 0s, timeout: 5s, healthy_threshold: 1, unhealthy_threshold: 1 } }"

    /// Probes keep a healthy host healthy and notice when its /health fails, for one origin of each kind.
    func probesReach(_ origin: TestOrigin, cluster: String) async throws {
        let yaml = """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes: [ { cluster: c } ]
            clusters: [ { name: c, hosts: [ { address: "\(origin.address)" } ], \(cluster), \(Self.check) } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 1, logLevel: .critical)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let state = await proxy.server.hosts.state(for: HostPort(host: origin.host, port: origin.port), cluster: "c", now: 0)
        let before = origin.requestCount
        // Probes run as Swift tasks; tests elsewhere in the suite that block those threads can delay them.
        try await waitUntil("five probes reach the origin", timeout: .seconds(30)) { origin.requestCount >= before + 5 }
        #expect(state.isActiveHealthy, "a probe in the wrong protocol marked the host down")
        origin.healthy = false
        try await waitUntil("the failing /health is noticed", timeout: .seconds(30)) { !state.isActiveHealthy }
        origin.healthy = true
        try await waitUntil("the host comes back", timeout: .seconds(30)) { state.isActiveHealthy }
    }

    @Test func tlsClusters() async throws {
        let certs = try TestCertificates()
        let cert = try certs.issue("origin", dnsNames: ["origin.internal"])
        let origin = try await TestOrigin.start(name: "secure", tls: cert)
        try await self.probesReach(origin, cluster: "tls: { ca_file: \"\(certs.caFile)\", server_name: origin.internal }")
    }

    @Test func h2cClusters() async throws {
        let origin = try await TestOrigin.start(name: "h2c", http2: true)
        try await self.probesReach(origin, cluster: "protocol: h2c")
    }

    @Test func h2Clusters() async throws {
        let certs = try TestCertificates()
        let cert = try certs.issue("origin", dnsNames: ["origin.internal"])
        let origin = try await TestOrigin.start(name: "h2", tls: cert, http2: true)
        try await self.probesReach(origin, cluster: "protocol: h2, tls: { ca_file: \"\(certs.caFile)\", server_name: origin.internal }")
    }
}
