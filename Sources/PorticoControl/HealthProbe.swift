//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOPosix
import PorticoCore

/// One active health probe of one host: a TCP connect, or an HTTP/1.1 request on a new connection (closed after,
/// so a probe never occupies a pooled connection). Runs on any EventLoop of the group; awaited by
/// `HealthCheckService`, off the request path.
struct HealthProbe: Sendable {
    var type: HealthCheckType
    var method: String
    var path: String
    var hostHeader: String?
    var expectStatus: StatusSet
    var expectBody: String?
    var timeout: TimeAmount

    init(_ c: ActiveHealthCheckConfig) {
        self.type = c.type ?? .http
        self.method = c.method ?? "GET"
        self.path = c.path ?? "/"
        self.hostHeader = c.host
        self.expectStatus = c.expectStatus.flatMap(StatusSet.init(parsing:)) ?? StatusSet(parsing: "200-399")!
        self.expectBody = c.expectBody
        self.timeout = .nanoseconds(c.timeout?.nanoseconds ?? 2_000_000_000)
    }

    struct Result: Sendable {
        var passed: Bool
        var detail: String
    }

    func run(_ address: HostPort, group: any EventLoopGroup) async -> Result {
        let loop = group.next()
        let promise = loop.makePromise(of: ByteBuffer.self)
        let timeout = loop.scheduleTask(in: self.timeout) {
            promise.fail(ProbeError.timedOut)
        }
        defer { timeout.cancel() }
        let request: ByteBuffer? = self.type == .tcp ? nil : ByteBuffer(string:
            "\(self.method) \(self.path) HTTP/1.1\r\nHost: \(self.hostHeader ?? address.description)\r\n"
            + "User-Agent: portico-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n")
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(self.timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise, limit: 64 * 1024))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: address.host, port: address.port).get()
        } catch {
            promise.fail(error)
            return Result(passed: false, detail: "connect failed: \(error)")
        }
        guard let request else {
            try? await channel.close()
            promise.succeed(ByteBuffer())
            return Result(passed: true, detail: "tcp connect ok")
        }
        channel.writeAndFlush(request, promise: nil)
        do {
            let response = try await promise.futureResult.get()
            try? await channel.close()
            return self.evaluate(String(buffer: response))
        } catch {
            try? await channel.close()
            return Result(passed: false, detail: error is ProbeError ? "timed out after \(ConfigDuration(nanoseconds: self.timeout.nanoseconds))" : "\(error)")
        }
    }

    func evaluate(_ text: String) -> Result {
        let statusLine = text.prefix { $0 != "\r" && $0 != "\n" }
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            return Result(passed: false, detail: "not an HTTP response")
        }
        guard self.expectStatus.contains(status) else { return Result(passed: false, detail: "status \(status)") }
        if let expected = self.expectBody {
            let body = text.firstRange(of: "\r\n\r\n").map { text[$0.upperBound...] } ?? ""
            guard body.contains(expected) else { return Result(passed: false, detail: "status \(status), body lacks \"\(expected)\"") }
        }
        return Result(passed: true, detail: "status \(status)")
    }

    enum ProbeError: Error { case timedOut }
}

/// Gathers a probe response until the server closes the connection or `limit` bytes arrive.
private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let promise: EventLoopPromise<ByteBuffer>
    let limit: Int
    var buffer = ByteBuffer()

    init(promise: EventLoopPromise<ByteBuffer>, limit: Int) {
        self.promise = promise
        self.limit = limit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = self.unwrapInboundIn(data)
        self.buffer.writeBuffer(&chunk)
        if self.buffer.readableBytes >= self.limit {
            self.promise.succeed(self.buffer)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.promise.succeed(self.buffer)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.promise.fail(error)
        context.close(promise: nil)
    }
}
