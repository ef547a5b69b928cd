//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import PorticoCore
import PorticoEngine

/// `GET /stats`: what the dashboard draws, as cumulative counters. The page polls it and turns the differences
/// between two polls into rates, error shares and latency percentiles of the last interval.
struct DashboardStats: Encodable, Sendable {
    var generation: UInt64
    /// Seconds since the epoch when taken (the page divides counter differences by differences of this).
    var time: Double
    var openConnections: Int
    /// Upper bounds (seconds) of the latency histograms' buckets; each `buckets` array has one more, for +Inf.
    var bucketBounds: [Double]
    var listeners: [Listener]
    var routes: [Route]
    var clusters: [Cluster]
    var cache: Cache?

    struct Listener: Encodable, Sendable {
        var name: String
        var address: String
        /// By status class: 1xx, 2xx, 3xx, 4xx, 5xx, none.
        var requests: [Int]
    }

    struct Route: Encodable, Sendable {
        var name: String
        var cluster: String?
        var action: String
        var requests: [Int]
        var buckets: [Int]
        var bytesOut: Int
        var cache: [String: Int]?
    }

    struct Cluster: Encodable, Sendable {
        var name: String
        var balancer: String
        var hosts: [HostSnapshot]
        var upstreamBuckets: [Int]
        var retries: Int
        var connectFailures: Int
        var reuseRatio: Double?
    }

    struct Cache: Encodable, Sendable {
        var responses: Int
        var bytes: Int
        var maxBytes: Int
    }

    static func take(server: ProxyServer) async -> DashboardStats {
        let snapshot = await server.engine.metricsSnapshot()
        let table = await server.table
        let clusters = await server.clusterSnapshots()
        let generation = await server.engine.generation
        func slot(_ names: [String], _ name: String) -> Int? { names.firstIndex(of: name) }
        let routes: [Route] = (table?.routes ?? []).map { r in
            let counters = slot(snapshot.routeNames, r.name).flatMap { $0 < snapshot.routes.count ? snapshot.routes[$0] : nil } ?? RouteCounters()
            var cluster: String?
            let action: String
            switch r.action {
            case .proxy(let c): cluster = table?.clusters[c].name; action = "proxy"
            case .redirect: action = "redirect"
            case .respond: action = "respond"
            }
            let usesCache = r.filters.filters.contains { $0 is CacheFilter }
            return Route(
                name: r.name, cluster: cluster, action: action, requests: counters.requests, buckets: counters.duration.counts,
                bytesOut: counters.bytesOut,
                cache: usesCache ? Dictionary(uniqueKeysWithValues: CacheOutcomeLabels.all.map { ($0.label, counters.cache[$0.index]) }) : nil)
        }
        let listeners: [Listener] = (table?.config.listeners ?? []).map { l in
            let counters = slot(snapshot.listenerNames, l.name).flatMap { $0 < snapshot.listeners.count ? snapshot.listeners[$0] : nil } ?? ListenerCounters()
            return Listener(name: l.name, address: l.address, requests: counters.requests)
        }
        let clusterStats: [Cluster] = clusters.map { c in
            let counters = slot(snapshot.clusterNames, c.name).flatMap { $0 < snapshot.clusters.count ? snapshot.clusters[$0] : nil } ?? ClusterCounters()
            let sent = counters.connects + counters.reused
            return Cluster(
                name: c.name, balancer: c.balancer, hosts: c.hosts,
                upstreamBuckets: counters.upstreamDuration.counts,
                retries: counters.retries, connectFailures: counters.connectFailures,
                reuseRatio: sent > 0 ? Double(counters.reused) / Double(sent) : nil)
        }
        let cache = await server.cacheStore.map { store in
            let usage = store.usage
            return Cache(responses: usage.responses, bytes: usage.bytes, maxBytes: store.maxBytes)
        }
        return DashboardStats(
            generation: generation, time: Date().timeIntervalSince1970, openConnections: snapshot.openConnections,
            bucketBounds: Histogram.bounds, listeners: listeners, routes: routes, clusters: clusterStats, cache: cache)
    }
}
