//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOSSL
import PorticoCore

/// Builds a downstream connection's pipeline, on its EventLoop:
///
///     socket ─▶ (ProxyProtocolDecoder, until the header)? ─▶ (NIOSSLServerHandler ─▶ TLSHandshakeTimeoutHandler (until the handshake) ─▶ TLSWriteCoalescingHandler)?
///                 ─▶ HTTP/1.1: HTTP1ServerCodecHandler ─▶ ProxyHandler
///                 └▶ HTTP/2:   FlushCoalescingHandler ─▶ NIOHTTP2Handler ─▶ NIOHTTP2ServerConnectionManagementHandler
///                              ─▶ HTTP2StreamTable (per stream: a ProxyHandler, no channel) ─▶ HTTP2ConnectionErrorHandler
///
/// HTTP/1.1 is deliberately lean: one codec handler for both directions (Portico's own parser and framing), no
/// pipelining helper (the `ProxyHandler` orders responses itself), no error handler (it maps parse errors to
/// 400/414/431/501/505), no header validator (headers come from a validated config or an
/// upstream whose fields the decoder already checked). Every handler costs on every request (DEPENDENCIES.md).
///
/// HTTP/2 streams end in the same `ProxyHandler` as HTTP/1.1 requests, so routing, filters and pools are shared.
/// NIOHTTP2's limits defend against the known attacks: rapid reset (CVE-2023-44487, stream reset rate limit),
/// CONTINUATION floods (CVE-2024-27316, sequential CONTINUATION limit), HPACK bombs (header list size), and
/// ping/settings floods (control frame rate limit); each ends the connection with GOAWAY and an error code, and
/// `HTTP2ConnectionErrorHandler` then closes it.
enum DownstreamPipeline {
    static func configure(_ channel: any Channel, worker: WorkerState, listener: ListenerSettings) -> EventLoopFuture<Void> {
        guard let proxyProtocol = listener.proxyProtocol else {
            guard self.admit(channel, channel.remoteAddress, worker: worker, listener: listener) else {
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            return self.configureProtocols(channel, worker: worker, listener: listener, proxiedAddress: nil)
        }
        // PROXY protocol: only the trusted load balancers may connect; the rest of the pipeline is built once the
        // header said whose connection this is, and the listener's rules apply to that address.
        let peer = channel.remoteAddress?.ipAddress.flatMap(IPAddressBytes.init)
        guard let peer, proxyProtocol.trusted.contains(where: { $0.contains(peer.unmapped) }) else {
            if let m = worker.metrics { m.listeners[m.listener(listener.metricSlot)].deniedConnections += 1 }
            channel.close(promise: nil)
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        let bound = NIOLoopBound(worker, eventLoop: channel.eventLoop)
        let decoder = ProxyProtocolDecoder(
            timeout: proxyProtocol.timeout,
            onHeader: { context, addresses in
                let channel = context.channel
                let client = addresses.source ?? channel.remoteAddress
                guard self.admit(channel, client, worker: bound.value, listener: listener) else { return }
                self.configureProtocols(channel, worker: bound.value, listener: listener, proxiedAddress: addresses.source)
                    .whenFailure { _ in channel.close(promise: nil) }
            },
            onRefused: { why in
                bound.value.logger.debug("PROXY protocol header refused", metadata: ["listener": "\(listener.name)", "reason": "\(why)"])
                if let m = bound.value.metrics { m.listeners[m.listener(listener.metricSlot)].deniedConnections += 1 }
            })
        do {
            try channel.pipeline.syncOperations.addHandler(decoder)
            return channel.eventLoop.makeSucceededVoidFuture()
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
    }

    /// The listener's IP rules and connection caps for the client at `address`; a refused connection is closed at
    /// once, before any TLS work.
    private static func admit(_ channel: any Channel, _ address: SocketAddress?, worker: WorkerState, listener: ListenerSettings) -> Bool {
        if let rules = listener.ipRules, !rules.allows(address?.ipAddress ?? "-") {
            if let m = worker.metrics { m.listeners[m.listener(listener.metricSlot)].deniedConnections += 1 }
            channel.close(promise: nil)
            return false
        }
        if !listener.connectionLimits.isEmpty, let ip = address?.ipAddress.flatMap(IPAddressBytes.init) {
            let limiter = listener.connectionLimiter
            let limits = listener.connectionLimits
            if limiter.admit(ip, limits: limits, now: Int64(NIODeadline.now().uptimeNanoseconds)) != nil {
                // Over a cap: logged in aggregate by the worker (`WorkerState.tick`).
                if let m = worker.metrics { m.listeners[m.listener(listener.metricSlot)].overLimitConnections += 1 }
                channel.close(promise: nil)
                return false
            }
            channel.closeFuture.whenComplete { _ in limiter.release(ip, limits: limits, now: Int64(NIODeadline.now().uptimeNanoseconds)) }
        }
        return true
    }

    /// TLS (and ALPN) if the listener has it, then HTTP/1.1 or HTTP/2.
    private static func configureProtocols(_ channel: any Channel, worker: WorkerState, listener: ListenerSettings,
                                           proxiedAddress: SocketAddress?) -> EventLoopFuture<Void> {
        do {
            if let tls = listener.tls {
                // A failed handshake only closes this connection (NIOSSL sends the alert and closes).
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context))
                try channel.pipeline.syncOperations.addHandler(TLSHandshakeTimeoutHandler(timeout: listener.tlsHandshakeTimeout, metrics: worker.metrics, listenerSlot: listener.metricSlot))
                if listener.http2 {
                    let bound = NIOLoopBound(worker, eventLoop: channel.eventLoop)
                    return channel.configureHTTP2SecureUpgrade(
                        h2ChannelConfigurator: { ch in
                            ch.eventLoop.makeCompletedFuture { try configureHTTP2(ch, worker: bound.value, listener: listener, proxiedAddress: proxiedAddress) }
                        },
                        http1ChannelConfigurator: { ch in
                            ch.eventLoop.makeCompletedFuture { try configureHTTP1(ch, worker: bound.value, listener: listener, proxiedAddress: proxiedAddress) }
                        }
                    )
                }
            } else if listener.h2c {
                try configureHTTP2(channel, worker: worker, listener: listener, proxiedAddress: proxiedAddress)
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            try configureHTTP1(channel, worker: worker, listener: listener, proxiedAddress: proxiedAddress)
            return channel.eventLoop.makeSucceededVoidFuture()
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
    }

    static func configureHTTP1(_ channel: any Channel, worker: WorkerState, listener: ListenerSettings, proxiedAddress: SocketAddress? = nil) throws {
        if listener.tls != nil {
            try channel.pipeline.syncOperations.addHandler(TLSWriteCoalescingHandler())
        }
        let limits = HTTP1RequestParser.Limits(
            // Field offsets are 32-bit: heads stay far below that.
            maxHeadBytes: min(listener.maxHeaderBytes, 1 << 24),
            maxTargetBytes: min(listener.maxURIBytes, 1 << 24),
            maxFields: 256
        )
        let codec = HTTP1ServerCodecHandler(limits: limits)
        try channel.pipeline.syncOperations.addHandlers([
            codec,
            ProxyHandler(worker: worker, listener: listener, codec: codec, proxiedAddress: proxiedAddress),
        ])
    }

    static func configureHTTP2(_ channel: any Channel, worker: WorkerState, listener: ListenerSettings, proxiedAddress: SocketAddress? = nil) throws {
        // HTTP/2 has no half-closed connections: the peer's EOF ends the connection (HTTP/1.1 keeps half-closure
        // to finish the last response).
        try channel.syncOptions?.setOption(.allowRemoteHalfClosure, value: false)
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: listener.maxConcurrentStreams),
            HTTP2Setting(parameter: .maxHeaderListSize, value: listener.maxHeaderListSize),
            HTTP2Setting(parameter: .maxFrameSize, value: listener.maxFrameSize),
            HTTP2Setting(parameter: .initialWindowSize, value: 1 << 20),
            // WebSocket over HTTP/2 (RFC 8441 §3): extended CONNECT, see `HTTP2StreamMapping`.
            HTTP2Setting(parameter: .enableConnectProtocol, value: 1),
        ]
        connection.targetWindowSize = 1 << 20
        var stream = NIOHTTP2Handler.StreamConfiguration()
        stream.targetWindowSize = 1 << 20
        // Idle connections and graceful shutdown: GOAWAY first, then close once the open streams are done. It
        // counts streams from NIOHTTP2's created and closed events.
        let manager = NIOHTTP2ServerConnectionManagementHandler(
            eventLoop: channel.eventLoop,
            configuration: .init(maxIdleTime: listener.idleTimeout, maxAge: nil, maxGraceTime: nil, keepalive: nil)
        )
        let table = HTTP2StreamTable(worker: worker, listener: listener, peer: DownstreamPeer(proxiedAddress: proxiedAddress),
                                     connection: connection, stream: stream)
        if listener.tls != nil {
            try channel.pipeline.syncOperations.addHandler(TLSWriteCoalescingHandler())
        }
        try channel.pipeline.syncOperations.addHandler(FlushCoalescingHandler())
        // No stream multiplexer: every stream's frames come down to the table.
        try channel.pipeline.syncOperations.addHandler(NIOHTTP2Handler(
            mode: .server, frameDelegate: table, connectionConfiguration: connection, streamConfiguration: stream))
        try channel.pipeline.syncOperations.addHandler(manager)
        try channel.pipeline.syncOperations.addHandler(table)
        try channel.pipeline.syncOperations.addHandler(HTTP2ConnectionErrorHandler(logger: worker.logger))
        worker.registerHTTP2Connection(channel)
    }
}
