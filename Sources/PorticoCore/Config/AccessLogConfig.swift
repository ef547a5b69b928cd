//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// The access log: one line per request, written off the EventLoop.
public struct AccessLogConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// `combined` (nginx/Apache combined format plus upstream and timing fields) or `json`. Default `combined`.
    public var format: AccessLogFormat?
    /// `stdout` (default), `stderr`, `off`, or a file path (appended to, reopened on SIGHUP/reload).
    public var destination: String?

    public init(format: AccessLogFormat? = nil, destination: String? = nil) {
        self.format = format
        self.destination = destination
    }

    public static var configPlaceholder: AccessLogConfig { .init() }
}

public enum AccessLogFormat: String, ConfigEnum {
    case combined
    case json
}
