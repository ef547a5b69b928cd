//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import PorticoCore
import PorticoEngine
import ServiceLifecycle
import UnixSignals

/// Runs the proxy as a `Service`: starts the engine, reloads the config file on SIGHUP, and on graceful shutdown
/// (SIGTERM/SIGINT through the `ServiceGroup`) stops accepting and lets in-flight requests finish.
///
/// An actor on the control plane. Reload follows ARCHITECTURE §5: decode, validate, compile; on any error the
/// running generation stays and every error is logged; otherwise the engine publishes the new table.
public actor ProxyServer: Service {
    public let engine: ProxyEngine
    public let healthChecks: HealthCheckService
    public let dns: DNSRefreshService
    /// Host state (in flight, health, ejection) by address, shared by every generation.
    public let hosts = HostRegistry()
    private let configPath: String?
    private var current: ValidatedConfig
    private var generation: UInt64 = 0
    private let logger: Logger
    private let onStarted: (@Sendable ([String: SocketAddress]) -> Void)?
    /// The responses routes with `cache` store; kept across reloads while `cache_storage` stays the same.
    public private(set) var cacheStore: CacheStore?

    public init(
        config: ValidatedConfig,
        configPath: String?,
        group: any EventLoopGroup,
        logger: Logger,
        onStarted: (@Sendable ([String: SocketAddress]) -> Void)? = nil
    ) {
        self.current = config
        self.configPath = configPath
        self.engine = ProxyEngine(group: group, logger: logger)
        self.healthChecks = HealthCheckService(group: group, logger: logger)
        self.dns = DNSRefreshService(logger: logger)
        self.logger = logger
        self.onStarted = onStarted
    }

    /// Starts serving; use this (and `stop`) when not running under a `ServiceGroup`.
    public func start() async throws {
        self.generation = 1
        let table = self.compile(self.current, generation: 1)
        await self.dns.update(table)
        try await self.engine.start(table: table)
        await self.healthChecks.update(table)
        self.logger.info("portico started", metadata: ["generation": "1"])
        self.onStarted?(await self.engine.boundAddresses)
    }

    public func run() async throws {
        try await self.start()
        let hup = await UnixSignalsSequence(trapping: .sighup)
        // Not a child task: iterating the signal sequence does not end on cancellation, and a task group would
        // wait for it forever at shutdown.
        let reloader = Task {
            for await _ in hup {
                await self.reloadFromFile()
            }
        }
        try? await gracefulShutdown()
        reloader.cancel()
        await self.stop()
    }

    /// Stops accepting and waits up to the configured grace period for in-flight requests.
    public func stop() async {
        let grace = self.current.config.shutdownGrace?.nanoseconds ?? 30_000_000_000
        self.logger.info("shutting down", metadata: ["grace": "\(ConfigDuration(nanoseconds: grace))"])
        await self.healthChecks.stop()
        await self.dns.stop()
        await self.engine.shutdown(grace: .nanoseconds(grace))
    }

    private func compile(_ config: ValidatedConfig, generation: UInt64) -> RoutingTable {
        let c = config.config
        if c.routes.contains(where: { $0.cache != nil }) {
            let storage = c.cacheStorage ?? CacheStorageConfig()
            if let store = self.cacheStore, store.maxBytes == storage.effectiveMaxSize, store.maxObjectBytes == storage.effectiveMaxObjectSize {
                // The same storage: what is stored survives the reload.
            } else {
                self.cacheStore = CacheStore(maxBytes: storage.effectiveMaxSize, maxObjectBytes: storage.effectiveMaxObjectSize)
            }
        } else {
            self.cacheStore = nil
        }
        let filters = RouteFilters(cacheStore: self.cacheStore)
        return RoutingTable.compile(config, generation: generation, registry: self.hosts, now: Int64(NIODeadline.now().uptimeNanoseconds),
                                    routeFilters: filters.make)
    }

    /// Re-reads the config file. Errors are logged and leave the running config in force.
    @discardableResult
    public func reloadFromFile() async -> Result<UInt64, ConfigErrors> {
        guard let path = self.configPath else {
            return .failure(ConfigErrors([ConfigError(path: "", message: "no config file to reload")]))
        }
        self.logger.info("reloading", metadata: ["config": "\(path)"])
        switch ConfigLoader.load(path: path, extraChecks: TLSConfigCheck.errors) {
        case .failure(let errors):
            for e in errors.all { self.logger.error("config error, keeping the running config: \(e)") }
            return .failure(errors)
        case .success(let valid):
            return await self.apply(valid)
        }
    }

    /// Publishes `config` as the next generation.
    public func apply(_ config: ValidatedConfig) async -> Result<UInt64, ConfigErrors> {
        let next = self.generation + 1
        let table = self.compile(config, generation: next)
        do {
            try await self.engine.apply(table: table)
            await self.healthChecks.update(table)
            await self.dns.update(table)
        } catch {
            self.logger.error("reload failed, keeping the running config: \(error)")
            return .failure(ConfigErrors([ConfigError(path: "listeners", message: "\(error)")]))
        }
        self.generation = next
        self.current = config
        self.logger.info(
            "config reloaded",
            metadata: [
                "generation": "\(next)", "listeners": "\(config.config.listeners.count)",
                "routes": "\(config.config.routes.count)", "clusters": "\(config.config.clusters?.count ?? 0)",
            ]
        )
        return .success(next)
    }
}
