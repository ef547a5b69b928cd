//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Logging
import NIOCore
import PorticoCore
import PorticoRedis
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
    private let group: any EventLoopGroup
    /// Request tracing, when configured (started with the server; changes take effect on restart).
    private var tracing: TracingService?
    /// Listener certificates: loaded and reloaded off the EventLoops.
    private let certificates: CertificateService
    let auth: AuthService
    let overload: OverloadService
    /// The responses routes with `cache` store; kept across reloads while `cache_storage` stays the same.
    public private(set) var cacheStore: CacheStore?
    /// Route rate limiters in force, and those of the table being compiled (kept once it is in force).
    private var rateLimiters: [RouteFilters.RouteKey: RateLimitFilter] = [:]
    private var pendingRateLimiters: [RouteFilters.RouteKey: RateLimitFilter] = [:]
    /// The table being served (the last one published).
    public private(set) var table: RoutingTable?
    /// The admin listener, when configured (bound at start; a change of `admin` takes effect on restart).
    private var admin: AdminServer?
    /// A config change is being applied (by SIGHUP or the admin API): another one waits its turn or is refused.
    private var applying = false
    /// Changes waiting for the one being applied, in order.
    private var applyWaiters: [CheckedContinuation<Void, Never>] = []
    /// Reloads applied and refused, for metrics.
    private(set) var reloads = 0
    private(set) var reloadFailures = 0

    public init(
        config: ValidatedConfig,
        configPath: String?,
        group: any EventLoopGroup,
        logger: Logger,
        onStarted: (@Sendable ([String: SocketAddress]) -> Void)? = nil
    ) {
        self.current = config
        self.configPath = configPath
        self.group = group
        self.certificates = CertificateService(logger: logger)
        self.auth = AuthService(group: group, logger: logger)
        self.engine = ProxyEngine(group: group, logger: logger)
        self.overload = OverloadService(engine: self.engine, logger: logger)
        self.healthChecks = HealthCheckService(group: group, logger: logger)
        self.dns = DNSRefreshService(logger: logger)
        self.logger = logger
        self.onStarted = onStarted
    }

    /// Starts serving; use this (and `stop`) when not running under a `ServiceGroup`.
    public func start() async throws {
        self.generation = 1
        if let t = self.current.config.tracing {
            self.tracing = try TracingService(t, logger: self.logger)
        }
        let (table, store) = self.compile(self.current, generation: 1, auth: try await self.auth.prepare(self.current.config))
        await self.auth.activate()
        self.cacheStore = store
        self.rateLimiters = self.pendingRateLimiters
        await self.dns.update(table)
        let tls = try await self.certificates.prepare(self.current.config)
        try await self.engine.start(table: table, tls: tls)
        await self.certificates.activate(tls)
        self.table = table
        await self.healthChecks.update(table)
        if let admin = self.current.config.admin, let address = HostPort(parsing: admin.address) {
            let token = try admin.tokenFile.map { path -> String in
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                    throw ConfigErrors([ConfigError(path: "admin.token_file", message: "cannot read \(path)")])
                }
                let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
                guard !token.isEmpty else { throw ConfigErrors([ConfigError(path: "admin.token_file", message: "\(path) is empty")]) }
                return token
            }
            self.admin = try await AdminServer.start(address: address, group: self.group, api: AdminAPI(server: self, token: token), tls: admin.tls)
            self.logger.info("admin API listening", metadata: ["address": "\(self.admin?.localAddress.map { "\($0)" } ?? admin.address)"])
        }
        await self.overload.start(self.current.config.overload)
        self.logger.info("portico started", metadata: ["generation": "1"])
        self.onStarted?(await self.engine.boundAddresses)
    }

    public func run() async throws {
        try await self.start()
        let hup = await UnixSignalsSequence(trapping: .sighup)
        let usr1 = await UnixSignalsSequence(trapping: .sigusr1)
        // Not child tasks: iterating a signal sequence does not end on cancellation, and a task group would wait
        // for it forever at shutdown.
        let reloader = Task {
            for await _ in hup {
                await self.reloadFromFile()
            }
        }
        let reopener = Task {
            for await _ in usr1 {
                self.logger.info("reopening log files")
                await self.engine.reopenLogs()
            }
        }
        try? await gracefulShutdown()
        reloader.cancel()
        reopener.cancel()
        await self.stop()
    }

    /// Stops accepting and waits up to the configured grace period for in-flight requests.
    public func stop() async {
        await self.overload.stop()
        await self.certificates.stop()
        await self.auth.stop()
        await self.tracing?.stop()
        await self.admin?.stop()
        self.admin = nil
        let grace = self.current.config.shutdownGrace?.nanoseconds ?? 30_000_000_000
        self.logger.info("shutting down", metadata: ["grace": "\(ConfigDuration(nanoseconds: grace))"])
        await self.healthChecks.stop()
        await self.dns.stop()
        await self.engine.shutdown(grace: .nanoseconds(grace))
        self.releaseRateLimiters(keeping: [:])
        // Responses stored just before the stop reach the disk before the process exits.
        await self.cacheStore?.disk?.flush()
    }

    /// The table for `config`, and the cache store its routes use: the running one while `cache_storage` is the
    /// same (what is stored survives the reload). The caller keeps the store only once the table is in force.
    private func compile(_ config: ValidatedConfig, generation: UInt64, auth: [AuthConfig: any ProxyFilter]) -> (RoutingTable, CacheStore?) {
        let c = config.config
        var store: CacheStore?
        if c.routes.contains(where: { $0.cache != nil }) {
            let storage = c.cacheStorage ?? CacheStorageConfig()
            let directory = storage.disk.map { CacheDiskTier.normalize($0.path) }
            if let running = self.cacheStore, running.maxBytes == storage.effectiveMaxSize, running.maxObjectBytes == storage.effectiveMaxObjectSize,
               running.disk?.directory == directory
            {
                store = running
                if let d = storage.disk { running.disk?.maxBytes = d.effectiveMaxSize }
            } else {
                var disk: CacheDiskTier?
                if let d = storage.disk, let running = self.cacheStore?.disk, running.directory == directory {
                    // One tier per directory: a new memory store keeps the running tier (its index and queue).
                    running.maxBytes = d.effectiveMaxSize
                    disk = running
                } else if let d = storage.disk {
                    do {
                        disk = try CacheDiskTier(directory: d.path, maxBytes: d.effectiveMaxSize, logger: self.logger)
                    } catch {
                        // Checked when the config loaded (`ConfigFileChecks`); a directory that went since then
                        // leaves the cache in memory only.
                        self.logger.error("cache directory unusable, caching in memory only", metadata: ["error": "\(error)"])
                    }
                }
                store = CacheStore(maxBytes: storage.effectiveMaxSize, maxObjectBytes: storage.effectiveMaxObjectSize, disk: disk)
            }
        }
        var filters = RouteFilters(
            cacheStore: store, trustedProxies: (c.forwarding?.trustedProxies ?? []).compactMap(CIDR.init(parsing:)), tracing: self.tracing?.filter)
        // Rate limiters whose route and limits did not change keep their counts across the reload.
        var limiters: [RouteFilters.RouteKey: RateLimitFilter] = [:]
        for r in c.routes {
            guard let limits = r.rateLimits, !limits.isEmpty else { continue }
            let key = RouteFilters.RouteKey(route: r.name ?? "-", limits: limits, trustedProxies: c.forwarding?.trustedProxies ?? [])
            limiters[key] = self.rateLimiters[key] ?? self.makeRateLimitFilter(route: r.name ?? "-", limits, trustedProxies: filters.trustedProxies)
        }
        filters.rateLimitFilters = limiters
        filters.auth = auth
        self.pendingRateLimiters = limiters
        // Error page files, read here on the control plane (small, and only when a config loads).
        var files: [String: [UInt8]] = [:]
        for path in (c.errorPages ?? [:]).values + c.routes.flatMap({ ($0.errorPages ?? [:]).values }) where files[path] == nil {
            if let data = FileManager.default.contents(atPath: path) { files[path] = Array(data) }
        }
        let table = RoutingTable.compile(config, generation: generation, registry: self.hosts, now: Int64(NIODeadline.now().uptimeNanoseconds),
                                         routeFilters: filters.make, files: files)
        return (table, store)
    }

    /// A route's rate limits; `store: redis` limits get their Redis store (a connection per EventLoop).
    private func makeRateLimitFilter(route: String, _ limits: [RateLimitConfig], trustedProxies: [CIDR]) -> RateLimitFilter {
        let loops = Array(self.group.makeIterator())
        let logger = self.logger
        return RateLimitFilter(route: route, configs: limits, trustedProxies: trustedProxies) { name, config, limiter in
            guard let redis = config.redis else { return nil }
            let password = redis.passwordFile
                .flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }
                .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            do {
                return try RedisRateLimitStore(config: redis, limitName: name, route: route, limiter: limiter, eventLoops: loops,
                                               password: password, logger: logger)
            } catch {
                logger.error("Redis address not usable: the limit counts locally", metadata: ["limit": "\(name)", "redis": "\(redis.address)"])
                return nil
            }
        }
    }

    /// Rate limiters of the previous generation that the new one does not use: their Redis connections close.
    private func releaseRateLimiters(keeping kept: [RouteFilters.RouteKey: RateLimitFilter]) {
        for (key, filter) in self.rateLimiters where kept[key] == nil { filter.close() }
    }

    /// Re-reads the config file. Errors are logged and leave the running config in force.
    @discardableResult
    public func reloadFromFile() async -> Result<UInt64, ConfigErrors> {
        guard let path = self.configPath else {
            return .failure(ConfigErrors([ConfigError(path: "", message: "no config file to reload")]))
        }
        self.logger.info("reloading", metadata: ["config": "\(path)"])
        switch ConfigLoader.load(path: path, extraChecks: ConfigFileChecks.errors) {
        case .failure(let errors):
            for e in errors.all { self.logger.error("config error, keeping the running config: \(e)") }
            self.reloadFailures += 1
            return .failure(errors)
        case .success(let valid):
            return await self.apply(valid)
        }
    }

    /// Publishes `config` as the next generation. Changes are applied one at a time.
    public func apply(_ config: ValidatedConfig) async -> Result<UInt64, ConfigErrors> {
        await self.beginApplying()
        defer { self.endApplying() }
        return await self.publish(config)
    }

    /// Waits for the change being applied, if any, then holds the turn.
    private func beginApplying() async {
        if self.applying {
            await withCheckedContinuation { self.applyWaiters.append($0) }  // the turn is handed over by endApplying
        } else {
            self.applying = true
        }
    }

    /// Hands the turn to the next waiting change, or frees it.
    private func endApplying() {
        if self.applyWaiters.isEmpty {
            self.applying = false
        } else {
            self.applyWaiters.removeFirst().resume()
        }
    }

    private func publish(_ config: ValidatedConfig) async -> Result<UInt64, ConfigErrors> {
        let next = self.generation + 1
        let auth: [AuthConfig: any ProxyFilter]
        do {
            auth = try await self.auth.prepare(config.config)
        } catch {
            let errors = error as? ConfigErrors ?? ConfigErrors([ConfigError(path: "routes", message: "\(error)")])
            for e in errors.all { self.logger.error("config error, keeping the running config: \(e)") }
            self.reloadFailures += 1
            return .failure(errors)
        }
        let (table, store) = self.compile(config, generation: next, auth: auth)
        do {
            let tls = try await self.certificates.prepare(config.config)
            try await self.engine.apply(table: table, tls: tls)
            await self.certificates.activate(tls)
            await self.healthChecks.update(table)
            await self.dns.update(table)
        } catch {
            self.logger.error("reload failed, keeping the running config: \(error)")
            self.reloadFailures += 1
            return .failure(ConfigErrors([ConfigError(path: "listeners", message: "\(error)")]))
        }
        if config.config.admin != self.current.config.admin {
            self.logger.warning("admin settings changed: they take effect on restart")
        }
        if config.config.tracing != self.current.config.tracing {
            self.logger.warning("tracing settings changed: they take effect on restart")
        }
        await self.auth.activate()
        if config.config.overload != self.current.config.overload { await self.overload.start(config.config.overload) }
        self.reloads += 1
        self.cacheStore = store
        self.releaseRateLimiters(keeping: self.pendingRateLimiters)
        self.rateLimiters = self.pendingRateLimiters
        self.table = table
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

    // MARK: The admin API's view

    /// The admin listener's address once bound.
    public var adminAddress: SocketAddress? { self.admin?.localAddress }

    /// Started, with every listener bound.
    var isReady: Bool { self.table != nil }

    /// The ETag of the running config: its generation.
    var etag: String { "\"\(self.generation)\"" }

    /// The running config as JSON (snake_case keys, as written in a config file), and its ETag.
    func runningConfigJSON() -> (String, [UInt8]) {
        (self.etag, AdminAPI.encode(self.current.config))
    }

    func validate(text: String) -> Result<ValidatedConfig, ConfigErrors> {
        ConfigLoader.load(text: text, file: "admin API", extraChecks: ConfigFileChecks.errors)
    }

    enum AdminApplyResult: Sendable {
        case applied(etag: String, generation: UInt64)
        case staleETag(current: String)
        case busy
        case invalid(ConfigErrors)
    }

    /// `POST /config`: validated, then applied only if `ifMatch` is still the running config's ETag.
    func applyFromAdmin(text: String, ifMatch: String) async -> AdminApplyResult {
        guard !self.applying else { return .busy }
        guard ifMatch == self.etag || ifMatch == "*" else { return .staleETag(current: self.etag) }
        switch self.validate(text: text) {
        case .failure(let errors):
            self.reloadFailures += 1
            return .invalid(errors)
        case .success(let valid):
            self.applying = true
            defer { self.endApplying() }
            self.logger.info("applying a config from the admin API")
            switch await self.publish(valid) {
            case .success(let generation): return .applied(etag: self.etag, generation: generation)
            case .failure(let errors): return .invalid(errors)
            }
        }
    }

    func clusterSnapshots() -> [ClusterSnapshot] {
        guard let table = self.table else { return [] }
        let now = Int64(NIODeadline.now().uptimeNanoseconds)
        return table.clusters.map { c in
            ClusterSnapshot(
                name: c.name, balancer: c.balancer.rawValue, hosts: c.hosts.map { HostSnapshot($0, cluster: c, now: now) },
                circuitBreaker: .init(connections: c.breaker.connections, pending: c.breaker.pending, requests: c.breaker.requests,
                                      overflows: c.breaker.overflows, maxConnections: c.maxConnections, maxRequests: c.maxRequests))
        }
    }

    /// Drains (no new requests; those in flight finish) or undrains a host of a cluster. Nil when there is none.
    func setDrained(cluster: String, address: String, drained: Bool) -> HostSnapshot? {
        guard let c = self.table?.clusters.first(where: { $0.name == cluster }),
            let host = c.hosts.first(where: { $0.address.description == address || $0.authority == address })
        else { return nil }
        host.state.setDrained(drained)
        self.logger.notice(drained ? "host drained" : "host undrained", metadata: ["cluster": "\(cluster)", "host": "\(address)"])
        return HostSnapshot(host, cluster: c, now: Int64(NIODeadline.now().uptimeNanoseconds))
    }

    func metricsText() async -> String {
        await Metrics.render(server: self)
    }
}
