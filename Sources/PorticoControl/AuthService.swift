//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import PorticoAuth
import PorticoCore
import Synchronization

/// The control-plane side of the routes' `auth`: it reads htpasswd files and JWT keys before a config goes into
/// force, watches the htpasswd files (every 2 seconds) and fetches JWK Sets (every `jwks_refresh`, and soon
/// after a token names an unknown key), and owns the thread pool bcrypt checks run on. The filters it makes read
/// what it loaded and never wait for it.
///
/// An actor: its state is its own. File reads run on its thread pool, not on Swift concurrency's threads.
actor AuthService {
    private let logger: Logger
    private let group: any EventLoopGroup
    /// bcrypt checks and file reads. As many threads as cores: a burst of new logins may use the machine, but a
    /// bounded queue (`BasicAuthFilter`) keeps it from taking more.
    private let pool: NIOThreadPool
    private var poolStarted = false
    private var httpClient: HTTPClient?

    /// Loaded files and key sets, by what they were loaded from; kept across reloads while the config names them.
    private var files: [String: HTPasswdFile] = [:]
    private var keySets: [JWTAuthConfig: JWKSource] = [:]
    private var pendingFiles: [String: HTPasswdFile] = [:]
    private var pendingKeySets: [JWTAuthConfig: JWKSource] = [:]
    private var refreshTasks: [JWTAuthConfig: Task<Void, Never>] = [:]
    private var watcher: Task<Void, Never>?

    /// One route config's keys, and the task that refreshes its JWK Set URL.
    final class JWKSource: Sendable {
        let keys: JWTKeySet
        let refreshNow = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        /// Monotonic nanoseconds of the last refresh a token asked for.
        let lastAsked = Atomic<Int64>(0)
        init(keys: JWTKeySet) { self.keys = keys }

        /// Called on an EventLoop when a token names a key the set lacks: at most once per 30 seconds.
        func askForRefresh() {
            let now = Int64(NIODeadline.now().uptimeNanoseconds)
            let last = self.lastAsked.load(ordering: .relaxed)
            guard now - last > 30_000_000_000, self.lastAsked.compareExchange(expected: last, desired: now, ordering: .relaxed).exchanged
            else { return }
            self.refreshNow.continuation.yield()
        }
    }

    init(group: any EventLoopGroup, logger: Logger) {
        self.group = group
        self.logger = logger
        self.pool = NIOThreadPool(numberOfThreads: System.coreCount)
    }

    /// The auth filter of each distinct `auth` config of `config`'s routes. Reads what it needs first; throws the
    /// errors by key path when a file or key cannot be loaded (`AuthConfigCheck` has normally said so already).
    func prepare(_ config: PorticoConfig) async throws -> [AuthConfig: any ProxyFilter] {
        var filters: [AuthConfig: any ProxyFilter] = [:]
        self.pendingFiles = [:]
        self.pendingKeySets = [:]
        for (i, route) in config.routes.enumerated() {
            guard let auth = route.auth, filters[auth] == nil else { continue }
            if let basic = auth.basic {
                let file = try await self.file(basic.htpasswd, path: "routes[\(i)].auth.basic.htpasswd")
                self.startPool()
                filters[auth] = BasicAuthFilter(file: file, config: basic, pool: self.pool, pending: BasicAuthFilter.Pending())
            } else if let forward = auth.forward {
                filters[auth] = ForwardAuthFilter(forward)
            } else if let jwt = auth.jwt {
                let source = try await self.keySource(jwt, path: "routes[\(i)].auth.jwt")
                var onUnknownKey: (@Sendable () -> Void)?
                if jwt.jwksUrl != nil { onUnknownKey = { source.askForRefresh() } }
                filters[auth] = JWTAuthFilter(keys: source.keys, config: jwt, onUnknownKey: onUnknownKey)
            }
        }
        return filters
    }

    /// The prepared files and keys are in force: watch and refresh them; let go of the others.
    func activate() {
        self.files = self.pendingFiles
        self.keySets = self.pendingKeySets
        for (config, task) in self.refreshTasks where self.keySets[config] == nil {
            task.cancel()
            self.refreshTasks[config] = nil
        }
        for (config, source) in self.keySets where self.refreshTasks[config] == nil {
            guard let url = config.jwksUrl else { continue }
            let every = UInt64(config.jwksRefresh?.nanoseconds ?? 600_000_000_000)
            self.refreshTasks[config] = Task { await self.refresh(url, source, every: every) }
        }
        if self.watcher == nil && !self.files.isEmpty {
            self.watcher = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(nanoseconds: 2_000_000_000)
                    await self.reloadChangedFiles()
                }
            }
        }
    }

    /// Fetches `url` every `every` nanoseconds, and when a token asked for it (`JWKSource.askForRefresh`).
    private func refresh(_ url: String, _ source: JWKSource, every: UInt64) async {
        let ticker = Task {
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: every)
                source.refreshNow.continuation.yield()
            }
        }
        defer { ticker.cancel() }
        await withTaskCancellationHandler {
            for await _ in source.refreshNow.stream {
                if Task.isCancelled { return }
                await self.fetchJWKS(url, into: source.keys)
            }
        } onCancel: {
            source.refreshNow.continuation.finish()
        }
    }

    func stop() async {
        self.watcher?.cancel()
        self.watcher = nil
        for task in self.refreshTasks.values { task.cancel() }
        self.refreshTasks = [:]
        self.keySets = [:]
        try? await self.httpClient?.shutdown()
        self.httpClient = nil
        if self.poolStarted { try? await self.pool.shutdownGracefully() }
    }

    // MARK: htpasswd files

    private func file(_ path: String, path keyPath: String) async throws -> HTPasswdFile {
        if let running = self.files[path] ?? self.pendingFiles[path] {
            self.pendingFiles[path] = running
            return running
        }
        self.startPool()
        do {
            let file = try await self.pool.runIfActive { try HTPasswdFile(path: path) }
            self.pendingFiles[path] = file
            return file
        } catch {
            throw ConfigErrors([ConfigError(path: keyPath, message: "\(path): \(error)")])
        }
    }

    /// One look at every watched htpasswd file (the watcher's step; tests call it to look now).
    func reloadChangedFiles() async {
        for file in self.files.values {
            do {
                if case .reloaded(let users) = try await self.pool.runIfActive({ try file.reloadIfChanged() }) {
                    self.logger.info("htpasswd file reloaded", metadata: ["file": "\(file.path)", "users": "\(users)"])
                }
            } catch is CancellationError {
                return
            } catch {
                self.logger.error("htpasswd file not reloaded, keeping its users: \(error)", metadata: ["file": "\(file.path)"])
            }
        }
    }

    private func startPool() {
        if !self.poolStarted {
            self.pool.start()
            self.poolStarted = true
        }
    }

    // MARK: JWT keys

    private func keySource(_ config: JWTAuthConfig, path: String) async throws -> JWKSource {
        let fileKeys: JWTKeySet.Keys
        do {
            // Read on every load, so a key file replaced in place takes effect with the reload.
            fileKeys = try await JWTKeySet.loadFiles(config)
        } catch let e as JWTKeyError {
            throw ConfigErrors([ConfigError(path: "\(path).\(e.field)", message: e.message)])
        }
        if let running = self.keySets[config] ?? self.pendingKeySets[config] {
            // The JWK Set URL's keys and its refresh go on; the files' keys are the ones just read.
            running.keys.replaceFileKeys(fileKeys)
            self.pendingKeySets[config] = running
            return running
        }
        let source = JWKSource(keys: JWTKeySet(fileKeys: fileKeys))
        if let url = config.jwksUrl, await !self.fetchJWKS(url, into: source.keys), fileKeys.count == 0 {
            // Not fatal: the URL may answer later (refreshed soon after a token asks); until then tokens are refused.
            self.logger.warning("no JWT keys yet: requests on this route get 401 until the JWK Set URL answers", metadata: ["jwks_url": "\(url)"])
        }
        self.pendingKeySets[config] = source
        return source
    }

    /// Fetches a JWK Set and puts its keys in force. Failures are logged; the keys in force stay.
    @discardableResult
    private func fetchJWKS(_ url: String, into keys: JWTKeySet) async -> Bool {
        let client: HTTPClient
        if let c = self.httpClient {
            client = c
        } else {
            client = HTTPClient(eventLoopGroup: self.group, configuration: .init(timeout: .init(connect: .seconds(5), read: .seconds(10))))
            self.httpClient = client
        }
        do {
            var request = HTTPClientRequest(url: url)
            request.headers.add(name: "Accept", value: "application/jwk-set+json, application/json")
            let response = try await client.execute(request, timeout: .seconds(15))
            guard response.status == .ok else {
                self.logger.error("JWK Set not fetched, keeping the keys in force", metadata: ["jwks_url": "\(url)", "status": "\(response.status.code)"])
                return false
            }
            let body = try await response.body.collect(upTo: 1 << 20)
            let parsed = try await JWTKeySet.parseJWKS(Array(body.readableBytesView), field: "jwks_url")
            keys.replaceJWKS(parsed)
            self.logger.debug("JWK Set fetched", metadata: ["jwks_url": "\(url)", "keys": "\(parsed.count)"])
            return true
        } catch let e as JWTKeyError {
            self.logger.error("JWK Set not used, keeping the keys in force: \(e.message)", metadata: ["jwks_url": "\(url)"])
        } catch {
            self.logger.error("JWK Set not fetched, keeping the keys in force: \(error)", metadata: ["jwks_url": "\(url)"])
        }
        return false
    }
}
