//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import PorticoCore

/// The counters one worker keeps: plain integers in arrays indexed by `MetricSlots`, touched only on the worker's
/// EventLoop. A request costs a few array stores: no atomic, no lock, no dictionary lookup. A scrape copies each
/// worker's counters on its own loop (`ProxyEngine.metricsSnapshot`) and sums them.
final class WorkerMetrics {
    var routes: [RouteCounters] = []
    var clusters: [ClusterCounters] = []
    var listeners: [ListenerCounters] = []

    /// Records one finished request (called once, from the log phase).
    func request(route: Int, listener: Int, cluster: Int?, status: Int, durationNanos: Int64, upstreamNanos: Int64?,
                 bytesIn: Int, bytesOut: Int, cache: CacheOutcome?, rateLimited: Bool = false, ipDenied: Bool = false, authFailed: Bool = false) {
        let statusClass = (100...599).contains(status) ? status / 100 - 1 : 5
        Self.grow(&self.routes, to: route)
        self.routes[route].requests[statusClass] += 1
        self.routes[route].duration.observe(durationNanos)
        self.routes[route].bytesIn += bytesIn
        self.routes[route].bytesOut += bytesOut
        if let cache { self.routes[route].cache[Int(cache.rawValue)] += 1 }
        if rateLimited { self.routes[route].rateLimited += 1 }
        if ipDenied { self.routes[route].ipDenied += 1 }
        if authFailed { self.routes[route].authFailed += 1 }
        Self.grow(&self.listeners, to: listener)
        self.listeners[listener].requests[statusClass] += 1
        if let cluster, let upstreamNanos {
            Self.grow(&self.clusters, to: cluster)
            self.clusters[cluster].upstreamDuration.observe(upstreamNanos)
        }
    }

    func cluster(_ slot: Int) -> Int {
        Self.grow(&self.clusters, to: slot)
        return slot
    }

    func listener(_ slot: Int) -> Int {
        Self.grow(&self.listeners, to: slot)
        return slot
    }

    @inline(__always)
    static func grow<T: ZeroCounters>(_ array: inout [T], to slot: Int) {
        while array.count <= slot { array.append(T()) }
    }

    var snapshot: MetricsSnapshot.Worker {
        MetricsSnapshot.Worker(routes: self.routes, clusters: self.clusters, listeners: self.listeners)
    }
}

protocol ZeroCounters { init() }

/// Per route: requests by status class (1xx … 5xx, then failures without a status), duration, bytes, cache.
public struct RouteCounters: ZeroCounters, Sendable {
    public var requests = [Int](repeating: 0, count: 6)
    public var duration = Histogram()
    public var bytesIn = 0
    public var bytesOut = 0
    /// By `CacheOutcome`.
    public var cache = [Int](repeating: 0, count: CacheOutcome.allCases.count)
    /// Refused by a rate limit (429) or by `ip_rules` (403).
    public var rateLimited = 0
    public var ipDenied = 0
    /// Refused by the route's `auth` (401, or 503 when too many checks wait).
    public var authFailed = 0
    public init() {}
}

/// Per cluster: upstream latency and the connection pool's and retries' work.
public struct ClusterCounters: ZeroCounters, Sendable {
    public var upstreamDuration = Histogram()
    /// New upstream connections, and requests that took a pooled one.
    public var connects = 0
    public var reused = 0
    public var connectFailures = 0
    public var retries = 0
    public var timeouts = 0
    public var ejections = 0
    public init() {}
}

/// Per listener: requests by status class, TLS handshakes by version and failures.
public struct ListenerCounters: ZeroCounters, Sendable {
    public var requests = [Int](repeating: 0, count: 6)
    /// TLS 1.2, TLS 1.3, other.
    public var tlsHandshakes = [0, 0, 0]
    public var tlsFailures = 0
    /// Connections closed at accept by the listener's `ip_rules`.
    public var deniedConnections = 0
    /// Connections closed at accept by the listener's connection caps.
    public var overLimitConnections = 0
    public init() {}
}

/// A latency histogram with fixed buckets (seconds: 1 ms … 10 s), as Prometheus wants them cumulated at scrape.
public struct Histogram: Sendable {
    public static let bounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    static let boundsNanos: [Int64] = bounds.map { Int64($0 * 1e9) }
    /// Per bucket (not cumulative), the last one for values above every bound.
    public var counts = [Int](repeating: 0, count: bounds.count + 1)
    public var sumNanos: Int64 = 0

    public init() {}

    @inline(__always)
    mutating func observe(_ nanos: Int64) {
        var i = 0
        let bounds = Self.boundsNanos
        while i < bounds.count && nanos > bounds[i] { i += 1 }
        self.counts[i] += 1
        self.sumNanos += nanos
    }

    mutating func add(_ other: Histogram) {
        for i in self.counts.indices { self.counts[i] += other.counts[i] }
        self.sumNanos += other.sumNanos
    }
}

/// Every worker's counters at one scrape, and the totals.
public struct MetricsSnapshot: Sendable {
    public struct Worker: Sendable {
        public var routes: [RouteCounters]
        public var clusters: [ClusterCounters]
        public var listeners: [ListenerCounters]
    }
    public var routes: [RouteCounters] = []
    public var clusters: [ClusterCounters] = []
    public var listeners: [ListenerCounters] = []
    public var openConnections = 0
    /// Slot names, by family.
    public var routeNames: [String] = []
    public var clusterNames: [String] = []
    public var listenerNames: [String] = []

    mutating func add(_ w: Worker) {
        WorkerMetrics.grow(&self.routes, to: w.routes.count - 1)
        for (i, r) in w.routes.enumerated() {
            for c in r.requests.indices { self.routes[i].requests[c] += r.requests[c] }
            self.routes[i].duration.add(r.duration)
            self.routes[i].bytesIn += r.bytesIn
            self.routes[i].bytesOut += r.bytesOut
            for c in r.cache.indices { self.routes[i].cache[c] += r.cache[c] }
            self.routes[i].rateLimited += r.rateLimited
            self.routes[i].ipDenied += r.ipDenied
            self.routes[i].authFailed += r.authFailed
        }
        WorkerMetrics.grow(&self.clusters, to: w.clusters.count - 1)
        for (i, c) in w.clusters.enumerated() {
            self.clusters[i].upstreamDuration.add(c.upstreamDuration)
            self.clusters[i].connects += c.connects
            self.clusters[i].reused += c.reused
            self.clusters[i].connectFailures += c.connectFailures
            self.clusters[i].retries += c.retries
            self.clusters[i].timeouts += c.timeouts
            self.clusters[i].ejections += c.ejections
        }
        WorkerMetrics.grow(&self.listeners, to: w.listeners.count - 1)
        for (i, l) in w.listeners.enumerated() {
            for c in l.requests.indices { self.listeners[i].requests[c] += l.requests[c] }
            for v in l.tlsHandshakes.indices { self.listeners[i].tlsHandshakes[v] += l.tlsHandshakes[v] }
            self.listeners[i].tlsFailures += l.tlsFailures
            self.listeners[i].deniedConnections += l.deniedConnections
            self.listeners[i].overLimitConnections += l.overLimitConnections
        }
    }
}
