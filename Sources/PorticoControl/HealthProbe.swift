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
import PorticoEngine

/// One active health probe of one host: a TCP connect, or an HTTP request on a new connection (closed after, so a
/// probe never occupies a pooled connection), in the cluster's own protocol: TLS with the cluster's settings
/// (CA, SNI, client certificate) when it has `tls`, HTTP/2 for `h2` and `h2c`. A probe that spoke plain HTTP/1.1
/// to a TLS or HTTP/2-only host would mark a healthy host down.
///
/// Runs on any EventLoop of the group; awaited by `HealthCheckService`, off the request path.
struct HealthProbe: Sendable {
    var type: HealthCheckType
    var method: String
    var path: String
    var hostHeader: String?
    var expectStatus: StatusSet
    var expectBody: String?
    var timeout: TimeAmount
    /// The cluster's client TLS, when it speaks TLS.
    var tls: UpstreamTLS?
    /// The cluster speaks HTTP/2 (`h2` over TLS, `h2c` without).
    var http2: Bool
    /// The cluster's hosts expect a PROXY protocol header: probes send one that relays no client (v2 `LOCAL`,
    /// v1 `UNKNOWN`, as the spec asks of a proxy's own health checks).
    var proxyProtocol: ProxyProtocolVersion?

    init(_ c: ActiveHealthCheckConfig, tls: UpstreamTLS? = nil, http2: Bool = false, proxyProtocol: ProxyProtocolVersion? = nil) {
        self.proxyProtocol = proxyProtocol
        self.type = c.type ?? .http
        self.method = c.method ?? "GET"
        self.path = c.path ?? "/"
        self.hostHeader = c.host
        self.expectStatus = c.expectStatus.flatMap(StatusSet.init(parsing:)) ?? StatusSet(parsing: "200-399")!
        self.expectBody = c.expectBody
        self.timeout = .nanoseconds(c.timeout?.nanoseconds ?? 2_000_000_000)
        self.tls = tls
        self.http2 = http2
    }

    struct Result: Sendable {
        var passed: Bool
        var detail: String
    }

    /// What came back: the status and the start of the body.
    struct Answer: Sendable {
        var status: Int
        var body: String
    }

    func run(_ address: HostPort, group: any EventLoopGroup) async -> Result {
        let loop = group.next()
        let promise = loop.makePromise(of: Answer.self)
        let timeout = loop.scheduleTask(in: self.timeout) {
            promise.fail(ProbeError.timedOut)
        }
        defer { timeout.cancel() }
        let tls = self.tls
        let proxyHeader = self.proxyProtocol.map { ProxyProtocol.encode($0, source: nil, destination: nil) }
        let http1 = self.type == .http && !self.http2
        let http2 = self.type == .http && self.http2
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(self.timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let proxyHeader { try channel.pipeline.syncOperations.addHandler(ProxyProtocolSender(header: proxyHeader)) }
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName(for: address)))
                    }
                    if http1 {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(ProbeResponseHandler(promise: promise, limit: 64 * 1024))
                    } else if http2 {
                        // In the pipeline before the connection is up: an h2c server's SETTINGS may arrive at once.
                        _ = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                            mode: .client, connectionConfiguration: .init(), streamConfiguration: .init()
                        ) { stream in stream.close() }
                    }
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: address.host, port: address.port).get()
        } catch {
            promise.fail(error)
            return Result(passed: false, detail: "connect failed: \(error)")
        }
        if self.type == .tcp {
            try? await channel.close()
            promise.succeed(Answer(status: 0, body: ""))
            return Result(passed: true, detail: "tcp connect ok")
        }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: self.hostHeader ?? address.description)
        headers.add(name: "User-Agent", value: "portico-health-check")
        headers.add(name: "Accept", value: "*/*")
        if http1 { headers.add(name: "Connection", value: "close") }
        let head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: self.method), uri: self.path, headers: headers)
        do {
            if http1 {
                channel.write(HTTPClientRequestPart.head(head), promise: nil)
                channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
            } else {
                try await Self.sendOverHTTP2(channel, head, tls: tls != nil, promise: promise)
            }
            let answer = try await promise.futureResult.get()
            try? await channel.close()
            return self.evaluate(answer)
        } catch {
            promise.fail(error)
            try? await channel.close()
            return Result(passed: false, detail: error is ProbeError ? "timed out after \(ConfigDuration(nanoseconds: self.timeout.nanoseconds))" : "\(error)")
        }
    }

    /// One stream on a new HTTP/2 connection, its response collected like an HTTP/1.1 one.
    private static func sendOverHTTP2(_ channel: any Channel, _ head: HTTPRequestHead, tls: Bool, promise: EventLoopPromise<Answer>) async throws {
        let multiplexer = try await channel.eventLoop.submit {
            try channel.pipeline.syncOperations.handler(type: NIOHTTP2Handler.self).syncMultiplexer()
        }.get()
        let streamPromise = channel.eventLoop.makePromise(of: (any Channel).self)
        multiplexer.createStreamChannel(promise: streamPromise) { stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTP1ClientCodec(httpProtocol: tls ? .https : .http))
                try stream.pipeline.syncOperations.addHandler(ProbeResponseHandler(promise: promise, limit: 64 * 1024))
            }
        }
        let stream = try await streamPromise.futureResult.get()
        stream.write(HTTPClientRequestPart.head(head), promise: nil)
        stream.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
    }

    func evaluate(_ answer: Answer) -> Result {
        guard self.expectStatus.contains(answer.status) else { return Result(passed: false, detail: "status \(answer.status)") }
        if let expected = self.expectBody, !answer.body.contains(expected) {
            return Result(passed: false, detail: "status \(answer.status), body lacks \"\(expected)\"")
        }
        return Result(passed: true, detail: "status \(answer.status)")
    }

    enum ProbeError: Error { case timedOut, closedBeforeAnswer }
}

/// Collects a probe's response: the status, and up to `limit` bytes of body.
private final class ProbeResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    let promise: EventLoopPromise<HealthProbe.Answer>
    let limit: Int
    private var status: Int?
    private var body = ByteBuffer()

    init(promise: EventLoopPromise<HealthProbe.Answer>, limit: Int) {
        self.promise = promise
        self.limit = limit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            // 1xx are interim; the final status is what counts.
            if head.status.code >= 200 { self.status = Int(head.status.code) }
        case .body(var part):
            if self.body.readableBytes < self.limit { self.body.writeBuffer(&part) }
        case .end:
            if let status = self.status { self.promise.succeed(HealthProbe.Answer(status: status, body: String(buffer: self.body))) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.promise.fail(HealthProbe.ProbeError.closedBeforeAnswer)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.promise.fail(error)
        context.close(promise: nil)
    }
}
