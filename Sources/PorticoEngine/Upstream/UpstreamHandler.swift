//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1
import PorticoCore

/// The last handler of an upstream connection's pipeline, and the connection's identity in its pool.
///
/// Runs on the EventLoop of the downstream connection that opened it (ARCHITECTURE §2: upstream channels live on
/// the downstream's loop), so it calls its `ProxyHandler` directly, with no locks and no hops.
///
/// While leased, response parts go to `owner`. While parked in the pool, `owner` is nil and any inbound event
/// (bytes, close) evicts the connection: bytes on an idle HTTP/1 connection mean the upstream is closing or
/// broken (Pingora `idle_poll`).
///
/// Backpressure (swift-nio-examples `GlueHandler`): the outbound `read()` is held while the downstream channel is
/// not writable and replayed when it becomes writable again.
/// Who a leased upstream connection reports to: a downstream `ProxyHandler`, or a `Subrequest` (an auth check).
/// Called on the connection's EventLoop.
protocol UpstreamOwner: AnyObject {
    func upstreamRead(_ part: HTTPClientResponsePart, from conn: UpstreamHandler)
    func upstreamReadComplete()
    func upstreamClosed(_ conn: UpstreamHandler, error: (any Error)?)
    func upstreamWritabilityChanged(isWritable: Bool)
    /// Whether the side the response goes to can take more (else the upstream read is held).
    var downstreamIsWritable: Bool { get }
}

final class UpstreamHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    private(set) var context: ChannelHandlerContext?
    /// Strong: a connection leased across a reload may outlive its pool's place in the worker (the pool is then
    /// retired and closes it on release). Parked connections form a cycle with the pool until evicted or closed.
    let pool: UpstreamConnectionPool
    var owner: (any UpstreamOwner)?
    var requestsServed = 0
    private var pendingRead = false
    private(set) var isClosed = false

    /// False for an HTTP/2 stream: its closing frees no `max_connections` slot.
    private let countsAsConnection: Bool

    init(pool: UpstreamConnectionPool, countsAsConnection: Bool = true) {
        self.pool = pool
        self.countsAsConnection = countsAsConnection
    }

    var channel: (any Channel)? { self.context?.channel }
    var isWritable: Bool { self.context?.channel.isWritable ?? false }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.codec = nil
    }

    /// The HTTP/1.1 codec in front of this handler, which calls it directly both ways (nil on an HTTP/2 stream).
    var codec: HTTP1ClientCodecHandler?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.received(self.unwrapInboundIn(data))
    }

    /// A response part, from the codec or through the pipeline.
    func received(_ part: HTTPClientResponsePart) {
        if let owner = self.owner {
            owner.upstreamRead(part, from: self)
        } else {
            // Data on an idle connection: never reuse it.
            self.pool.evict(self)
            self.context?.close(promise: nil)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.readComplete()
    }

    func readComplete() {
        self.owner?.upstreamReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.isClosed = true
        if self.countsAsConnection { self.pool.connectionClosed() }
        if let owner = self.owner {
            self.owner = nil
            owner.upstreamClosed(self, error: nil)
        } else {
            self.pool.evict(self)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let owner = self.owner {
            self.owner = nil
            owner.upstreamClosed(self, error: error)
        } else {
            self.pool.evict(self)
        }
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.owner?.upstreamWritabilityChanged(isWritable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if let owner = self.owner, !owner.downstreamIsWritable {
            self.pendingRead = true
        } else {
            context.read()
        }
    }

    /// Replays a held `read()` once the downstream can take more.
    func resumeReading() {
        guard self.pendingRead, let context = self.context else { return }
        self.pendingRead = false
        context.read()
    }

    func write(_ part: HTTPClientRequestPart) {
        if let codec = self.codec {
            codec.write(part, promise: nil)
        } else {
            self.context?.write(self.wrapOutboundOut(part), promise: nil)
        }
    }

    func flush() {
        self.context?.flush()
    }

    func close() {
        self.owner = nil
        guard !self.isClosed else { return }
        self.isClosed = true
        self.context?.close(promise: nil)
    }
}
