//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1
import PorticoCore

/// A worker's `SubrequestClient`: filters' own requests (forward auth) go through the same balancers, pools,
/// health and circuit breakers as proxied requests.
///
/// Sendable so it can ride in a `RequestContext`; it only touches its worker on the worker's EventLoop (checked).
final class WorkerSubrequests: SubrequestClient, @unchecked Sendable {
    private unowned let worker: WorkerState

    init(worker: WorkerState) {
        self.worker = worker
    }

    func send(cluster: String, head: HTTPRequestHead, body: ByteBuffer?, timeout: TimeAmount, maxBodyBytes: Int,
              eventLoop: any EventLoop) -> EventLoopFuture<SubrequestResponse> {
        self.worker.eventLoop.preconditionInEventLoop()
        guard let cs = self.worker.clusterStates.first(where: { $0.cluster.name == cluster }) else {
            return eventLoop.makeFailedFuture(SubrequestError.unknownCluster(cluster))
        }
        let request = Subrequest(worker: self.worker, cluster: cs, head: head, body: body, maxBodyBytes: maxBodyBytes)
        request.start(timeout: timeout)
        return request.promise.futureResult
    }
}

/// One subrequest: picks a host, leases or opens a connection, sends, collects the answer, gives the connection
/// back (kept alive when the exchange ended cleanly). A timeout closes the connection.
///
/// Runs on its worker's EventLoop.
final class Subrequest: UpstreamOwner {
    let promise: EventLoopPromise<SubrequestResponse>
    private let worker: WorkerState
    private let cs: ClusterState
    private let head: HTTPRequestHead
    private let body: ByteBuffer?
    private let maxBodyBytes: Int
    private var conn: UpstreamHandler?
    private var pool: UpstreamConnectionPool?
    private var host: HostState?
    private var responseHead: HTTPResponseHead?
    private var responseBody = ByteBuffer()
    private var timer: Scheduled<Void>?
    private var done = false
    /// The connection came from the pool (it may have been closed by the server meanwhile: tried again once).
    private var reused = false

    init(worker: WorkerState, cluster: ClusterState, head: HTTPRequestHead, body: ByteBuffer?, maxBodyBytes: Int) {
        self.worker = worker
        self.cs = cluster
        self.head = head
        self.body = body
        self.maxBodyBytes = maxBodyBytes
        self.promise = worker.eventLoop.makePromise()
    }

    func start(timeout: TimeAmount) {
        self.timer = self.worker.eventLoop.scheduleTask(in: timeout) { [self] in self.finish(.failure(SubrequestError.timedOut)) }
        let cluster = self.cs.cluster
        let now = Int64(self.worker.eventLoop.now.uptimeNanoseconds)
        var view = EligibleHosts(cluster: cluster, tried: [], now: now, backups: false, ignoreTried: false)
        var chosen = self.cs.balancer.pick(view, hash: self.worker.rng.next(), using: &self.worker.rng)
        if chosen == nil && cluster.hasBackups {
            view.backups = true
            chosen = self.cs.balancer.pick(view, hash: self.worker.rng.next(), using: &self.worker.rng)
        }
        guard let index = chosen else { return self.finish(.failure(SubrequestError.noHost)) }
        let host = cluster.hosts[index]
        host.state.requestStarted()
        self.host = host.state
        let pool = self.cs.pools[index]
        self.pool = pool
        self.acquire(pool, mayReuse: true)
    }

    /// A parked connection (when `mayReuse`), or a new one under the cluster's limits.
    private func acquire(_ pool: UpstreamConnectionPool, mayReuse: Bool) {
        if mayReuse, let conn = pool.lease() {
            self.reused = true
            self.attach(conn)
        } else if pool.reserveConnection() {
            self.reused = false
            let header = pool.proxyProtocol.map { ProxyProtocol.encode($0, source: nil, destination: nil) }  // relays no client
            pool.connect(proxyHeader: header).assumeIsolated().whenComplete { [self] result in
                switch result {
                case .success(let conn):
                    if self.done {
                        pool.release(conn, reusable: true)
                    } else {
                        self.attach(conn)
                    }
                case .failure(let error):
                    self.finish(.failure(SubrequestError.failed("\(pool.address): \(error)")))
                }
            }
        } else {
            self.finish(.failure(SubrequestError.overloaded))
        }
    }

    private func attach(_ conn: UpstreamHandler) {
        self.conn = conn
        conn.owner = self
        conn.requestsServed += 1
        var head = self.head
        if !head.headers.contains(name: "host"), let index = self.cs.pools.firstIndex(where: { $0 === self.pool }) {
            head.headers.add(name: "Host", value: self.cs.cluster.hosts[index].authority)
        }
        if let body = self.body, body.readableBytes > 0 {
            head.headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
            conn.write(.head(head))
            conn.write(.body(.byteBuffer(body)))
        } else {
            conn.write(.head(head))
        }
        conn.write(.end(nil))
        conn.flush()
    }

    func upstreamRead(_ part: HTTPClientResponsePart, from conn: UpstreamHandler) {
        guard !self.done else { return }
        switch part {
        case .head(let head):
            if head.status.code >= 100 && head.status.code < 200 { return }  // interim: the final one follows
            self.responseHead = head
        case .body(var chunk):
            let room = self.maxBodyBytes - self.responseBody.readableBytes
            if room > 0, let slice = chunk.readSlice(length: min(room, chunk.readableBytes)) {
                var slice = slice
                self.responseBody.writeBuffer(&slice)
            }
        case .end:
            guard let head = self.responseHead else { return self.finish(.failure(SubrequestError.failed("no response head"))) }
            let keepAlive = head.isKeepAlive
            self.conn = nil
            self.pool?.release(conn, reusable: keepAlive)
            self.finish(.success(SubrequestResponse(head: head, body: self.responseBody)))
        }
    }

    func upstreamReadComplete() {}

    func upstreamClosed(_ conn: UpstreamHandler, error: (any Error)?) {
        self.conn = nil
        if self.reused, self.responseHead == nil, !self.done, let pool = self.pool {
            // A kept-alive connection the server had closed: once more, on a new one.
            return self.acquire(pool, mayReuse: false)
        }
        self.finish(.failure(SubrequestError.failed(error.map { "\($0)" } ?? "the connection closed before the answer")))
    }

    func upstreamWritabilityChanged(isWritable: Bool) {}

    var downstreamIsWritable: Bool { true }

    private func finish(_ result: Result<SubrequestResponse, any Error>) {
        guard !self.done else { return }
        self.done = true
        self.timer?.cancel()
        self.host?.requestFinished()
        self.host = nil
        if let conn = self.conn {
            // Cut off (a timeout): the connection is in an unknown state.
            self.conn = nil
            conn.close()
        }
        self.promise.completeWith(result)
    }
}
