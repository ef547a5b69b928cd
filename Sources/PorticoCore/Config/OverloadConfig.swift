//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// `overload`: when the process nears a resource limit, Portico stops accepting connections and closes idle
/// keep-alive connections (those in the middle of a request finish it, then close), instead of failing requests
/// in flight (Envoy's overload manager). It resumes once usage is back under 90% of each threshold.
public struct OverloadConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// Percent of the open files limit (`ulimit -n`) at which to act. Default `95`; `0` turns the check off.
    public var openFilesPercent: Int?
    /// Resident memory at which to act. Default: none.
    public var maxMemory: ByteSize?
    /// How often usage is measured. Default `1s`.
    public var interval: ConfigDuration?

    public init(openFilesPercent: Int? = nil, maxMemory: ByteSize? = nil, interval: ConfigDuration? = nil) {
        self.openFilesPercent = openFilesPercent
        self.maxMemory = maxMemory
        self.interval = interval
    }

    public static var configPlaceholder: OverloadConfig { .init() }
}
