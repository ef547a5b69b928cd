//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import PorticoCore
import Testing

@testable import PorticoEngine

/// The downstream pipeline on an `EmbeddedChannel`: bytes in, bytes out, no sockets.
@Suite struct ProxyHandlerTests {
    static let yaml = """
        listeners: [ { name: l, address: "127.0.0.1:1", limits: { max_uri_bytes: 100 } } ]
        routes:
          - { match: { path: /fixed }, respond: { status: 418, body: "teapot" } }
          - { match: { hosts: [old.test] }, redirect: { target: "https://new.test$request_uri" } }
        """

    func makeChannel(routeFilters: @escaping (RouteConfig) -> [any ProxyFilter] = { _ in [] }) throws -> (EmbeddedChannel, WorkerState) {
        let valid = try ConfigLoader.load(text: Self.yaml, file: nil).get()
        let table = RoutingTable.compile(valid, generation: 1, routeFilters: routeFilters)
        let channel = EmbeddedChannel()
        let worker = WorkerState(eventLoop: channel.eventLoop, index: 0, table: table, accessLog: nil, logger: Logger(label: "t"))
        try DownstreamPipeline.configure(channel, worker: worker, listener: ListenerSettings(valid.config.listeners[0]))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        worker.start()
        return (channel, worker)
    }

    func exchange(_ channel: EmbeddedChannel, _ request: String) throws -> String {
        try channel.writeInbound(ByteBuffer(string: request))
        var out = ""
        while let b = try channel.readOutbound(as: ByteBuffer.self) { out += String(buffer: b) }
        return out
    }

    @Test func fixedResponseAndKeepAlive() throws {
        let (channel, _) = try self.makeChannel()
        let out = try self.exchange(channel, "GET /fixed HTTP/1.1\r\nHost: a\r\n\r\nGET /fixed HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(out.components(separatedBy: "HTTP/1.1 418 I'm a teapot").count == 3)
        #expect(out.contains("content-length: 6") || out.contains("Content-Length: 6"))
        #expect(!out.lowercased().contains("connection: close"), "\(out)")
        #expect(channel.isActive)
        // An HTTP/1.0 client that asked to keep the connection is told it is kept (RFC 9112 §9.3).
        let old = try self.exchange(channel, "GET /fixed HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        #expect(old.hasPrefix("HTTP/1.0 418"))
        #expect(old.lowercased().contains("connection: keep-alive"), "\(old)")
        #expect(channel.isActive)
        _ = try? channel.finish()
    }

    /// A request answered from its head whose body is still being read and dropped when shutdown begins: the
    /// connection closes once the body has ended and the answer has gone out (it used to wait for the idle timeout).
    @Test func aConnectionToldToCloseWhileDroppingABodyClosesAtItsEnd() throws {
        let (channel, _) = try self.makeChannel()
        let out = try self.exchange(channel, "POST /fixed HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nhello")
        #expect(out.hasPrefix("HTTP/1.1 418"))
        #expect(channel.isActive)
        channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(channel.isActive, "closed with the body still coming")
        _ = try self.exchange(channel, "world")
        #expect(!channel.isActive, "the connection outlived its last request")
        _ = try? channel.finish()
    }

    @Test func noRouteIs404AndRedirectExpands() throws {
        let (channel, _) = try self.makeChannel()
        let out = try self.exchange(channel, "GET /nothing HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(out.hasPrefix("HTTP/1.1 404"))
        let (c2, _) = try self.makeChannel()
        let redirect = try self.exchange(c2, "GET /p?q=1 HTTP/1.1\r\nHost: OLD.test\r\n\r\n")
        #expect(redirect.hasPrefix("HTTP/1.1 301"))
        #expect(redirect.contains("Location: https://new.test/p?q=1"))
        _ = try? channel.finish()
        _ = try? c2.finish()
    }

    @Test func malformedRequestIs400AndCloses() throws {
        let (channel, _) = try self.makeChannel()
        let out = try self.exchange(channel, "NOT HTTP AT ALL\r\n\r\n")
        #expect(out.hasPrefix("HTTP/1.1 400"))
        #expect(out.contains("Connection: close"))
        #expect(!channel.isActive)
    }

    @Test func longURIIs414() throws {
        let (channel, _) = try self.makeChannel()
        let out = try self.exchange(channel, "GET /\(String(repeating: "a", count: 200)) HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(out.hasPrefix("HTTP/1.1 414"))
        #expect(!channel.isActive)
    }

    @Test func headerTimeoutAnswers408() throws {
        let (channel, worker) = try self.makeChannel()
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHo"))
        // 30 s default request-header timeout, checked by the worker's tick.
        channel.embeddedEventLoop.advanceTime(by: .seconds(31))
        _ = worker
        var out = ""
        while let b = try channel.readOutbound(as: ByteBuffer.self) { out += String(buffer: b) }
        #expect(out.hasPrefix("HTTP/1.1 408"))
    }

    /// Holds every request until the test completes its promise with a decision (an auth subrequest's shape).
    struct Suspender: ProxyFilter {
        let promise: EventLoopPromise<FilterDecision>
        var phases: FilterPhases { .requestHead }
        func requestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) -> FilterDecision {
            .suspend(self.promise.futureResult)
        }
    }

    /// A suspended request waits, with nothing written, until its filter's future completes; then the chain
    /// goes on (here to the route's fixed response), or answers, or fails with 500.
    @Test func suspendedFiltersResumeAnswerOrFail() throws {
        let loop = EmbeddedEventLoop()
        for outcome in ["proceed", "respond", "fail"] {
            let promise = loop.makePromise(of: FilterDecision.self)
            let (channel, _) = try self.makeChannel { route in route.match?.path == "/fixed" ? [Suspender(promise: promise)] : [] }
            let out = try self.exchange(channel, "GET /fixed HTTP/1.1\r\nHost: a\r\n\r\n")
            #expect(out.isEmpty, "\(outcome): answered before the filter decided")
            switch outcome {
            case "proceed": promise.succeed(.proceed)
            case "respond": promise.succeed(.respond(FilterResponse(status: 401, headers: ["WWW-Authenticate": "Bearer"], text: "no")))
            default: promise.fail(ChannelError.ioOnClosedChannel)
            }
            loop.run()
            channel.embeddedEventLoop.run()
            var reply = ""
            while let b = try channel.readOutbound(as: ByteBuffer.self) { reply += String(buffer: b) }
            switch outcome {
            case "proceed": #expect(reply.hasPrefix("HTTP/1.1 418") && reply.hasSuffix("teapot"))
            case "respond": #expect(reply.hasPrefix("HTTP/1.1 401") && reply.contains("WWW-Authenticate: Bearer") && reply.hasSuffix("no"))
            default: #expect(reply.hasPrefix("HTTP/1.1 500"))
            }
            _ = try? channel.finish()
        }
    }
}
