//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Decides, from one measurement of the process's resources, whether Portico enters or leaves overload. Pure;
/// the control plane measures (`OverloadService`) and carries out what this returns.
///
/// Hysteresis: overload starts at a threshold and ends only below 90% of every threshold, so usage hovering at
/// the line does not flip acceptance on and off every interval.
public struct OverloadPolicy: Sendable, Hashable {
    public var openFilesFraction: Double?
    public var maxMemoryBytes: Int?
    public private(set) var overloaded = false

    public struct Usage: Sendable, Hashable {
        public var openFiles: Int
        public var openFilesLimit: Int
        public var residentBytes: Int
        public init(openFiles: Int, openFilesLimit: Int, residentBytes: Int) {
            self.openFiles = openFiles
            self.openFilesLimit = openFilesLimit
            self.residentBytes = residentBytes
        }
    }

    public enum Action: Sendable, Hashable {
        /// Stop accepting; close idle connections. `reason` says which limit.
        case enter(reason: String)
        case leave
    }

    public init(_ config: OverloadConfig?) {
        let percent = config?.openFilesPercent ?? 95
        self.openFilesFraction = percent > 0 ? Double(percent) / 100 : nil
        self.maxMemoryBytes = config?.maxMemory?.bytes
    }

    public var isEnabled: Bool { self.openFilesFraction != nil || self.maxMemoryBytes != nil }

    /// What to do after measuring `usage`; nil when nothing changes.
    public mutating func evaluate(_ usage: Usage) -> Action? {
        var over: String?
        var underAll = true
        if let fraction = self.openFilesFraction, usage.openFilesLimit > 0 {
            let limit = Double(usage.openFilesLimit) * fraction
            if Double(usage.openFiles) >= limit { over = "open files \(usage.openFiles) of \(usage.openFilesLimit)" }
            if Double(usage.openFiles) >= limit * 0.9 { underAll = false }
        }
        if let max = self.maxMemoryBytes {
            if usage.residentBytes >= max { over = over ?? "resident memory \(usage.residentBytes / (1 << 20)) MiB of \(max / (1 << 20)) MiB" }
            if Double(usage.residentBytes) >= Double(max) * 0.9 { underAll = false }
        }
        if !self.overloaded, let over {
            self.overloaded = true
            return .enter(reason: over)
        }
        if self.overloaded && underAll {
            self.overloaded = false
            return .leave
        }
        return nil
    }
}
