//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import PorticoCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The data plane: one worker per EventLoop, the listeners that feed them, and the published route table.
///
/// An actor on the control plane: `start`, `apply` (reload) and `shutdown` are rare and may allocate and wait.
/// It reaches the workers only through `eventLoop.execute`/`submit` (ARCHITECTURE §2).
public actor ProxyEngine {
    private let group: any EventLoopGroup
    private let workers: [Worker]
    private let logger: Logger
    private var listeners: [String: BoundListener] = [:]
    private var table: RoutingTable?
    private var accessLog: AccessLogSink?
    private var accessLogKey: AccessLogConfig?

    struct BoundListener {
        var settings: ListenerSettings
        var channels: [any Channel]
        var localAddress: SocketAddress
    }

    /// - Parameter group: the worker loops; one worker is made per loop.
    public init(group: any EventLoopGroup, logger: Logger) {
        self.group = group
        self.logger = logger
        self.workers = []
        // Workers need a table; they are created in `start`.
    }

    private var startedWorkers: [Worker] = []

    /// The addresses each listener is bound to (after port 0 was resolved), by listener name.
    public var boundAddresses: [String: SocketAddress] {
        Dictionary(uniqueKeysWithValues: self.listeners.values.map { ($0.settings.name, $0.localAddress) })
    }

    public var generation: UInt64 { self.table?.generation ?? 0 }

    /// Binds the listeners and starts serving `table`.
    /// - Parameter tls: each TLS listener's certificates, loaded by the control plane (`CertificateService`): the
    ///   engine reads no file.
    public func start(table: RoutingTable, tls: [String: ListenerTLS] = [:]) async throws {
        precondition(self.table == nil, "started twice")
        let sink = Self.makeAccessLog(table.config.accessLog)
        self.accessLog = sink
        self.accessLogKey = table.config.accessLog ?? AccessLogConfig()
        var workers: [Worker] = []
        var index = 0
        for loop in self.group.makeIterator() {
            let i = index
            let logger = self.logger
            let upstreamTLS = try Self.makeUpstreamTLS(table)
            let state = try await loop.submit {
                let s = WorkerState(eventLoop: loop, index: i, table: table, accessLog: sink, upstreamTLS: upstreamTLS, logger: logger)
                s.start()
                return NIOLoopBound(s, eventLoop: loop)
            }.get()
            workers.append(Worker(eventLoop: loop, state: state))
            index += 1
        }
        self.startedWorkers = workers
        self.table = table
        do {
            for c in table.config.listeners {
                var settings = ListenerSettings(c, tls: try Self.listenerTLS(c, tls))
                settings.metricSlot = table.metricSlots.slot(.listener, c.name)
                self.listeners[settings.socketIdentity] = try await self.bind(settings)
            }
        } catch {
            for l in self.listeners.values { for ch in l.channels { try? await ch.close() } }
            self.listeners = [:]
            throw error
        }
        for l in self.listeners.values {
            self.logger.info("listening", metadata: ["listener": "\(l.settings.name)", "address": "\(l.localAddress)", "sockets": "\(l.channels.count)", "scheme": "\(l.settings.scheme)"])
        }
    }

    /// A listener's TLS from what the control plane loaded; a TLS listener without it is a caller's error.
    private static func listenerTLS(_ c: ListenerConfig, _ loaded: [String: ListenerTLS]) throws -> ListenerTLS? {
        guard c.tls != nil else { return nil }
        guard let tls = loaded[c.name] else {
            throw TLSMaterialError(field: "tls", message: "listener \(c.name): certificates were not loaded")
        }
        return tls
    }

    /// Publishes a new generation: binds new listeners (never rebinding unchanged ones, as Caddy's listener
    /// pool), swaps the table on every worker, and closes listeners that disappeared. In-flight requests finish
    /// on the route they matched. If a new listener cannot be bound, nothing changes and the error is thrown.
    public func apply(table: RoutingTable, tls: [String: ListenerTLS] = [:]) async throws {
        var added: [String: BoundListener] = [:]
        var next: [String: BoundListener] = [:]
        do {
            for c in table.config.listeners {
                var settings = ListenerSettings(c, tls: try Self.listenerTLS(c, tls))
                settings.metricSlot = table.metricSlots.slot(.listener, c.name)
                if var existing = self.listeners[settings.socketIdentity] {
                    settings.connectionLimiter = existing.settings.connectionLimiter  // counts of open connections go on
                    existing.settings = settings
                    next[settings.socketIdentity] = existing
                } else {
                    let bound = try await self.bind(settings)
                    added[settings.socketIdentity] = bound
                    next[settings.socketIdentity] = bound
                }
            }
        } catch {
            for l in added.values { for ch in l.channels { try? await ch.close() } }
            throw error
        }
        let removed = self.listeners.filter { next[$0.key] == nil }
        let logConfig = table.config.accessLog ?? AccessLogConfig()
        if logConfig != self.accessLogKey {
            self.accessLog?.stop()
            self.accessLog = Self.makeAccessLog(table.config.accessLog)
            self.accessLogKey = logConfig
        } else {
            self.accessLog?.reopen()
        }
        let sink = self.accessLog
        let settingsByIdentity = next.mapValues(\.settings)
        let upstreamTLS = try Self.makeUpstreamTLS(table)
        for w in self.startedWorkers {
            try await w.submit { state in
                state.publish(table, accessLog: sink, upstreamTLS: upstreamTLS)
                state.listenerSettings = settingsByIdentity
            }.get()
        }
        self.listeners = next
        self.table = table
        for (_, l) in removed {
            for ch in l.channels { try? await ch.close() }
            self.logger.info("listener closed", metadata: ["listener": "\(l.settings.name)", "address": "\(l.localAddress)"])
        }
        for (_, l) in added {
            self.logger.info("listening", metadata: ["listener": "\(l.settings.name)", "address": "\(l.localAddress)"])
        }
    }

    /// Reopens the access log file (SIGUSR1, after logrotate moved it).
    public func reopenLogs() {
        self.accessLog?.reopen()
    }

    /// Every worker's counters, copied on each worker's loop and summed, with the slot names.
    public func metricsSnapshot() async -> MetricsSnapshot {
        var total = MetricsSnapshot()
        for w in self.startedWorkers {
            if let (worker, open) = try? await w.submit({ ($0.metrics?.snapshot, $0.connectionCount) }).get() {
                if let worker { total.add(worker) }
                total.openConnections += open
            }
        }
        if let slots = self.table?.metricSlots {
            total.routeNames = slots.names(.route)
            total.clusterNames = slots.names(.cluster)
            total.listenerNames = slots.names(.listener)
        }
        return total
    }

    /// Downstream connections (HTTP/1.1 connections and HTTP/2 streams and connections) open on all workers.
    public func openConnections() async -> Int {
        var open = 0
        for w in self.startedWorkers { open += (try? await w.submit { $0.connectionCount }.get()) ?? 0 }
        return open
    }

    /// Stops accepting, lets in-flight requests finish for up to `grace`, then closes everything.
    public func shutdown(grace: TimeAmount) async {
        for l in self.listeners.values {
            for ch in l.channels { try? await ch.close() }
        }
        self.listeners = [:]
        for w in self.startedWorkers {
            _ = try? await w.submit { $0.quiesce() }.get()
        }
        let deadline = NIODeadline.now() + grace
        while NIODeadline.now() < deadline {
            var open = 0
            for w in self.startedWorkers {
                open += (try? await w.submit { $0.connectionCount + $0.detachedCount }.get()) ?? 0
            }
            if open == 0 { break }
            try? await Task.sleep(nanoseconds: 50_000_000)
        }
        for w in self.startedWorkers {
            _ = try? await w.submit { $0.stop() }.get()
        }
        self.accessLog?.stop()
    }

    /// Overload (`OverloadService`): stops or resumes accepting on every listener socket. Connections the kernel
    /// already queued wait in the backlog until accepting resumes.
    public func setAccepting(_ accepting: Bool) async {
        for l in self.listeners.values {
            for ch in l.channels { try? await ch.setOption(.autoRead, value: accepting).get() }
        }
    }

    /// Overload: every worker closes its idle connections now, and the busy ones after their current response
    /// (HTTP/2: GOAWAY). Nothing in flight fails.
    public func shedConnections() async {
        for w in self.startedWorkers {
            _ = try? await w.submit { $0.shed() }.get()
        }
    }

    /// Client TLS contexts by cluster name, made here because loading files may block.
    private static func makeUpstreamTLS(_ table: RoutingTable) throws -> [String: UpstreamTLS] {
        var out: [String: UpstreamTLS] = [:]
        for c in table.config.clusters ?? [] {
            if let tls = c.tls { out[c.name] = try UpstreamTLS(tls, http2: c.protocol == .h2) }
        }
        return out
    }

    private static func makeAccessLog(_ c: AccessLogConfig?) -> AccessLogSink? {
        let format = c?.format ?? .combined
        switch c?.destination ?? "stdout" {
        case "off": return nil
        case "stdout": return AccessLogSink(destination: .stdout, format: format)
        case "stderr": return AccessLogSink(destination: .stderr, format: format)
        case let path: return AccessLogSink(destination: .file(path), format: format)
        }
    }

    // MARK: Binding

    private func bind(_ settings: ListenerSettings) async throws -> BoundListener {
        var address = try SocketAddress.makeAddressResolvingHost(settings.address.host, port: settings.address.port)
        var channels: [any Channel] = []
        let workers = self.startedWorkers
        if settings.reusePort {
            // SO_REUSEPORT would also let us join sockets another process (a second Portico started by mistake)
            // already listens on, silently splitting its traffic. Bind once without it first, as nginx would fail.
            if address.port != 0, let conflict = Self.portInUse(address) {
                throw ListenerBindError(listener: settings.name, address: settings.address.description, underlying: conflict)
            }
            // One socket per worker (SO_REUSEPORT): the kernel spreads accepts, and each connection stays on the
            // loop that accepted it. Port 0 is resolved by the first bind and reused for the rest.
            do {
                for w in workers {
                    let ch = try await self.serverBootstrap(group: w.eventLoop, settings: settings, workers: workers, reusePort: true)
                        .bind(to: address).get()
                    if channels.isEmpty, let local = ch.localAddress { address = local }
                    channels.append(ch)
                }
            } catch {
                for ch in channels { try? await ch.close() }
                throw ListenerBindError(listener: settings.name, address: settings.address.description, underlying: error)
            }
        } else {
            do {
                let ch = try await self.serverBootstrap(group: self.group, settings: settings, workers: workers, reusePort: false)
                    .bind(to: address).get()
                if let local = ch.localAddress { address = local }
                channels.append(ch)
            } catch {
                throw ListenerBindError(listener: settings.name, address: settings.address.description, underlying: error)
            }
        }
        let identity = settings.socketIdentity
        for w in workers {
            try await w.submit { $0.listenerSettings[identity] = settings }.get()
        }
        return BoundListener(settings: settings, channels: channels, localAddress: address)
    }

    /// Returns the error of a plain bind to `address` (without SO_REUSEPORT), or nil when the port is free.
    private static func portInUse(_ address: SocketAddress) -> IOError? {
        let fd = socket(Int32(address.protocol.rawValue), Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let rc = address.withSockAddr { ptr, len in Glibc.bind(fd, ptr, socklen_t(len)) }
        return rc == 0 ? nil : IOError(errnoCode: errno, reason: "bind")
    }

    private nonisolated func serverBootstrap(
        group: any EventLoopGroup,
        settings: ListenerSettings,
        workers: [Worker],
        reusePort: Bool
    ) -> ServerBootstrap {
        var bootstrap = ServerBootstrap(group: group, childGroup: reusePort ? group : self.group)
            .serverChannelOption(.backlog, value: Int32(settings.backlog))
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        if reusePort {
            bootstrap = bootstrap.serverChannelOption(.socketOption(.init(rawValue: SO_REUSEPORT)), value: 1)
        }
        let identity = settings.socketIdentity
        return bootstrap
            .childChannelInitializer { channel in
                guard let worker = workers.first(where: { $0.eventLoop === channel.eventLoop }) else {
                    return channel.eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel)
                }
                // Set here, synchronously, before the channel is registered: given as `childChannelOption`s, NIO
                // applies each through a chain of futures, about 50 allocations per connection for these four
                // (measured with a malloc uprobe: 133 allocations per connection-and-request before, 16 of them
                // the request's).
                do {
                    if let options = channel.syncOptions {
                        try options.setOption(.tcpOption(.tcp_nodelay), value: 1)
                        try options.setOption(.maxMessagesPerRead, value: 16)
                        // Small first receive buffer: an idle keep-alive connection holds it (requests are small; it
                        // grows for bodies).
                        try options.setOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536))
                        try options.setOption(.allowRemoteHalfClosure, value: true)
                    }
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
                let state = worker.state.value
                let current = state.listenerSettings[identity] ?? settings
                return DownstreamPipeline.configure(channel, worker: state, listener: current)
            }
    }
}

/// A listener could not be bound; names the listener and address.
public struct ListenerBindError: Error, CustomStringConvertible {
    public var listener: String
    public var address: String
    public var underlying: any Error
    public var description: String { "listener \"\(self.listener)\": cannot bind \(self.address): \(self.underlying)" }
}
