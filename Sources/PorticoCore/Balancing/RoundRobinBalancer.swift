//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Each host in turn, skipping unavailable ones. One per worker and cluster, touched only on that worker's
/// EventLoop, so the cursor needs no atomics.
public struct RoundRobinBalancer: Sendable {
    public let hostCount: Int
    private var cursor: Int = 0

    public init(hostCount: Int, start: Int = 0) {
        self.hostCount = hostCount
        self.cursor = hostCount == 0 ? 0 : start % hostCount
    }

    public mutating func pick(isAvailable: (Int) -> Bool) -> Int? {
        for _ in 0..<self.hostCount {
            let i = self.cursor
            self.cursor = self.cursor + 1 == self.hostCount ? 0 : self.cursor + 1
            if isAvailable(i) { return i }
        }
        return nil
    }
}
