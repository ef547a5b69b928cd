//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import PorticoCore

/// One worker's keep-alive connections to one upstream host. Owned by a `WorkerState` and touched only on its
/// EventLoop, so it needs no lock (Envoy: "each worker thread maintains its own connection pools").
/// The decisions are `UpstreamPoolStateMachine`'s; this class performs them.
final class UpstreamConnectionPool {
    let address: HostPort
    let eventLoop: any EventLoop
    private var resolved: SocketAddress?
    private var machine: UpstreamPoolStateMachine<ObjectIdentifier>
    private var parked: [ObjectIdentifier: UpstreamHandler] = [:]
    var connectTimeout: TimeAmount
    /// The owning cluster's shared counters (connections open).
    private(set) var breaker: CircuitBreakerState
    private(set) var maxConnections: Int?
    /// Called on this loop when a connection of this pool closes or is parked: queued requests may proceed.
    var onCapacity: (() -> Void)?

    /// Shared state of the host (resolved addresses of a named host).
    let host: HostState

    let tls: UpstreamTLS?

    init(address: HostPort, eventLoop: any EventLoop, cluster: Cluster, host: HostState, tls: UpstreamTLS? = nil) {
        self.address = address
        self.host = host
        self.tls = tls
        self.eventLoop = eventLoop
        self.resolved = try? SocketAddress(ipAddress: address.host, port: address.port)
        self.machine = UpstreamPoolStateMachine(
            maxIdle: cluster.maxIdlePerHost,
            idleTimeout: cluster.idleTimeout,
            maxRequests: cluster.maxRequestsPerConnection
        )
        self.connectTimeout = cluster.connectTimeout
        self.breaker = cluster.breaker
        self.maxConnections = cluster.maxConnections
    }

    /// A reload changed the cluster's settings: later decisions follow them.
    func update(from cluster: Cluster) {
        self.machine.maxIdle = cluster.maxIdlePerHost
        self.machine.idleTimeout = cluster.idleTimeout
        self.machine.maxRequests = cluster.maxRequestsPerConnection
        self.connectTimeout = cluster.connectTimeout
        self.maxConnections = cluster.maxConnections
    }

    /// Reserves a connection under the cluster's `max_connections`; false when the cluster is at its limit.
    func reserveConnection() -> Bool { self.breaker.acquireConnection(limit: self.maxConnections) }

    /// A connection of this pool closed (or never opened): its slot is free.
    func connectionClosed() {
        self.breaker.releaseConnection()
        self.onCapacity?()
    }

    var idleCount: Int { self.machine.idleCount }

    /// A parked connection that is still open, or nil (then `connect()`).
    func lease() -> UpstreamHandler? {
        while case .reuse(let id) = self.machine.lease() {
            guard let handler = self.parked.removeValue(forKey: id) else { continue }
            if handler.isClosed { continue }
            return handler
        }
        return nil
    }

    /// Opens a new connection on this pool's EventLoop. The caller has reserved its slot (`reserveConnection`);
    /// it is given back when the connection closes, or here if the connect fails.
    func connect() -> EventLoopFuture<UpstreamHandler> {
        let bootstrap = ClientBootstrap(group: self.eventLoop)
            .connectTimeout(self.connectTimeout)
            // TCP_NODELAY is ClientBootstrap's default; every further option is a syscall per new connection.
            .channelInitializer { [pool = NIOLoopBound(self, eventLoop: self.eventLoop), tls = self.tls, address = self.address] channel in
                do {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName(for: address))
                        )
                    }
                    // The decoder watches outbound request heads (it must know a response answers HEAD), so it sits
                    // after the encoder. 1xx responses (100 Continue, 103 Early Hints) are kept, to be forwarded.
                    try channel.pipeline.syncOperations.addHandlers([
                        HTTPRequestEncoder(),
                        ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes, informationalResponseStrategy: .forward)),
                        UpstreamHandler(pool: pool.value),
                    ])
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        let connected: EventLoopFuture<any Channel>
        if let resolved = self.resolved ?? self.host.nextResolvedAddress() {
            connected = bootstrap.connect(to: resolved)
        } else {
            // A name not resolved yet by `DNSRefreshService`: NIO resolves it for this connection.
            connected = bootstrap.connect(host: self.address.host, port: self.address.port)
        }
        return connected.assumeIsolated().flatMapThrowing { channel in
            try channel.pipeline.syncOperations.handler(type: UpstreamHandler.self)
        }.flatMapErrorThrowing { [self] error in
            self.connectionClosed()
            throw error
        }.nonisolated()
    }

    /// The exchange on `handler` ended.
    func release(_ handler: UpstreamHandler, reusable: Bool) {
        handler.owner = nil
        if self.isRetired {
            handler.close()
            return
        }
        let id = ObjectIdentifier(handler)
        switch self.machine.release(id, reusable: reusable && !handler.isClosed, requestsServed: handler.requestsServed, now: self.eventLoop.now) {
        case .park:
            self.parked[id] = handler
            self.onCapacity?()
        case .close:
            handler.close()
        }
    }

    /// A connection leaves HTTP for good (an upgraded tunnel): it no longer counts here, though its slot under
    /// `max_connections` stays taken until it closes.
    func detach(_ handler: UpstreamHandler) {
        self.evict(handler)
    }

    /// A parked connection closed or misbehaved.
    func evict(_ handler: UpstreamHandler) {
        let id = ObjectIdentifier(handler)
        if self.machine.idleEvent(id) {
            self.parked.removeValue(forKey: id)
        }
    }

    /// Closes connections idle for longer than the idle timeout. Called by the worker's tick.
    func sweep(now: NIODeadline) {
        for id in self.machine.expired(now: now) {
            self.parked.removeValue(forKey: id)?.close()
        }
    }

    /// The host left the config: close what is parked now, and what is leased when it comes back.
    private(set) var isRetired = false

    func retire() {
        self.isRetired = true
        self.closeAll()
    }

    func closeAll() {
        for id in self.machine.drainAll() {
            self.parked.removeValue(forKey: id)?.close()
        }
    }
}
