//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Passive health checking (Envoy's outlier detection), as a pure decision: after `consecutiveFailures` failures in
/// a row a host is ejected for `baseEjection × n` (n = its ejection count, at most 10), unless that would eject more
/// than `maxEjectionPercent` of the cluster, so some hosts always keep serving.
public struct OutlierDetector: Sendable, Hashable {
    public var consecutiveFailures: Int
    public var baseEjectionNanos: Int64
    public var maxEjectionPercent: Int
    public var failureStatuses: Set<Int>

    public init(_ c: PassiveHealthCheckConfig) {
        self.consecutiveFailures = c.consecutiveFailures ?? 5
        self.baseEjectionNanos = c.baseEjectionTime?.nanoseconds ?? 30_000_000_000
        self.maxEjectionPercent = c.maxEjectionPercent ?? 50
        self.failureStatuses = Set(c.failureStatuses ?? [502, 503, 504])
    }

    public enum Decision: Equatable, Sendable {
        case none
        /// Eject until this uptime (nanoseconds).
        case eject(until: Int64)
        /// The threshold was reached but too many hosts are already out.
        case refusedByMaxPercent
    }

    /// - Parameters:
    ///   - failures: the host's consecutive failures, including this one.
    ///   - previousEjections: how many times it was ejected before.
    ///   - ejectedNow: hosts of the cluster ejected at this moment.
    ///   - hostCount: hosts in the cluster.
    public func decide(failures: Int, previousEjections: Int, ejectedNow: Int, hostCount: Int, now: Int64) -> Decision {
        guard failures >= self.consecutiveFailures else { return .none }
        // At least one host may always be ejected when the percentage allows any (Envoy rounds the same way).
        let allowed = max(hostCount * self.maxEjectionPercent / 100, self.maxEjectionPercent > 0 ? 1 : 0)
        guard ejectedNow < allowed, ejectedNow + 1 < hostCount || hostCount == 1 && self.maxEjectionPercent == 100 else {
            return .refusedByMaxPercent
        }
        let multiplier = Int64(min(previousEjections + 1, 10))
        return .eject(until: now + self.baseEjectionNanos * multiplier)
    }
}
