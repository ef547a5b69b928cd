//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import ArgumentParser
import Logging
import NIOCore
import NIOPosix
import PorticoControl
import PorticoCore
import PorticoEngine
import PorticoDemoOrigin
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

let porticoVersion = "0.1.0"

@main
struct Portico: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "portico",
        abstract: "A reverse proxy: routing by host and path, load balancing, keep-alive pools, in one binary.",
        discussion: """
            Start with a config file:            portico run --config portico.yaml
            Check a config without starting:     portico check --config portico.yaml
            Proxy one port with no config file:  portico proxy --listen 127.0.0.1:8080 --to 127.0.0.1:9001
            """,
        version: "\(porticoVersion) (commit \(buildCommit), built \(buildDate))",
        subcommands: [Run.self, Check.self, QuickProxy.self, Version.self],
        defaultSubcommand: Run.self
    )
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Start the proxy with a config file.",
        discussion: """
            Portico validates the file, binds every listener and serves until SIGTERM or SIGINT, then stops \
            accepting and lets in-flight requests finish (shutdown_grace). SIGHUP re-reads the file: if it has \
            errors they are logged and the running config stays in force.
            """
    )

    @Option(name: .shortAndLong, help: "The config file (YAML or JSON).")
    var config: String = "portico.yaml"

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func run() async throws {
        let logger = makeLogger(self.logLevel)
        let valid: ValidatedConfig
        switch ConfigLoader.load(path: self.config, extraChecks: ConfigFileChecks.errors) {
        case .failure(let errors):
            printErrors(errors)
            throw ExitCode(1)
        case .success(let v):
            valid = v
        }
        try await serve(valid, configPath: self.config, workers: valid.config.workers, logger: logger)
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate a config file without starting anything.",
        discussion: """
            Prints every error with its file, line:column and key path and exits 1, or prints a one-line summary \
            and exits 0 (like nginx -t). Nothing is bound or started.
            """
    )

    @Option(name: .shortAndLong, help: "The config file (YAML or JSON).")
    var config: String = "portico.yaml"

    func run() async throws {
        switch ConfigLoader.load(path: self.config, extraChecks: ConfigFileChecks.errors) {
        case .failure(let errors):
            printErrors(errors)
            throw ExitCode(1)
        case .success(let v):
            let c = v.config
            print(
                "\(self.config): ok: \(c.listeners.count) listener(s), \(c.routes.count) route(s), "
                    + "\(c.clusters?.count ?? 0) cluster(s), \(c.clusters?.reduce(0) { $0 + $1.hosts.count } ?? 0) host(s)"
            )
            // Lint: valid, but probably not what was meant. Warnings do not fail the check.
            for w in ConfigLint.warnings(v, path: self.config) {
                print("warning: \(w)")
            }
        }
    }
}

struct QuickProxy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "Proxy everything on one address to one or more origins, with no config file.",
        discussion: """
            Like `caddy reverse-proxy --from --to`: every request to --listen goes to the --to origins in turn \
            (round robin), with keep-alive pools, X-Forwarded-* headers, no request body size limit, and access \
            logging off.
            Example: portico proxy --listen 127.0.0.1:8080 --to 127.0.0.1:9001 --to 127.0.0.1:9002
            """
    )

    @Option(help: "Address to listen on, host:port.")
    var listen: String = "127.0.0.1:8080"

    @Option(help: "An origin host:port; repeat for several.")
    var to: [String] = []

    @Option(help: "Worker threads: a number, or auto for one per core.")
    var workers: String = "auto"

    @Option(help: "Also serve HTTPS on this address, host:port (needs --tls-cert and --tls-key).")
    var tlsListen: String?

    @Option(help: "Certificate chain (PEM) for HTTPS.")
    var tlsCert: String?

    @Option(help: "Private key (PEM) for HTTPS.")
    var tlsKey: String?

    @Option(help: "Access log: off, stdout, stderr or a file path.")
    var accessLog: String = "off"

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "warning"

    @Flag(help: "Compress responses (zstd, br, gzip, deflate, as the client accepts) with the default settings.")
    var compress = false

    @Option(help: "Cache every response RFC 9111 allows, in memory of this size (e.g. 64MiB).")
    var cache: String?

    @Option(help: "Serve the admin API (metrics, clusters, config) on this loopback address, host:port.")
    var admin: String?

    func run() async throws {
        guard !self.to.isEmpty else {
            throw ValidationError("give at least one --to origin")
        }
        var workers: WorkerCount = .auto
        if self.workers != "auto" {
            guard let n = Int(self.workers), n > 0 else { throw ValidationError("--workers takes a positive number or auto") }
            workers = .count(n)
        }
        var cacheSize: ByteSize?
        if let text = self.cache {
            guard let size = ByteSize(parsing: text), size.bytes >= 1 << 20 else {
                throw ValidationError("--cache takes a size of at least 1MiB, such as 64MiB")
            }
            cacheSize = size
        }
        let limits = LimitsConfig()
        var listeners = [ListenerConfig(name: "proxy", address: self.listen, limits: limits)]
        if self.tlsListen != nil || self.tlsCert != nil || self.tlsKey != nil {
            guard let address = self.tlsListen, let cert = self.tlsCert, let key = self.tlsKey else {
                throw ValidationError("HTTPS needs all of --tls-listen, --tls-cert and --tls-key")
            }
            listeners.append(ListenerConfig(name: "proxy-tls", address: address, limits: limits, tls: ListenerTLSConfig(certificates: [CertificateConfig(certFile: cert, keyFile: key)])))
        }
        let config = PorticoConfig(
            workers: workers,
            listeners: listeners,
            routes: [RouteConfig(name: "all", cluster: "origins", compression: self.compress ? CompressionConfig() : nil,
                                 cache: cacheSize == nil ? nil : CacheConfig())],
            clusters: [ClusterConfig(name: "origins", hosts: self.to.map { HostConfig(address: $0) })],
            accessLog: AccessLogConfig(destination: self.accessLog),
            cacheStorage: cacheSize.map { CacheStorageConfig(maxSize: $0) },
            admin: self.admin.map { AdminConfig(address: $0) }
        )
        let valid: ValidatedConfig
        var result = ConfigValidator.validate(config)
        if case .success = result, case let tlsErrors = ConfigFileChecks.errors(config), !tlsErrors.isEmpty {
            result = .failure(ConfigErrors(tlsErrors))
        }
        switch result {
        case .failure(let errors):
            for e in errors.all {
                let option = e.path.hasPrefix("listeners[1].tls") ? "--tls-cert/--tls-key"
                    : e.path.hasPrefix("listeners[1]") ? "--tls-listen"
                    : e.path.hasPrefix("listeners") ? "--listen" : e.path.hasPrefix("clusters") ? "--to"
                    : e.path.hasPrefix("admin") ? "--admin" : e.path
                FileHandleStderr.write("portico proxy: \(option): \(e.message)\n")
            }
            throw ExitCode(1)
        case .success(let v):
            valid = v
        }
        try await serve(valid, configPath: nil, workers: workers, logger: makeLogger(self.logLevel))
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print Portico's version.")
    func run() { print("portico \(porticoVersion) (commit \(buildCommit), built \(buildDate))") }
}

// MARK: - Shared

func serve(_ valid: ValidatedConfig, configPath: String?, workers: WorkerCount?, logger: Logger) async throws {
    blockControlSignalsInNewThreads()
    var origins: [DemoOrigin] = []
    for d in valid.config.demoOrigins ?? [] {
        let hp = HostPort(parsing: d.address)!
        let origin = try await DemoOrigin.start(name: d.name, host: hp.host, port: hp.port)
        logger.info("demo origin started", metadata: ["name": "\(d.name)", "address": "\(origin.localAddress.map { "\($0)" } ?? d.address)"])
        origins.append(origin)
    }
    let threads: Int
    switch workers ?? .auto {
    case .auto: threads = System.coreCount
    case .count(let n): threads = n
    }
    let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
    let server = ProxyServer(config: valid, configPath: configPath, group: group, logger: logger) { addresses in
        for (name, address) in addresses.sorted(by: { $0.key < $1.key }) {
            logger.notice("listener \(name) ready on \(address)")
        }
    }
    let serviceGroup = ServiceGroup(
        configuration: .init(
            services: [.init(service: server)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        )
    )
    do {
        try await serviceGroup.run()
    } catch {
        logger.critical("portico stopped: \(error)")
        for o in origins { await o.shutdown() }
        try? await group.shutdownGracefully()
        throw ExitCode(1)
    }
    for o in origins { await o.shutdown() }
    try await group.shutdownGracefully()
}

/// libdispatch delivers SIGTERM/SIGINT/SIGHUP to ServiceLifecycle through a signalfd on Linux, which only sees
/// signals that every thread blocks. Threads inherit the mask of the thread that creates them, so blocking them
/// here, before the EventLoop threads exist, keeps the default action (exit) from killing the process when the
/// kernel happens to pick an EventLoop thread.
func blockControlSignalsInNewThreads() {
    var set = sigset_t()
    sigemptyset(&set)
    for s in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&set, s) }
    pthread_sigmask(SIG_BLOCK, &set, nil)
}

func makeLogger(_ level: String) -> Logger {
    LoggingSystem.bootstrap { label in
        var h = StreamLogHandler.standardError(label: label)
        h.logLevel = Logger.Level(rawValue: level) ?? .info
        return h
    }
    return Logger(label: "portico")
}

func printErrors(_ errors: ConfigErrors) {
    for e in errors.all { FileHandleStderr.write("\(e)\n") }
    FileHandleStderr.write("\(errors.all.count) error(s)\n")
}

enum FileHandleStderr {
    static func write(_ s: String) {
        var s = s
        s.withUTF8 { buf in _ = Glibc.write(2, buf.baseAddress, buf.count) }
    }
}
