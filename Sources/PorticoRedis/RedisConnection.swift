//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import DequeModule
package import NIOCore
import NIOPosix

/// One pipelined connection to Redis, owned by one EventLoop: commands are written as they come and their
/// answers matched to them in order (Redis answers in order on a connection).
///
/// Runs on its EventLoop only; `send` must be called there.
final class RedisConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var buffer = ByteBuffer()
    private var waiting = Deque<EventLoopPromise<RESPValue>>()
    private var context: ChannelHandlerContext?

    private var closePromise: EventLoopPromise<Void>?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.closePromise = context.eventLoop.makePromise()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.closePromise?.succeed()
    }

    /// Completes when the connection closed.
    var closeFuture: EventLoopFuture<Void> { self.closePromise!.futureResult }

    func close() { self.context?.close(promise: nil) }

    func send(_ command: ByteBuffer, promise: EventLoopPromise<RESPValue>) {
        guard let context = self.context, context.channel.isActive else {
            promise.fail(ChannelError.ioOnClosedChannel)
            return
        }
        self.waiting.append(promise)
        context.writeAndFlush(self.wrapOutboundOut(command), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = self.unwrapInboundIn(data)
        self.buffer.writeBuffer(&incoming)
        do {
            while let value = try RESPValue.read(from: &self.buffer) {
                guard let promise = self.waiting.popFirst() else {
                    throw RESPValue.ParseError.malformed("an answer nobody asked for")
                }
                promise.succeed(value)
            }
            self.buffer.discardReadBytes()
        } catch {
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.context = nil
        while let promise = self.waiting.popFirst() { promise.fail(ChannelError.ioOnClosedChannel) }
        self.closePromise?.succeed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// An EventLoop's client of one Redis: one pipelined connection, opened on first use and again after it closes
/// (not more than once per `reconnectDelay` while Redis is down, so a dead Redis costs no connect per request).
///
/// Loop-bound: every method runs on `eventLoop` (checked). `@unchecked Sendable` so that a store made on the
/// control plane can hold one per EventLoop without a lock; only that loop ever touches it.
final class RedisClient: @unchecked Sendable {
    let eventLoop: any EventLoop
    let address: SocketAddress
    let password: String?
    private var connection: EventLoopFuture<RedisConnectionHandler>?
    private var lastFailure: NIODeadline?
    static let reconnectDelay: TimeAmount = .milliseconds(500)

    init(eventLoop: any EventLoop, address: SocketAddress, password: String?) {
        self.eventLoop = eventLoop
        self.address = address
        self.password = password
    }

    /// Sends one command; fails when Redis cannot be reached or the answer does not come within `timeout`.
    func send(_ arguments: [String], timeout: TimeAmount) -> EventLoopFuture<RESPValue> {
        self.eventLoop.preconditionInEventLoop()
        let promise = self.eventLoop.makePromise(of: RESPValue.self)
        let bound = NIOLoopBound(self, eventLoop: self.eventLoop)
        let timer = self.eventLoop.scheduleTask(in: timeout) {
            // A Redis that does not answer in time may never answer on this connection (a partition without a
            // reset): close it, failing what waits on it; the next command connects again.
            promise.fail(RedisError.timedOut)
            bound.value.connection?.whenSuccess { $0.close() }
            bound.value.connection = nil
        }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        var command = ByteBuffer()
        RESPValue.writeCommand(arguments, into: &command)
        self.handler().whenComplete { result in
            switch result {
            case .success(let handler): handler.send(command, promise: promise)
            case .failure(let error): promise.fail(error)
            }
        }
        return promise.futureResult
    }

    private func handler() -> EventLoopFuture<RedisConnectionHandler> {
        if let connection = self.connection { return connection }
        if let last = self.lastFailure, NIODeadline.now() - last < Self.reconnectDelay {
            return self.eventLoop.makeFailedFuture(RedisError.unreachable)
        }
        let password = self.password
        let connected = ClientBootstrap(group: self.eventLoop)
            .connectTimeout(.seconds(1))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(RedisConnectionHandler()) }
            }
            .connect(to: self.address)
            .flatMap { channel -> EventLoopFuture<RedisConnectionHandler> in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.handler(type: RedisConnectionHandler.self) }
                    .flatMap { handler in
                        guard let password else { return channel.eventLoop.makeSucceededFuture(handler) }
                        let promise = channel.eventLoop.makePromise(of: RESPValue.self)
                        var auth = ByteBuffer()
                        RESPValue.writeCommand(["AUTH", password], into: &auth)
                        handler.send(auth, promise: promise)
                        return promise.futureResult.flatMapThrowing { answer in
                            if case .error(let message) = answer {
                                channel.close(promise: nil)  // refused: never keep (or leak) the connection
                                throw RedisError.refused(message)
                            }
                            return handler
                        }
                    }
            }
        let bound = NIOLoopBound(self, eventLoop: self.eventLoop)
        connected.whenComplete { result in
            switch result {
            case .success(let handler):
                // Gone (Redis restarted, a timeout closed it): the next command connects again.
                handler.closeFuture.whenComplete { _ in
                    if bound.value.connection === connected { bound.value.connection = nil }
                }
            case .failure:
                bound.value.connection = nil
                bound.value.lastFailure = .now()
            }
        }
        self.connection = connected
        return connected
    }

    /// Closes the connection, if any (the limit went away with a reload).
    func close() {
        self.eventLoop.preconditionInEventLoop()
        self.connection?.whenSuccess { $0.close() }
        self.connection = nil
        self.lastFailure = .now() + .hours(1_000_000)
    }
}

package enum RedisError: Error, Equatable {
    case timedOut
    case unreachable
    case refused(String)
    case unexpectedAnswer
}
