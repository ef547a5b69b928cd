//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import PorticoCore
import PorticoEngine

/// Builds the Prometheus text exposition format (0.0.4): `# HELP`, `# TYPE`, then samples.
struct MetricsText {
    private(set) var text = ""

    mutating func family(_ name: String, _ type: String, _ help: String) {
        self.text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    mutating func sample(_ name: String, _ labels: [(String, String)], _ value: Double) {
        self.text += name
        if !labels.isEmpty {
            self.text += "{" + labels.map { "\($0.0)=\"\(Self.escape($0.1))\"" }.joined(separator: ",") + "}"
        }
        self.text += " " + Self.format(value) + "\n"
    }

    /// `_bucket` (cumulative, with `le`), `_sum` and `_count` of one histogram.
    mutating func histogram(_ name: String, _ labels: [(String, String)], _ h: Histogram) {
        var cumulative = 0
        for (i, bound) in Histogram.bounds.enumerated() {
            cumulative += h.counts[i]
            self.sample(name + "_bucket", labels + [("le", Self.format(bound))], Double(cumulative))
        }
        cumulative += h.counts[Histogram.bounds.count]
        self.sample(name + "_bucket", labels + [("le", "+Inf")], Double(cumulative))
        self.sample(name + "_sum", labels, Double(h.sumNanos) / 1e9)
        self.sample(name + "_count", labels, Double(cumulative))
    }

    /// A counter family with one label whose values are slot names: the non-zero counts, one sample each.
    mutating func counters<C>(_ name: String, _ help: String, label: String, _ slots: [C], _ names: [String], _ value: (C) -> Int) {
        self.family(name, "counter", help)
        for (i, c) in slots.enumerated() where value(c) > 0 {
            self.sample(name, [(label, i < names.count ? names[i] : "other")], Double(value(c)))
        }
    }

    static func escape(_ value: String) -> String {
        var out = ""
        for c in value {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }

    static func format(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    /// Bounds the series of one label (hosts): past `cap` distinct values, the rest report as `other`.
    struct SeriesCap {
        var cap = 500
        private var seen: Set<String> = []
        mutating func admit(_ value: String) -> String {
            if self.seen.contains(value) { return value }
            guard self.seen.count < self.cap else { return "other" }
            self.seen.insert(value)
            return value
        }
    }
}

/// The request, upstream, TLS and cache families from the workers' summed counters.
enum WorkerMetricsRenderer {
    static let classes = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"]

    static func render(_ s: MetricsSnapshot, routeClusters: [String: String], into out: inout MetricsText) {
        func name(_ names: [String], _ i: Int) -> String { i < names.count ? names[i] : "other" }

        out.family("portico_requests_total", "counter", "Requests by route, its cluster, and status class (none: no response).")
        for (i, r) in s.routes.enumerated() {
            let route = name(s.routeNames, i)
            for (c, n) in r.requests.enumerated() where n > 0 {
                out.sample("portico_requests_total", [("route", route), ("cluster", routeClusters[route] ?? ""), ("code", Self.classes[c])], Double(n))
            }
        }
        out.family("portico_listener_requests_total", "counter", "Requests by listener and status class.")
        for (i, l) in s.listeners.enumerated() {
            for (c, n) in l.requests.enumerated() where n > 0 {
                out.sample("portico_listener_requests_total", [("listener", name(s.listenerNames, i)), ("code", Self.classes[c])], Double(n))
            }
        }
        out.family("portico_request_duration_seconds", "histogram", "Time from the request head to the end of the response, by route.")
        for (i, r) in s.routes.enumerated() where r.duration.counts.contains(where: { $0 > 0 }) {
            out.histogram("portico_request_duration_seconds", [("route", name(s.routeNames, i))], r.duration)
        }
        out.family("portico_request_body_bytes_total", "counter", "Request body bytes received, by route.")
        for (i, r) in s.routes.enumerated() where r.requests.contains(where: { $0 > 0 }) {
            out.sample("portico_request_body_bytes_total", [("route", name(s.routeNames, i))], Double(r.bytesIn))
        }
        out.family("portico_response_body_bytes_total", "counter", "Response body bytes sent, by route.")
        for (i, r) in s.routes.enumerated() where r.requests.contains(where: { $0 > 0 }) {
            out.sample("portico_response_body_bytes_total", [("route", name(s.routeNames, i))], Double(r.bytesOut))
        }
        out.family("portico_cache_requests_total", "counter", "Requests on caching routes by what the cache did (hit, miss, revalidated, stale_on_error, bypass).")
        for (i, r) in s.routes.enumerated() {
            for outcome in CacheOutcomeLabels.all where r.cache[outcome.index] > 0 {
                out.sample("portico_cache_requests_total", [("route", name(s.routeNames, i)), ("outcome", outcome.label)], Double(r.cache[outcome.index]))
            }
        }
        out.counters("portico_rate_limited_total", "Requests refused by a route's rate limits (429).", label: "route", s.routes, s.routeNames) { $0.rateLimited }
        out.counters("portico_ip_denied_total", "Requests refused by a route's ip_rules (403).", label: "route", s.routes, s.routeNames) { $0.ipDenied }
        out.counters("portico_auth_failures_total", "Requests refused by a route's auth (401, or 503 when too many checks wait).", label: "route", s.routes, s.routeNames) { $0.authFailed }
        out.family("portico_upstream_duration_seconds", "histogram", "Time from sending a request upstream to the end of its response, by cluster.")
        for (i, c) in s.clusters.enumerated() where c.upstreamDuration.counts.contains(where: { $0 > 0 }) {
            out.histogram("portico_upstream_duration_seconds", [("cluster", name(s.clusterNames, i))], c.upstreamDuration)
        }
        let counters: [(String, String, (ClusterCounters) -> Int)] = [
            ("portico_upstream_connects_total", "New upstream connections opened.", { $0.connects }),
            ("portico_upstream_connection_reuses_total", "Requests sent on a pooled connection.", { $0.reused }),
            ("portico_upstream_connect_failures_total", "Upstream connections that could not be made.", { $0.connectFailures }),
            ("portico_upstream_retries_total", "Requests retried on another try.", { $0.retries }),
            ("portico_upstream_timeouts_total", "Upstream response timeouts.", { $0.timeouts }),
            ("portico_upstream_ejections_total", "Hosts ejected by outlier detection.", { $0.ejections }),
        ]
        for (metric, help, value) in counters {
            out.family(metric, "counter", help + " By cluster.")
            for (i, c) in s.clusters.enumerated() { out.sample(metric, [("cluster", name(s.clusterNames, i))], Double(value(c))) }
        }
        out.family("portico_upstream_pool_reuse_ratio", "gauge", "Share of requests sent on a pooled connection, by cluster.")
        for (i, c) in s.clusters.enumerated() where c.connects + c.reused > 0 {
            out.sample("portico_upstream_pool_reuse_ratio", [("cluster", name(s.clusterNames, i))], Double(c.reused) / Double(c.connects + c.reused))
        }
        out.family("portico_tls_handshakes_total", "counter", "Completed TLS handshakes by listener and version.")
        for (i, l) in s.listeners.enumerated() {
            for (v, n) in l.tlsHandshakes.enumerated() where n > 0 {
                out.sample("portico_tls_handshakes_total", [("listener", name(s.listenerNames, i)), ("version", ["TLSv1.2", "TLSv1.3", "other"][v])], Double(n))
            }
        }
        out.counters("portico_listener_connections_denied_total", "Connections closed at accept by the listener's ip_rules.",
                     label: "listener", s.listeners, s.listenerNames) { $0.deniedConnections }
        out.counters("portico_listener_connections_over_limit_total", "Connections closed at accept by the listener's connection caps.",
                     label: "listener", s.listeners, s.listenerNames) { $0.overLimitConnections }
        out.family("portico_tls_handshake_failures_total", "counter", "TLS handshakes that failed or timed out, by listener.")
        for (i, l) in s.listeners.enumerated() where l.tlsFailures > 0 {
            out.sample("portico_tls_handshake_failures_total", [("listener", name(s.listenerNames, i))], Double(l.tlsFailures))
        }
    }
}

/// `CacheOutcome` cases as metric labels with their counter index.
enum CacheOutcomeLabels {
    struct Entry { var index: Int; var label: String }
    static let all: [Entry] = PorticoCore.CacheOutcome.allCases.map { Entry(index: Int($0.rawValue), label: $0.label) }
}
