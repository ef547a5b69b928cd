//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Synchronization

/// Where each route, cluster and listener counts in the workers' metrics: a small integer per name, fixed for the
/// life of the process (so a counter goes on across reloads), given out when a config is compiled. A request
/// then counts by array index, never by a dictionary lookup.
///
/// Series are bounded: past `cap` names in a family, further names share slot 0, reported as `other`, so a config
/// with thousands of hosts or routes cannot flood a Prometheus server. Labels only ever come from the config.
public final class MetricSlots: Sendable {
    public enum Family: Int, Sendable, CaseIterable {
        case route, cluster, listener
    }

    /// Distinct names per family before the rest fold into `other`.
    public let cap: Int
    private let state = Mutex<[[String]]>(Family.allCases.map { _ in ["other"] })

    public init(cap: Int = 500) {
        self.cap = cap
    }

    /// The slot of `name` (made on first use; 0, `other`, past the cap). Called at compile time, not per request.
    public func slot(_ family: Family, _ name: String) -> Int {
        self.state.withLock { names in
            if let i = names[family.rawValue].firstIndex(of: name) { return i }
            guard names[family.rawValue].count <= self.cap else { return 0 }
            names[family.rawValue].append(name)
            return names[family.rawValue].count - 1
        }
    }

    /// Names by slot (slot 0 is `other`).
    public func names(_ family: Family) -> [String] {
        self.state.withLock { $0[family.rawValue] }
    }
}
