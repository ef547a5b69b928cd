//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// A set of status codes written `200-399`, `200`, or `200,204,300-399`.
public struct StatusSet: Sendable, Hashable {
    public var ranges: [ClosedRange<Int>]

    public init?(parsing text: String) {
        var ranges: [ClosedRange<Int>] = []
        for part in text.split(separator: ",") {
            let bounds = part.split(separator: "-", maxSplits: 1).map { Int($0.trimmingSpacesSub()) }
            if bounds.count == 1, let a = bounds[0], (100...599).contains(a) {
                ranges.append(a...a)
            } else if bounds.count == 2, let a = bounds[0], let b = bounds[1], a <= b, (100...599).contains(a), (100...599).contains(b) {
                ranges.append(a...b)
            } else {
                return nil
            }
        }
        guard !ranges.isEmpty else { return nil }
        self.ranges = ranges
    }

    public func contains(_ status: Int) -> Bool { self.ranges.contains { $0.contains(status) } }
}

extension Substring {
    fileprivate func trimmingSpacesSub() -> Substring {
        var s = self
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return s
    }
}
