//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import PorticoCore
import PorticoEngine

/// Active health checks: one probe loop per host of every cluster that has `health_check.active`, run as
/// Swift tasks on the control plane, never on the request path. Results reach every worker through the shared
/// `HostState` atomics; each change of state is logged once, with its reason.
///
/// `update` is called with every new config generation: probe loops restart with the new settings, while each
/// host's health carries over (it lives in `HostState`).
public actor HealthCheckService {
    private let group: any EventLoopGroup
    private let logger: Logger
    private var tasks: [Task<Void, Never>] = []

    public init(group: any EventLoopGroup, logger: Logger) {
        self.group = group
        self.logger = logger
    }

    public func update(_ table: RoutingTable) {
        self.stop()
        for cluster in table.clusters {
            guard let active = cluster.activeHealth else { continue }
            // Probes speak the cluster's protocol, with its TLS settings.
            var tls: UpstreamTLS?
            if let config = table.config.clusters?.first(where: { $0.name == cluster.name })?.tls {
                do {
                    tls = try UpstreamTLS(config, http2: cluster.http2)
                } catch {
                    self.logger.error("health checks of cluster \(cluster.name) cannot use its TLS settings: \(error)")
                }
            }
            let probe = HealthProbe(active, tls: tls, http2: cluster.http2, proxyProtocol: cluster.proxyProtocol)
            for host in cluster.hosts {
                self.tasks.append(Task { [group, logger] in
                    await Self.probeLoop(cluster: cluster.name, host: host, probe: probe, config: active, group: group, logger: logger)
                })
            }
        }
    }

    public func stop() {
        for t in self.tasks { t.cancel() }
        self.tasks = []
    }

    private static func probeLoop(cluster: String, host: UpstreamHost, probe: HealthProbe, config: ActiveHealthCheckConfig, group: any EventLoopGroup, logger: Logger) async {
        var machine = ActiveHealthStateMachine(
            healthyThreshold: config.healthyThreshold ?? 2,
            unhealthyThreshold: config.unhealthyThreshold ?? 3,
            startHealthy: host.state.isActiveHealthy
        )
        let interval = config.interval?.nanoseconds ?? 5_000_000_000
        let jitter = config.jitter?.nanoseconds ?? interval / 10
        while !Task.isCancelled {
            let result = await probe.run(host.address, group: group)
            if Task.isCancelled { return }
            if let transition = machine.record(passed: result.passed) {
                let now = Int64(NIODeadline.now().uptimeNanoseconds)
                switch transition {
                case .becameHealthy:
                    host.state.setActiveHealthy(true, now: now)
                    logger.notice("host healthy", metadata: ["cluster": "\(cluster)", "host": "\(host.address)", "reason": "\(result.detail)"])
                case .becameUnhealthy:
                    host.state.setActiveHealthy(false, now: now)
                    logger.warning("host unhealthy", metadata: ["cluster": "\(cluster)", "host": "\(host.address)", "reason": "\(result.detail)"])
                }
            }
            let delay = interval + (jitter > 0 ? Int64.random(in: 0...jitter) : 0)
            try? await Task.sleep(nanoseconds: UInt64(delay))
        }
    }
}
