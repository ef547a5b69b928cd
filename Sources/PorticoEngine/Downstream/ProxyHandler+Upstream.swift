//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import PorticoCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Phase 5 (select upstream), failure handling and retries. Runs on the connection's EventLoop like the rest of
/// `ProxyHandler`; the decisions are the pure `LoadBalancer`, `OutlierDetector` and `RetryPolicy` values.
extension ProxyHandler {
    /// Per-request inputs of balancing, computed once from the request head.
    /// Returns false when the cluster's `max_requests` refuses the request (it has then been answered).
    func prepareSelection(_ ex: Exchange, cluster: Cluster, head: HTTPRequestHead) -> Bool {
        if cluster.retry.usesBudget {
            cluster.retryBudget.requestStarted()
            ex.countedInBudget = true
        }
        if cluster.maxRequests != nil {
            guard cluster.breaker.acquireRequest(limit: cluster.maxRequests) else {
                self.overflow(ex, cluster, "max_requests")
                return false
            }
            ex.holdsRequestSlot = true
        }
        if cluster.balancer == .consistentHash {
            let key = cluster.hashKey
            switch key.source {
            case .clientIp: ex.hashKey = StableHash.fnv1a(self.clientIP)
            case .uri: ex.hashKey = StableHash.fnv1a(head.uri)
            case .header: ex.hashKey = StableHash.fnv1a(head.headers[key.name ?? ""].first ?? "")
            case .cookie: ex.hashKey = StableHash.fnv1a(Cookies.value(named: key.name ?? "", in: head.headers) ?? "")
            }
        }
        if let name = cluster.stickyCookie, let id = Cookies.value(named: name, in: head.headers) {
            ex.stickyHost = cluster.hosts.firstIndex { $0.stickyID == id }
        }
        return true
    }

    /// A circuit-breaker limit refused the request: 503 with Retry-After, counted and logged.
    func overflow(_ ex: Exchange, _ cluster: Cluster, _ limit: String) {
        let total = cluster.breaker.recordOverflow()
        self.worker.logger.warning("circuit breaker overflow", metadata: ["cluster": "\(cluster.name)", "limit": "\(limit)", "overflows": "\(total)"])
        self.respondWithError(ProxyError(.circuitBreakerOverflow, source: .internal, context: "\(cluster.name) \(limit)"), exchange: ex)
    }

    /// Gets a connection for the exchange's current host: a parked one, a new one under `max_connections`, or a
    /// place in the worker's queue (`max_pending`, `queue_timeout`).
    func acquireConnection(_ ex: Exchange, _ cs: ClusterState) {
        let pool = cs.pools[ex.hostIndex]
        // A protocol switch goes on a new connection: it never returns to the pool anyway, and some servers (NIO's
        // upgrader among them) only switch on the first request of a connection.
        if ex.upgradeProtocol == nil, let conn = pool.lease() {
            ex.usedReusedConnection = true
            if let m = self.worker.metrics { m.clusters[m.cluster(cs.cluster.metricSlot)].reused += 1 }
            self.attach(conn, ex)
            return
        }
        ex.usedReusedConnection = false
        if pool.reserveConnection() {
            if let m = self.worker.metrics { m.clusters[m.cluster(cs.cluster.metricSlot)].connects += 1 }
            self.connect(ex, pool: pool)
            return
        }
        let cluster = cs.cluster
        guard cluster.maxPending > 0, cluster.breaker.acquirePending(limit: cluster.maxPending) else {
            return self.overflow(ex, cluster, "max_connections")
        }
        ex.isQueued = true
        ex.owner = self
        self.machine.upstreamConnecting()
        ex.queueDeadline = self.now + cluster.queueTimeout
        self.worker.waiting.append(ex)
    }

    /// Called by the worker for a queued exchange: try again, or give up at its deadline.
    func retryQueued(_ ex: Exchange, now: NIODeadline) {
        guard self.exchange === ex, ex.isQueued, !self.isClosed, let cs = ex.clusterState else {
            ex.leaveQueue()
            return
        }
        let pool = cs.pools[ex.hostIndex]
        // A protocol switch goes on a new connection: it never returns to the pool anyway, and some servers (NIO's
        // upgrader among them) only switch on the first request of a connection.
        if ex.upgradeProtocol == nil, let conn = pool.lease() {
            ex.leaveQueue()
            ex.usedReusedConnection = true
            self.attach(conn, ex)
        } else if pool.reserveConnection() {
            ex.leaveQueue()
            ex.usedReusedConnection = false
            self.connect(ex, pool: pool)
        } else if let deadline = ex.queueDeadline, now >= deadline {
            ex.leaveQueue()
            self.overflow(ex, cs.cluster, "queue_timeout")
        } else {
            self.worker.waiting.append(ex)
        }
    }

    func selectUpstream(_ ex: Exchange) {
        guard let cs = ex.clusterState else { return }
        let cluster = cs.cluster
        let now = Int64(self.now.uptimeNanoseconds)
        var chosen: Int?
        if let sticky = ex.stickyHost, !ex.triedHosts.contains(sticky), cluster.hosts[sticky].state.isAvailable(now: now) {
            chosen = sticky
        } else {
            var view = EligibleHosts(cluster: cluster, tried: ex.triedHosts, now: now, backups: false, ignoreTried: false)
            chosen = cs.balancer.pick(view, hash: ex.hashKey, using: &self.worker.rng)
            if chosen == nil && cluster.hasBackups {
                // Backups only when no primary is available (nginx `backup`).
                view.backups = true
                chosen = cs.balancer.pick(view, hash: ex.hashKey, using: &self.worker.rng)
            }
            if chosen == nil && ex.retries > 0 {
                // Never the same host while another is available; when none is, the same host may be tried again.
                view = EligibleHosts(cluster: cluster, tried: [], now: now, backups: false, ignoreTried: true)
                chosen = cs.balancer.pick(view, hash: ex.hashKey, using: &self.worker.rng)
            }
            if let chosen, cluster.stickyCookie != nil, ex.stickyHost != chosen {
                ex.setStickyCookie = self.stickyCookie(cluster, cluster.hosts[chosen])
            }
        }
        guard let hostIndex = chosen else {
            let error = ex.attempts == 0
                ? ProxyError(.noHealthyUpstream, source: .internal, context: "cluster \(cluster.name)")
                : (ex.error ?? ProxyError(.connectFailed, source: .upstream))
            if ex.attempts == 0 {
                self.worker.logger.warning("no upstream available", metadata: ["cluster": "\(cluster.name)"])
            }
            return self.respondWithError(error, exchange: ex)
        }
        ex.hostIndex = hostIndex
        ex.attempts += 1
        let host = cluster.hosts[hostIndex]
        host.state.requestStarted()
        ex.countedHost = host.state
        self.acquireConnection(ex, cs)
    }

    /// Opens a new connection to the exchange's current host; its slot under `max_connections` is reserved.
    func connect(_ ex: Exchange, pool: UpstreamConnectionPool) {
        self.machine.upstreamConnecting()
        pool.connect(proxyHeader: pool.proxyProtocol.map(self.proxyProtocolHeader)).assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success(let conn):
                guard self.exchange === ex, self.machine.stage == .connecting, !self.isClosed else {
                    // The client went away while we connected: keep the connection for the next request.
                    pool.release(conn, reusable: true)
                    return
                }
                self.attach(conn, ex)
            case .failure(let error):
                guard self.exchange === ex, self.machine.stage == .connecting, !self.isClosed else { return }
                let kind = Self.classifyConnectError(error)
                self.worker.logger.warning(
                    "upstream connect failed",
                    metadata: ["cluster": "\(ex.clusterName ?? "-")", "host": "\(pool.address)", "reason": "\(kind)", "error": "\(error)"]
                )
                self.tryFailed(ex, .connectFailure, ProxyError(kind, source: .upstream, context: "\(pool.address): \(error)"))
            }
        }
    }

    /// What kind of connect failure an error is, by its type and errno (never its text): a timeout, a refusal
    /// (every address refused), or another failure (unreachable, DNS, TLS).
    static func classifyConnectError(_ error: any Error) -> ProxyError.Kind {
        if let channelError = error as? ChannelError, case .connectTimeout = channelError { return .connectTimeout }
        if let io = error as? IOError { return io.errnoCode == ECONNREFUSED ? .connectRefused : .connectFailed }
        if let all = error as? NIOConnectionError {
            // NIO tried each resolved address (happy eyeballs); each failure is classified on its own.
            let kinds = all.connectionErrors.map { Self.classifyConnectError($0.error) }
            if !kinds.isEmpty && kinds.allSatisfy({ $0 == .connectRefused }) { return .connectRefused }
            if kinds.contains(.connectTimeout) { return .connectTimeout }
        }
        return .connectFailed
    }

    /// Whether a failure of this kind would be retried now (used before dropping a retryable response).
    func canRetry(_ ex: Exchange, _ condition: RetryCondition) -> Bool {
        guard let cluster = ex.clusterState?.cluster else { return false }
        return cluster.retry.shouldRetry(
            condition,
            retriesSoFar: ex.retries,
            idempotent: ex.isIdempotent,
            responseStarted: self.machine.responseStarted,
            replayable: ex.bodyPartsSentUpstream >= 0,
            budgetAllows: true
        )
    }

    /// A try failed before any response byte went downstream: count it against the host, then retry elsewhere
    /// if the cluster's policy allows, or answer with `error`.
    func tryFailed(_ ex: Exchange, _ condition: RetryCondition, _ error: ProxyError, recordFailure: Bool = true) {
        guard let cs = ex.clusterState else { return self.respondWithError(error, exchange: ex) }
        let cluster = cs.cluster
        if let m = self.worker.metrics {
            let slot = m.cluster(cluster.metricSlot)
            if condition == .connectFailure { m.clusters[slot].connectFailures += 1 }
            if condition == .timeout { m.clusters[slot].timeouts += 1 }
        }
        ex.error = error
        self.machine.upstreamFailed()
        if recordFailure { self.recordOutcome(ex, failed: true, reason: error.kind.description) }
        ex.releaseHost()
        ex.triedHosts.insert(ex.hostIndex)
        if ex.holdsRetrySlot {
            cluster.retryBudget.retryFinished()
            ex.holdsRetrySlot = false
        }
        let policy = cluster.retry
        let replayable = ex.bodyPartsSentUpstream >= 0
        guard policy.shouldRetry(condition, retriesSoFar: ex.retries, idempotent: ex.isIdempotent, responseStarted: self.machine.responseStarted, replayable: replayable, budgetAllows: true) else {
            return self.respondWithError(error, exchange: ex)
        }
        if condition != .connectFailure {
            guard cluster.retryBudget.tryStartRetry(percent: policy.budgetPercent) else {
                self.worker.logger.info("retry budget exhausted", metadata: ["cluster": "\(cluster.name)"])
                return self.respondWithError(error, exchange: ex)
            }
            ex.holdsRetrySlot = true
        }
        ex.retries += 1
        if let m = self.worker.metrics { m.clusters[m.cluster(cluster.metricSlot)].retries += 1 }
        let delay = policy.backoff(retry: ex.retries - 1, using: &self.worker.rng)
        let resend = { [self] in
            guard self.exchange === ex, self.machine.stage == .connecting, !self.isClosed else { return }
            self.machine.retryStarted()
            self.selectUpstream(ex)
        }
        if delay.nanoseconds <= 0 {
            resend()
        } else {
            self.worker.eventLoop.assumeIsolated().scheduleTask(in: delay, resend)
        }
    }

    /// Passive health (outlier detection): one outcome of a request to the exchange's current host.
    /// `reason` is only formatted when the host is ejected (this runs for every response).
    func recordOutcome(_ ex: Exchange, failed: Bool, reason: @autoclosure () -> String) {
        guard let cluster = ex.clusterState?.cluster, cluster.outlier != nil, ex.hostIndex >= 0 else { return }
        let host = cluster.hosts[ex.hostIndex]
        guard failed else {
            host.state.recordSuccess()
            return
        }
        let failures = host.state.recordFailure()
        guard let detector = cluster.outlier else { return }
        let now = Int64(self.now.uptimeNanoseconds)
        switch detector.decide(
            failures: failures,
            previousEjections: host.state.recentEjections(now: now, quiet: detector.baseEjectionNanos * 10),
            ejectedNow: cluster.ejectedCount(now: now),
            hostCount: cluster.hosts.count,
            now: now
        ) {
        case .none:
            break
        case .eject(let until):
            host.state.eject(until: until)
            if let m = self.worker.metrics { m.clusters[m.cluster(cluster.metricSlot)].ejections += 1 }
            self.worker.logger.warning(
                "host ejected",
                metadata: [
                    "cluster": "\(cluster.name)", "host": "\(host.address)", "reason": "\(failures) consecutive failures, last: \(reason())",
                    "for": "\(ConfigDuration(nanoseconds: until - now))",
                ]
            )
        case .refusedByMaxPercent:
            break
        }
    }

    private func stickyCookie(_ cluster: Cluster, _ host: UpstreamHost) -> String {
        var cookie = "\(cluster.stickyCookie ?? "portico_sticky")=\(host.stickyID); Path=/; HttpOnly; SameSite=Lax"
        if let maxAge = cluster.stickyMaxAge { cookie += "; Max-Age=\(maxAge)" }
        return cookie
    }
}

/// The engine's view of a cluster's hosts for one pick: shared host state plus this request's tried hosts.
struct EligibleHosts: BalancerHosts {
    let cluster: Cluster
    let tried: Set<Int>
    let now: Int64
    var backups: Bool
    let ignoreTried: Bool

    init(cluster: Cluster, tried: Set<Int>, now: Int64, backups: Bool, ignoreTried: Bool) {
        self.cluster = cluster
        self.tried = tried
        self.now = now
        self.backups = backups
        self.ignoreTried = ignoreTried
    }

    var count: Int { self.cluster.hosts.count }

    func isEligible(_ index: Int) -> Bool {
        let host = self.cluster.hosts[index]
        guard host.isBackup == self.backups else { return false }
        if !self.ignoreTried && !self.tried.isEmpty && self.tried.contains(index) { return false }
        return host.state.isAvailable(now: self.now)
    }

    func weight(_ index: Int) -> Int {
        let host = self.cluster.hosts[index]
        return host.state.effectiveWeight(host.weight, window: self.cluster.slowStartNanos, now: self.now)
    }

    func inFlight(_ index: Int) -> Int { self.cluster.hosts[index].state.inFlight }
    func latency(_ index: Int) -> Int64 { self.cluster.hosts[index].state.latency }
}
