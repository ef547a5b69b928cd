//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// The admin listener: the config API, cluster state, health, metrics and the dashboard, on an address of its
/// own. Off unless configured.
public struct AdminConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// `host:port`, e.g. `127.0.0.1:9901`. On an address other than loopback a `token_file` is required.
    public var address: String
    /// A file holding a bearer token: every request must send `Authorization: Bearer <token>`. Read at start and
    /// on reload.
    public var tokenFile: String?

    public init(address: String, tokenFile: String? = nil) {
        self.address = address
        self.tokenFile = tokenFile
    }

    public static var configPlaceholder: AdminConfig { .init(address: "") }
}
