//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import PorticoCore

/// The admin listener: a small HTTP/1.1 server on its own socket, on the control plane. Requests are read whole
/// (bounded) and answered by `AdminAPI`, whose work (config reloads, cluster state, metrics) runs as async code
/// off the EventLoop; the answer is written back on the connection's loop. Not on the proxy's path: it uses
/// NIO's stock HTTP/1.1 codec, not Portico's.
final class AdminServer: Sendable {
    let channel: any Channel

    var localAddress: SocketAddress? { self.channel.localAddress }

    /// - Parameter tls: serve over TLS and require a client certificate signed by its CA (mutual TLS).
    static func start(address: HostPort, group: any EventLoopGroup, api: AdminAPI, tls: AdminTLSConfig? = nil) async throws -> AdminServer {
        let sslContext = try tls.map { t -> NIOSSLContext in
            var config = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(t.certFile).map { .certificate($0) },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: t.keyFile, format: .pem))
            )
            config.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(t.clientCa))
            config.certificateVerification = .noHostnameVerification  // a client certificate is required
            config.minimumTLSVersion = .tlsv12
            return try NIOSSLContext(configuration: config)
        }
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(AdminHTTPHandler(api: api))
                }
            }
            .bind(host: address.host, port: address.port)
            .get()
        return AdminServer(channel: channel)
    }

    private init(channel: any Channel) {
        self.channel = channel
    }

    func stop() async {
        try? await self.channel.close()
    }
}

/// One admin connection: collects a request (at most `maxBody` bytes of body), hands it to the API, writes the
/// answer. Runs on the connection's EventLoop; the API call is a `Task`.
private final class AdminHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let maxBody = 8 << 20

    let api: AdminAPI
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var tooLarge = false

    init(api: AdminAPI) {
        self.api = api
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            self.body.clear()
            self.tooLarge = false
        case .body(var part):
            if self.body.readableBytes + part.readableBytes > Self.maxBody {
                self.tooLarge = true
            } else {
                self.body.writeBuffer(&part)
            }
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            if self.tooLarge {
                return self.write(context, head, .text(.payloadTooLarge, "request body over 8 MiB\n"))
            }
            let request = AdminRequest(head: head, body: self.body)
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let api = self.api
            let loop = context.eventLoop
            Task {
                let response = await api.handle(request)
                loop.execute {
                    let (handler, context) = bound.value
                    handler.write(context, head, response)
                }
            }
        }
    }

    private func write(_ context: ChannelHandlerContext, _ request: HTTPRequestHead, _ response: AdminResponse) {
        var headers = response.headers
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body.readableBytes))
        if !request.isKeepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: response.status, headers: headers))), promise: nil)
        if request.method != .HEAD {
            context.write(self.wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
        }
        let done = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
        if !request.isKeepAlive {
            done.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        }
    }
}

/// An admin request, read whole.
struct AdminRequest: Sendable {
    var method: HTTPMethod
    /// The path, without the query.
    var path: String
    var headers: HTTPHeaders
    var body: ByteBuffer

    init(head: HTTPRequestHead, body: ByteBuffer) {
        self.method = head.method
        self.path = String(head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? "/")
        self.headers = head.headers
        self.body = body
    }

    init(method: HTTPMethod, path: String, headers: HTTPHeaders = [:], body: ByteBuffer = ByteBuffer()) {
        self.init(head: HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers), body: body)
    }
}

/// An admin answer.
struct AdminResponse: Sendable {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: ByteBuffer

    static func text(_ status: HTTPResponseStatus, _ text: String, contentType: String = "text/plain; charset=utf-8") -> AdminResponse {
        AdminResponse(status: status, headers: ["Content-Type": contentType], body: ByteBuffer(string: text))
    }

    static func json(_ status: HTTPResponseStatus, _ bytes: [UInt8], headers: HTTPHeaders = [:]) -> AdminResponse {
        var h = headers
        h.replaceOrAdd(name: "Content-Type", value: "application/json")
        return AdminResponse(status: status, headers: h, body: ByteBuffer(bytes: bytes))
    }
}
