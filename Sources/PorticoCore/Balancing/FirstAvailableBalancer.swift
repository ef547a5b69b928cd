//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// The first eligible host in config order: active/standby without marking hosts as backups.
public struct FirstAvailableBalancer: LoadBalancer {
    public init() {}

    @inlinable
    public mutating func pick<H: BalancerHosts, R: RandomNumberGenerator>(_ hosts: H, hash: UInt64, using rng: inout R) -> Int? {
        for i in 0..<hosts.count where hosts.isEligible(i) { return i }
        return nil
    }
}
