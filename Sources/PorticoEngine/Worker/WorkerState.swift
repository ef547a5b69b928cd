//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import PorticoCore

/// Everything one worker EventLoop owns: the route table it serves, its balancers and upstream pools, its
/// downstream connections (for the coarse timeout tick) and its access log buffer.
///
/// Only ever touched on `eventLoop` (enforced by `NIOLoopBound` in `Worker`). The control plane replaces the
/// table with `publish`, via `eventLoop.execute`: RCU, in-flight requests keep the `Route` they captured.
final class WorkerState {
    let eventLoop: any EventLoop
    let index: Int
    let logger: Logger
    private(set) var table: RoutingTable
    private(set) var clusterStates: [ClusterState] = []
    /// Pools by cluster name and host address: each pool belongs to one cluster, whose limits it counts against.
    private var pools: [String: UpstreamConnectionPool] = [:]
    /// Requests waiting for a connection under a cluster's `max_connections` (circuit breaking).
    var waiting: [Exchange] = []
    var accessLog: AccessLogBuffer?
    /// Request counters, when something reads them (an admin listener is configured); nil costs one branch.
    var metrics: WorkerMetrics?
    private var connections: [ProxyHandler] = []
    /// HTTP/2 connections (their streams are in `connections`), so shutdown can send them GOAWAY.
    private var http2Connections: [ObjectIdentifier: any Channel] = [:]
    private var tickTask: RepeatedTask?
    private var ticks = 0
    var isShuttingDown = false
    /// Randomness for balancers (p2c, random, jitter): cheap, and never a syscall per pick.
    var rng = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
    /// Filters' own requests (forward auth), through this worker's pools. Set once, in `init`.
    private(set) var subrequests: WorkerSubrequests!
    /// Current settings of each listener socket, by `ListenerSettings.socketIdentity`.
    var listenerSettings: [String: ListenerSettings] = [:]

    /// How often timeouts are checked. Timers are coarse and shared (Pingora `pingora-timeout`): one task per
    /// worker instead of one per request, so arming a timeout is a store, not an allocation.
    static let tickInterval: TimeAmount = .milliseconds(100)

    /// Client TLS by cluster name (from the control plane).
    private var upstreamTLS: [String: UpstreamTLS]

    init(eventLoop: any EventLoop, index: Int, table: RoutingTable, accessLog: AccessLogSink?, upstreamTLS: [String: UpstreamTLS] = [:], logger: Logger) {
        self.eventLoop = eventLoop
        self.index = index
        self.logger = logger
        self.table = table
        self.upstreamTLS = upstreamTLS
        self.accessLog = accessLog.map(AccessLogBuffer.init(sink:))
        self.metrics = table.config.admin != nil ? WorkerMetrics() : nil
        self.rebuildClusterStates()
        self.subrequests = WorkerSubrequests(worker: self)
    }

    func start() {
        let this = NIOLoopBound(self, eventLoop: self.eventLoop)
        self.tickTask = self.eventLoop.scheduleRepeatedTask(initialDelay: Self.tickInterval, delay: Self.tickInterval) { _ in
            this.value.tick()
        }
    }

    func publish(_ table: RoutingTable, accessLog: AccessLogSink?, upstreamTLS: [String: UpstreamTLS] = [:]) {
        self.eventLoop.assertInEventLoop()
        self.table = table
        self.upstreamTLS = upstreamTLS
        if table.config.admin == nil {
            self.metrics = nil
        } else if self.metrics == nil {
            self.metrics = WorkerMetrics()
        }
        if accessLog !== self.accessLog?.sink {
            self.accessLog?.flush()
            self.accessLog = accessLog.map(AccessLogBuffer.init(sink:))
        }
        self.rebuildClusterStates()
    }

    /// Balancers restart with a new generation; pools are kept by address so warm connections survive reloads.
    private func rebuildClusterStates() {
        var pools: [String: UpstreamConnectionPool] = [:]
        self.clusterStates = self.table.clusters.map { cluster in
            let hostPools = cluster.hosts.map { host -> UpstreamConnectionPool in
                // The pool key holds everything that makes a connection what it is (Pingora): the cluster (whose
                // limits it counts against), the address, and the TLS settings.
                let tls = self.upstreamTLS[cluster.name]
                let key = "\(cluster.name)|\(host.address)|\(tls?.identity ?? "plain")|\(cluster.http2 ? "h2" : "h1")"
                if let p = pools[key] { return p }
                let pool = self.pools[key] ?? UpstreamConnectionPool(address: host.address, eventLoop: self.eventLoop, cluster: cluster, host: host.state, tls: tls)
                pool.update(from: cluster)
                pool.onCapacity = { [weak self] in
                    guard let self, !self.waiting.isEmpty else { return }
                    self.serveWaiting(now: self.eventLoop.now)
                }
                pools[key] = pool
                return pool
            }
            return ClusterState(cluster: cluster, balancer: cluster.makeBalancer(worker: self.index), pools: hostPools)
        }
        for (address, pool) in self.pools where pools[address] == nil {
            pool.retire()
        }
        self.pools = pools
    }

    func register(_ handler: ProxyHandler) {
        handler.workerSlot = self.connections.count
        self.connections.append(handler)
    }

    /// Handlers whose client went while their upstream response is read to its end for others
    /// (`RequestContext.completesUpstreamResponse`): no longer connections, still ticked for their deadlines.
    private var detached: [ObjectIdentifier: ProxyHandler] = [:]

    func detach(_ handler: ProxyHandler) {
        self.unregister(handler)
        self.detached[ObjectIdentifier(handler)] = handler
    }

    func endDetached(_ handler: ProxyHandler) {
        self.detached.removeValue(forKey: ObjectIdentifier(handler))
    }

    func unregister(_ handler: ProxyHandler) {
        let slot = handler.workerSlot
        guard slot >= 0, slot < self.connections.count, self.connections[slot] === handler else { return }
        let last = self.connections.removeLast()
        if slot < self.connections.count {
            self.connections[slot] = last
            last.workerSlot = slot
        }
        handler.workerSlot = -1
    }

    var connectionCount: Int { self.connections.count + self.http2Connections.count }
    /// Exchanges still reading a response for others after their client went (a shutdown waits for them too).
    var detachedCount: Int { self.detached.count }

    func registerHTTP2Connection(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        if self.isShuttingDown {
            channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        }
        self.http2Connections[id] = channel
        let this = NIOLoopBound(self, eventLoop: self.eventLoop)
        channel.closeFuture.whenComplete { _ in this.value.http2Connections.removeValue(forKey: id) }
    }

    private func tick() {
        let now = self.eventLoop.now
        var i = 0
        while i < self.connections.count {
            let h = self.connections[i]
            h.tick(now: now)
            // `tick` may close and unregister `h`; only advance when it is still in this slot.
            if i < self.connections.count && self.connections[i] === h { i += 1 }
        }
        if !self.detached.isEmpty {
            for h in Array(self.detached.values) { h.tick(now: now) }
        }
        if !self.waiting.isEmpty { self.serveWaiting(now: now) }
        self.ticks += 1
        if self.index == 0 && self.ticks % 100 == 0 {
            // Connections refused by listener caps, logged in aggregate every 10 s (one worker speaks for all).
            for settings in self.listenerSettings.values where !settings.connectionLimits.isEmpty {
                let refused = settings.connectionLimiter.takeRefusals()
                if refused > 0 {
                    self.logger.warning("connections refused over limits", metadata: [
                        "listener": "\(settings.name)", "refused": "\(refused)", "open": "\(settings.connectionLimiter.openConnections)",
                    ])
                }
            }
        }
        if self.ticks % 10 == 0 {
            let nowNanos = Int64(now.uptimeNanoseconds)
            for pool in self.pools.values {
                pool.sweep(now: now)
                // A host that turned unhealthy or was ejected: its parked connections go (Envoy).
                if pool.idleCount > 0 && !pool.host.isAvailable(now: nowNanos) { pool.closeAll() }
            }
            self.logReturnsFromEjection(now: Int64(now.uptimeNanoseconds))
        }
        self.accessLog?.flush()
    }

    /// Gives queued requests another chance at a connection, and answers those that waited too long. Runs on
    /// every tick and whenever this worker closes or parks an upstream connection.
    func serveWaiting(now: NIODeadline) {
        let waiting = self.waiting
        self.waiting = []
        for ex in waiting {
            ex.owner?.retryQueued(ex, now: now)
        }
    }

    /// Logs, once across all workers, each host whose ejection has run out.
    private func logReturnsFromEjection(now: Int64) {
        for cs in self.clusterStates {
            for host in cs.cluster.hosts where host.state.clearExpiredEjection(now: now) {
                self.logger.notice("host back from ejection", metadata: ["cluster": "\(cs.cluster.name)", "host": "\(host.address)"])
            }
        }
    }

    /// Overload: connections finish what they are doing and close (idle ones at once). Unlike `quiesce`, the worker
    /// keeps taking new connections once the listeners accept again.
    func shed() {
        for h in self.connections { h.quiesce() }
        for ch in self.http2Connections.values { ch.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
    }

    /// Stops accepting work: asks every connection to finish its current request and close.
    func quiesce() {
        self.isShuttingDown = true
        for h in self.connections { h.quiesce() }
        // HTTP/2: GOAWAY, then the connection closes when its last stream is done.
        for ch in self.http2Connections.values { ch.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
    }

    func stop() {
        self.tickTask?.cancel()
        self.tickTask = nil
        // Past the grace period: responses still read for others are cut off (and logged).
        for h in Array(self.detached.values) { h.abandonDetached() }
        for pool in self.pools.values { pool.closeAll() }
        self.accessLog?.flush()
    }
}

/// A worker's view of one cluster: its balancer cursor and one pool per host.
final class ClusterState {
    let cluster: Cluster
    var balancer: LoadBalancerState
    let pools: [UpstreamConnectionPool]

    init(cluster: Cluster, balancer: LoadBalancerState, pools: [UpstreamConnectionPool]) {
        self.cluster = cluster
        self.balancer = balancer
        self.pools = pools
    }
}
