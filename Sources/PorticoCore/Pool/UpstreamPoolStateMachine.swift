//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore

/// The idle half of one worker's connection pool to one upstream host: which parked connection to hand out,
/// whether a returned one is kept, and which have idled too long. Pure (connections are opaque values), so it is
/// tested without sockets; `UpstreamConnectionPool` performs the I/O its answers call for.
///
/// Policy (nginx `keepalive`, Envoy, Pingora): LIFO reuse, so the warmest connection is used and the coldest age
/// out; at most `maxIdle` parked; a connection parked longer than `idleTimeout` is closed; a connection that
/// served `maxRequests` requests is not parked. No HTTP/1 pipelining: a leased connection is not in this
/// structure at all until it is released.
public struct UpstreamPoolStateMachine<Connection: Equatable> {
    public var maxIdle: Int
    public var idleTimeout: TimeAmount
    public var maxRequests: Int

    private var idle: [(connection: Connection, parkedAt: NIODeadline)] = []

    public init(maxIdle: Int, idleTimeout: TimeAmount, maxRequests: Int) {
        self.maxIdle = maxIdle
        self.idleTimeout = idleTimeout
        self.maxRequests = maxRequests
    }

    public var idleCount: Int { self.idle.count }

    public enum LeaseAction: Equatable {
        /// Use this parked connection.
        case reuse(Connection)
        /// Nothing parked: open a new connection.
        case connect
    }

    public mutating func lease() -> LeaseAction {
        if let last = self.idle.popLast() { return .reuse(last.connection) }
        return .connect
    }

    public enum ReleaseAction: Equatable {
        case park
        case close
    }

    /// A request finished on `connection`. `reusable` is false when the exchange left it in an unknown state
    /// (upstream said close, request not fully sent, error).
    public mutating func release(_ connection: Connection, reusable: Bool, requestsServed: Int, now: NIODeadline) -> ReleaseAction {
        guard reusable, self.maxIdle > 0, self.maxRequests == 0 || requestsServed < self.maxRequests else { return .close }
        if self.idle.count >= self.maxIdle {
            return .close
        }
        self.idle.append((connection, now))
        return .park
    }

    /// A parked connection closed, or received bytes while idle (the upstream broke the protocol or is closing):
    /// forget it. Returns whether it was parked.
    @discardableResult
    public mutating func idleEvent(_ connection: Connection) -> Bool {
        guard let i = self.idle.firstIndex(where: { $0.connection == connection }) else { return false }
        self.idle.remove(at: i)
        return true
    }

    /// Removes and returns the connections parked for longer than `idleTimeout`.
    public mutating func expired(now: NIODeadline) -> [Connection] {
        let limit = now - self.idleTimeout
        // Oldest first: they sit at the front of the LIFO stack.
        var n = 0
        while n < self.idle.count && self.idle[n].parkedAt <= limit { n += 1 }
        guard n > 0 else { return [] }
        let out = self.idle[0..<n].map(\.connection)
        self.idle.removeFirst(n)
        return out
    }

    /// Removes and returns every parked connection (host removed, worker shutting down).
    public mutating func drainAll() -> [Connection] {
        let out = self.idle.map(\.connection)
        self.idle.removeAll()
        return out
    }
}
