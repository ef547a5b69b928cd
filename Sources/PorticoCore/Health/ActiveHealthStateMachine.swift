//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// One host's active health: consecutive probe results against the healthy and unhealthy thresholds. Pure; the
/// `HealthCheckService` feeds it probe results and applies the transitions it returns (and logs each once).
public struct ActiveHealthStateMachine: Sendable, Hashable {
    public private(set) var isHealthy: Bool
    private var passes = 0
    private var failures = 0
    public let healthyThreshold: Int
    public let unhealthyThreshold: Int

    /// Hosts start healthy (as in Caddy and Envoy's default), so a restart does not black-hole traffic while the
    /// first probes run.
    public init(healthyThreshold: Int, unhealthyThreshold: Int, startHealthy: Bool = true) {
        self.isHealthy = startHealthy
        self.healthyThreshold = healthyThreshold
        self.unhealthyThreshold = unhealthyThreshold
    }

    public enum Transition: Equatable, Sendable {
        case becameHealthy
        case becameUnhealthy
    }

    public mutating func record(passed: Bool) -> Transition? {
        if passed {
            self.failures = 0
            self.passes += 1
            if !self.isHealthy && self.passes >= self.healthyThreshold {
                self.isHealthy = true
                return .becameHealthy
            }
        } else {
            self.passes = 0
            self.failures += 1
            if self.isHealthy && self.failures >= self.unhealthyThreshold {
                self.isHealthy = false
                return .becameUnhealthy
            }
        }
        return nil
    }
}
