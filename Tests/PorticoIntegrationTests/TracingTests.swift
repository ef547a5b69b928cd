//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import PorticoTestSupport
import Synchronization
import Testing

/// Tracing (W3C Trace Context, OTLP/HTTP): a request's trace is continued and propagated upstream, a request
/// without one starts one, and each request's span reaches a small OTLP/HTTP collector of the test's own.
@Suite(.serialized) struct TracingTests {
    @Test func spansArePropagatedAndExported() async throws {
        let collector = try await OTLPCollector.start()
        let origin = try await TestOrigin.start(name: "o")
        let yaml = """
            tracing: { endpoint: "http://127.0.0.1:\(collector.port)/v1/traces", encoding: json, export_delay: 100ms, service_name: portico-test }
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes: [ { name: app, cluster: c } ]
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], workers: 1, logLevel: .critical)
        func get(_ fields: [String]) throws -> RawResponse {
            let c = try RawHTTPClient(port: proxy.port())
            try c.send("GET /traced HTTP/1.1\r\nHost: t\r\n" + fields.map { $0 + "\r\n" }.joined() + "\r\n")
            return try #require(c.readResponses(1).first)
        }
        // Continued: same trace, Portico's span as the origin's parent, tracestate passed on.
        let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
        let continued = try get(["traceparent: 00-\(traceID)-00f067aa0ba902b7-01", "tracestate: congo=t61rcWkgMzE"])
        let sent = try #require(continued.body.split(separator: "\n").first { $0.hasPrefix("traceparent: ") }).dropFirst(13)
        let parts = sent.split(separator: "-")
        #expect(parts.count == 4 && parts[1] == traceID[...] && parts[2] != "00f067aa0ba902b7" && parts[3] == "01", "\(sent)")
        #expect(continued.body.contains("tracestate: congo=t61rcWkgMzE"))
        // Started: a new trace, sampled (ratio 1).
        let started = try get([])
        let fresh = try #require(started.body.split(separator: "\n").first { $0.hasPrefix("traceparent: ") })
        #expect(!fresh.contains(traceID) && fresh.hasSuffix("-01"))

        // Not sampled by the caller: passed on as it is, no span.
        let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
        let passed = try get(["traceparent: \(unsampled)"])
        #expect(passed.body.contains("traceparent: \(unsampled)"))

        try await waitUntil("both spans are exported", timeout: .seconds(10)) { collector.spans().count >= 2 }
        // IDs are bytes, which this exporter's JSON writes in base64 (the protobuf JSON mapping).
        func hex(_ field: Any?) -> String? {
            (field as? String).flatMap { Data(base64Encoded: $0) }.map { $0.map { String(format: "%02x", $0) }.joined() }
        }
        let span = try #require(collector.spans().first { hex($0["traceId"]) == traceID }, "\(collector.bodies())")
        #expect(hex(span["parentSpanId"]) == "00f067aa0ba902b7")
        #expect(hex(span["spanId"]) == String(parts[2]))
        #expect(span["traceState"] as? String == "congo=t61rcWkgMzE")
        #expect(span["kind"] as? Int == 2)  // SERVER
        #expect(span["name"] as? String == "GET app")
        let attributes = Dictionary(uniqueKeysWithValues: (span["attributes"] as? [[String: Any]] ?? []).compactMap { a -> (String, String)? in
            guard let key = a["key"] as? String, let value = a["value"] as? [String: Any] else { return nil }
            return (key, "\(value["stringValue"] ?? value["intValue"] ?? "")")
        })
        #expect(attributes["portico.route"] == "app" && attributes["portico.cluster"] == "c")
        #expect(attributes["portico.upstream"] == origin.address && attributes["http.response.status_code"] == "200")
        #expect(attributes["http.request.method"] == "GET" && attributes["url.path"] == "/traced")
        #expect(collector.bodies().contains { $0.contains("portico-test") })  // service.name
        #expect(!collector.spans().contains { hex($0["traceId"]) == "0af7651916cd43dd8448eb211c80319c" })

        await proxy.shutdown()
        await origin.shutdown()
        await collector.stop()
    }
}

/// A minimal OTLP/HTTP collector (JSON encoding) on 127.0.0.1: keeps every request body.
final class OTLPCollector: Sendable {
    let port: Int
    private let channel: any Channel
    private let group: MultiThreadedEventLoopGroup
    private let received: Received

    final class Received: Sendable {
        let bodies = Mutex<[String]>([])
    }

    static func start() async throws -> OTLPCollector {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let received = Received()
        let channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(received: received))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return OTLPCollector(port: channel.localAddress!.port!, channel: channel, group: group, received: received)
    }

    private init(port: Int, channel: any Channel, group: MultiThreadedEventLoopGroup, received: Received) {
        self.port = port
        self.channel = channel
        self.group = group
        self.received = received
    }

    func bodies() -> [String] { self.received.bodies.withLock { $0 } }

    /// Every span of every export (OTLP/JSON: resourceSpans → scopeSpans → spans).
    func spans() -> [[String: Any]] {
        self.bodies().flatMap { body -> [[String: Any]] in
            guard let json = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else { return [] }
            let resources = json["resourceSpans"] as? [[String: Any]] ?? []
            return resources.flatMap { ($0["scopeSpans"] as? [[String: Any]] ?? []).flatMap { $0["spans"] as? [[String: Any]] ?? [] } }
        }
    }

    func stop() async {
        try? await self.channel.close()
        try? await self.group.shutdownGracefully()
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let received: Received
        var body = ByteBuffer()
        init(received: Received) { self.received = received }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch self.unwrapInboundIn(data) {
            case .head: self.body.clear()
            case .body(var part): self.body.writeBuffer(&part)
            case .end:
                let text = String(buffer: self.body)
                self.received.bodies.withLock { $0.append(text) }
                let reply = ByteBuffer(string: "{}")
                context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: ["Content-Type": "application/json", "Content-Length": "2"]))), promise: nil)
                context.write(self.wrapOutboundOut(.body(.byteBuffer(reply))), promise: nil)
                context.writeAndFlush(self.wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
    }
}
