//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1
import NIOHTTP2
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
    /// HTTP/2 to this host: one multiplexed connection per worker, a new stream per request (nothing is parked).
    let http2: Bool
    /// Each connection starts with a PROXY protocol header for one client: it serves one request and is never
    /// parked (HAProxy keeps `send-proxy` connections private to their client too).
    let proxyProtocol: ProxyProtocolVersion?
    private var http2Connection: EventLoopFuture<NIOHTTP2Handler.StreamMultiplexer>?

    init(address: HostPort, eventLoop: any EventLoop, cluster: Cluster, host: HostState, tls: UpstreamTLS? = nil) {
        self.address = address
        self.host = host
        self.tls = tls
        self.http2 = cluster.http2
        self.proxyProtocol = cluster.proxyProtocol
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
    func reserveConnection() -> Bool {
        // HTTP/2 streams are not connections; the one multiplexed connection is not counted.
        self.http2 || self.breaker.acquireConnection(limit: self.maxConnections)
    }

    /// A connection of this pool closed (or never opened): its slot is free.
    func connectionClosed() {
        self.breaker.releaseConnection()
        self.onCapacity?()
    }

    var idleCount: Int { self.machine.idleCount }

    /// A parked connection that is still open, or nil (then `connect()`).
    func lease() -> UpstreamHandler? {
        if self.http2 || self.proxyProtocol != nil { return nil }
        while case .reuse(let id) = self.machine.lease() {
            guard let handler = self.parked.removeValue(forKey: id) else { continue }
            if handler.isClosed { continue }
            return handler
        }
        return nil
    }

    /// Opens a new connection on this pool's EventLoop. The caller has reserved its slot (`reserveConnection`);
    /// it is given back when the connection closes, or here if the connect fails. `proxyHeader` goes first on
    /// the wire (before TLS) when the cluster sends the PROXY protocol.
    func connect(proxyHeader: ByteBuffer? = nil) -> EventLoopFuture<UpstreamHandler> {
        if self.http2 { return self.openStream() }
        let bootstrap = ClientBootstrap(group: self.eventLoop)
            .connectTimeout(self.connectTimeout)
            // TCP_NODELAY is ClientBootstrap's default; every further option is a syscall per new connection.
            .channelInitializer { [pool = NIOLoopBound(self, eventLoop: self.eventLoop), tls = self.tls, address = self.address] channel in
                do {
                    if let proxyHeader {
                        try channel.pipeline.syncOperations.addHandler(ProxyProtocolSender(header: proxyHeader))
                    }
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName(for: address))
                        )
                    }
                    // One codec both ways (it learns from the requests which responses answer a HEAD), joined to the
                    // handler behind it by direct calls. 1xx responses (100 Continue, 103 Early Hints) are passed on.
                    let codec = HTTP1ClientCodecHandler()
                    let handler = UpstreamHandler(pool: pool.value)
                    codec.upstream = handler
                    handler.codec = codec
                    try channel.pipeline.syncOperations.addHandlers([codec, handler])
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
        if self.http2 {
            // A stream serves one request; it closes when both sides have ended.
            if !reusable { handler.close() }
            return
        }
        if self.isRetired || self.proxyProtocol != nil {
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

    // MARK: HTTP/2

    /// The worker's HTTP/2 connection to this host, opened on first use and again after it closes.
    private func multiplexer() -> EventLoopFuture<NIOHTTP2Handler.StreamMultiplexer> {
        if let existing = self.http2Connection { return existing }
        let tls = self.tls
        let address = self.address
        let bootstrap = ClientBootstrap(group: self.eventLoop)
            .connectTimeout(self.connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName(for: address))
                        )
                    }
                    // Servers may not push to a proxy: inbound streams are refused by leaving them unconfigured.
                    _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .client,
                        connectionConfiguration: .init(),
                        streamConfiguration: .init()
                    ) { stream in stream.close() }
                }
            }
        let resolved = self.resolved ?? self.host.nextResolvedAddress()
        let connected = resolved.map { bootstrap.connect(to: $0) } ?? bootstrap.connect(host: address.host, port: address.port)
        let future = connected.assumeIsolated().flatMapThrowing { [self] channel in
            channel.closeFuture.assumeIsolated().whenComplete { _ in self.http2Connection = nil }
            return try channel.pipeline.syncOperations.handler(type: NIOHTTP2Handler.self).syncMultiplexer()
        }.nonisolated()
        future.assumeIsolated().whenFailure { [self] _ in self.http2Connection = nil }
        self.http2Connection = future
        return future
    }

    /// A new stream on the host's HTTP/2 connection, ready for one request.
    private func openStream() -> EventLoopFuture<UpstreamHandler> {
        let httpProtocol: HTTP2FramePayloadToHTTP1ClientCodec.HTTPProtocol = self.tls == nil ? .http : .https
        let pool = NIOLoopBound(self, eventLoop: self.eventLoop)
        let result = self.eventLoop.makePromise(of: UpstreamHandler.self)
        self.multiplexer().assumeIsolated().whenComplete { outcome in
            switch outcome {
            case .failure(let error):
                result.fail(error)
            case .success(let multiplexer):
                let streamPromise = self.eventLoop.makePromise(of: (any Channel).self)
                multiplexer.createStreamChannel(promise: streamPromise) { stream in
                    stream.eventLoop.makeCompletedFuture {
                        try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTP1ClientCodec(httpProtocol: httpProtocol))
                        try stream.pipeline.syncOperations.addHandler(UpstreamHandler(pool: pool.value, countsAsConnection: false))
                    }
                }
                streamPromise.futureResult.assumeIsolated().whenComplete { created in
                    do {
                        let stream = try created.get()
                        result.assumeIsolated().succeed(try stream.pipeline.syncOperations.handler(type: UpstreamHandler.self))
                    } catch {
                        result.fail(error)
                    }
                }
            }
        }
        return result.futureResult
    }

    /// A parked connection closed or misbehaved, or a connection left HTTP for good (an upgraded tunnel): forget it.
    func evict(_ handler: UpstreamHandler) {
        let id = ObjectIdentifier(handler)
        // Leased connections close too; only a parked one is worth the state machine's linear search.
        if self.parked[id] != nil, self.machine.idleEvent(id) {
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
