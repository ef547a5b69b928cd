//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import PorticoCore
import PorticoEngine

/// `GET /metrics`: the Prometheus text format (version 0.0.4), every name prefixed `portico_`.
///
/// Written here rather than through swift-prometheus's registry: Portico's counters are plain integers owned by
/// each worker (no shared atomic or lock per request), summed when scraped; a registry would need every
/// observation recorded into it again. The format is a few lines per family.
enum Metrics {
    static func render(server: ProxyServer) async -> String {
        var out = MetricsText()
        let engine = server.engine
        let snapshot = await engine.metricsSnapshot()
        out.family("portico_downstream_connections", "gauge", "Open downstream connections and HTTP/2 streams.")
        out.sample("portico_downstream_connections", [], Double(snapshot.openConnections))
        let table = await server.table
        var routeClusters: [String: String] = [:]
        for r in table?.routes ?? [] {
            if case .proxy(let c) = r.action, let t = table { routeClusters[r.name] = t.clusters[c].name }
        }
        WorkerMetricsRenderer.render(snapshot, routeClusters: routeClusters, into: &out)

        out.family("portico_config_reloads_total", "counter", "Config changes applied (SIGHUP or admin API).")
        out.sample("portico_config_reloads_total", [], Double(await server.reloads))
        out.family("portico_config_reload_failures_total", "counter", "Config changes refused (invalid, or a listener could not bind).")
        out.sample("portico_config_reload_failures_total", [], Double(await server.reloadFailures))
        out.family("portico_config_generation", "gauge", "The running config's generation.")
        out.sample("portico_config_generation", [], Double(await engine.generation))
        out.family("portico_overloaded", "gauge", "1 while overloaded (not accepting connections, shedding idle ones).")
        out.sample("portico_overloaded", [], await server.overload.overloaded ? 1 : 0)
        out.family("portico_overload_episodes_total", "counter", "Times Portico entered overload.")
        out.sample("portico_overload_episodes_total", [], Double(await server.overload.episodes))

        if let table {
            let now = Int64(NIODeadline.now().uptimeNanoseconds)
            // Each family's samples right after its own # TYPE line (text format 0.0.4).
            var hosts = MetricsText.SeriesCap()
            let hostFamilies: [(String, String, (UpstreamHost) -> Double)] = [
                ("portico_upstream_host_available", "1 when the host takes requests (healthy, not ejected, not drained).", { $0.state.isAvailable(now: now) ? 1 : 0 }),
                ("portico_upstream_host_in_flight", "Requests in flight to the host.", { Double($0.state.inFlight) }),
                ("portico_upstream_host_healthy", "Active health: 1 healthy, 0 unhealthy.", { $0.state.isActiveHealthy ? 1 : 0 }),
                ("portico_upstream_host_ejected", "Passive health: 1 while ejected by outlier detection.", { $0.state.isEjected(now: now) ? 1 : 0 }),
            ]
            for (name, help, value) in hostFamilies {
                out.family(name, "gauge", help)
                for c in table.clusters {
                    for h in c.hosts { out.sample(name, [("cluster", c.name), ("host", hosts.admit(h.address.description))], value(h)) }
                }
            }
            out.family("portico_circuit_breaker_overflows_total", "counter", "Requests refused by a cluster's circuit breaker.")
            for c in table.clusters { out.sample("portico_circuit_breaker_overflows_total", [("cluster", c.name)], Double(c.breaker.overflows)) }
            out.family("portico_upstream_health_changes_total", "counter", "Times active health checks changed a host's health, by cluster.")
            for c in table.clusters {
                out.sample("portico_upstream_health_changes_total", [("cluster", c.name)], Double(c.hosts.reduce(0) { $0 + $1.state.healthChanges }))
            }
        }
        if let store = await server.cacheStore {
            let usage = store.usage
            out.family("portico_cache_stored_responses", "gauge", "Responses in the cache.")
            out.sample("portico_cache_stored_responses", [], Double(usage.responses))
            out.family("portico_cache_stored_bytes", "gauge", "Bytes the cache holds against its budget.")
            out.sample("portico_cache_stored_bytes", [], Double(usage.bytes))
            if let disk = store.disk {
                let d = disk.usage
                out.family("portico_cache_disk_keys", "gauge", "URLs (primary keys) the cache's disk tier holds.")
                out.sample("portico_cache_disk_keys", [], Double(d.keys))
                out.family("portico_cache_disk_bytes", "gauge", "Bytes of the cache's disk tier files.")
                out.sample("portico_cache_disk_bytes", [], Double(d.bytes))
            }
        }
        return out.text
    }
}
