//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import NIOPosix
import PorticoControl
import PorticoCore
import PorticoEngine

/// A real Portico proxy in this process, on 127.0.0.1 port 0, built from a YAML config string.
///
/// The YAML may name origins as `{{origin:NAME}}` (replaced by that origin's `127.0.0.1:PORT`). Listeners
/// should use `127.0.0.1:0`; `port(of:)` gives the bound port.
public final class ProxyHarness: Sendable {
    public let server: ProxyServer
    public let group: MultiThreadedEventLoopGroup
    public let addresses: [String: SocketAddress]

    /// The port of the first listener (or the one named).
    public func port(of listener: String? = nil) -> Int {
        if let listener { return self.addresses[listener]!.port! }
        return self.addresses.values.first!.port!
    }

    public static func start(yaml: String, origins: [TestOrigin] = [], workers: Int = 2, configPath: String? = nil, logLevel: Logger.Level = .warning) async throws -> ProxyHarness {
        var text = yaml
        for o in origins { text = text.replacingOccurrences(of: "{{origin:\(o.name)}}", with: o.address) }
        let valid: ValidatedConfig
        switch ConfigLoader.load(text: text, file: "test.yaml", extraChecks: ConfigFileChecks.errors) {
        case .success(let v): valid = v
        case .failure(let e): throw e
        }
        var logger = Logger(label: "portico-test")
        logger.logLevel = logLevel
        let group = MultiThreadedEventLoopGroup(numberOfThreads: workers)
        let server = ProxyServer(config: valid, configPath: configPath, group: group, logger: logger)
        try await server.start()
        let addresses = await server.engine.boundAddresses
        return ProxyHarness(server: server, group: group, addresses: addresses)
    }

    private init(server: ProxyServer, group: MultiThreadedEventLoopGroup, addresses: [String: SocketAddress]) {
        self.server = server
        self.group = group
        self.addresses = addresses
    }

    public func shutdown() async {
        await self.server.stop()
        try? await self.group.shutdownGracefully()
    }
}

extension String {
    /// Foundation-free replacement, so test support does not need Foundation.
    public func replacingOccurrences(of target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = ""
        var rest = Substring(self)
        while let r = rest.firstRange(of: target) {
            out += rest[..<r.lowerBound]
            out += replacement
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
