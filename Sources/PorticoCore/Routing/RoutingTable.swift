//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOHTTP1

/// The immutable, compiled form of a `PorticoConfig`: routes, clusters and the settings the data plane reads.
/// Built once per config generation on the control plane, then published to every worker; never mutated.
///
/// ## Route order (most specific wins)
/// 1. Host: an exact host name, then wildcards from the longest suffix to the shortest, then routes with no host.
/// 2. Path: an exact `path`, then `path_prefix` from longest to shortest, then no path condition.
/// 3. Routes with `methods` before routes without.
/// 4. Routes with more header (and listener) conditions first.
/// 5. Config order.
///
/// Matching does one dictionary lookup for the host (exact names, then each parent domain for wildcards) and
/// then scans a precomputed, pre-sorted candidate list; nothing is sorted or allocated per request.
public final class RoutingTable: Sendable {
    public let generation: UInt64
    public let config: PorticoConfig
    public let routes: [Route]
    public let clusters: [Cluster]
    public let forwarding: ForwardingPolicy
    /// The global `error_pages`, loaded.
    public let errorPages: [Int: ErrorPage]

    private let exactHosts: [String: [Route]]
    private let wildcardHosts: [String: [Route]]
    private let anyHost: [Route]
    private let hasWildcards: Bool
    /// Where routes, clusters and listeners count in the workers' metrics.
    public let metricSlots: MetricSlots

    /// - Parameters:
    ///   - registry: where host state lives across generations; pass the same one to every compile of a process.
    ///   - now: `NIODeadline.now().uptimeNanoseconds`, when new hosts start their slow start.
    ///   - routeFilters: the filters a route's config asks for beyond the built-in ones; they run after its header
    ///     rules and before its fixed response or redirect. Where later features (cache, compression,
    ///     authentication, rate limits) plug in their filters.
    public static func compile(
        _ validated: ValidatedConfig,
        generation: UInt64,
        registry: HostRegistry = HostRegistry(),
        now: Int64 = 0,
        routeFilters: (RouteConfig) -> [any ProxyFilter] = { _ in [] },
        files: [String: [UInt8]] = [:]
    ) -> RoutingTable {
        RoutingTable(validated.config, generation: generation, registry: registry, now: now, routeFilters: routeFilters, files: files)
    }

    /// - Parameter files: the contents of the error page files, read by the control plane.
    private init(_ c: PorticoConfig, generation: UInt64, registry: HostRegistry, now: Int64, routeFilters: (RouteConfig) -> [any ProxyFilter],
                 files: [String: [UInt8]]) {
        self.errorPages = ErrorPage.compile(c.errorPages, files: files)
        self.generation = generation
        self.config = c
        let clusters = (c.clusters ?? []).enumerated().map { Cluster(index: $0, config: $1, registry: registry, now: now) }
        registry.retain(only: Set(clusters.flatMap { c in c.hosts.map { HostRegistry.HostKey(cluster: c.name, address: $0.address) } }))
        let clusterIndex = Dictionary(uniqueKeysWithValues: clusters.map { ($0.name, $0.index) })
        var forwarding = ForwardingPolicy(c.forwarding)
        for l in c.listeners {
            guard let auth = l.tls?.clientAuth else { continue }
            for name in [auth.subjectHeader, auth.fingerprintHeader].compactMap({ $0?.lowercased() }) where !forwarding.identityFields.contains(name) {
                forwarding.identityFields.append(name)
            }
        }
        let global: [any ProxyFilter] = [ForwardingFilter(forwarding)]
        let routes = c.routes.enumerated().map {
            Route(index: $0, config: $1, clusterIndex: clusterIndex, globalFilters: global, extraFilters: routeFilters($1), metricSlots: registry.metricSlots,
                  errorPages: ErrorPage.compile($1.errorPages, files: files))
        }
        self.metricSlots = registry.metricSlots
        self.routes = routes
        self.clusters = clusters
        self.forwarding = forwarding

        func sorted(_ candidates: [(Route, HostPattern?)]) -> [Route] {
            candidates.sorted { a, b in
                let sa = a.0.specificity(forHost: a.1)
                let sb = b.0.specificity(forHost: b.1)
                if sa != sb { return sa > sb }
                return a.0.index < b.0.index
            }.map(\.0)
        }
        // Candidates for a host: every route whose pattern matches it, with the pattern that matched.
        func candidates(for host: String) -> [(Route, HostPattern?)] {
            var out: [(Route, HostPattern?)] = []
            for r in routes {
                if r.hosts.isEmpty {
                    out.append((r, nil))
                } else if let best = r.hosts.filter({ $0.matches(host) }).max(by: { $0.specificity < $1.specificity }) {
                    out.append((r, best))
                }
            }
            return out
        }
        var exact: [String: [Route]] = [:]
        var wild: [String: [Route]] = [:]
        for r in routes {
            for pattern in r.hosts {
                switch pattern {
                case .exact(let name): exact[name] = sorted(candidates(for: name))
                case .wildcard(let suffix):
                    // A representative host under this suffix sees exactly the routes whose wildcards end it.
                    wild[suffix] = sorted(candidates(for: "\u{0}" + suffix).filter { _, p in
                        if case .exact = p { return false }
                        return true
                    })
                }
            }
        }
        self.exactHosts = exact
        self.wildcardHosts = wild
        self.hasWildcards = !wild.isEmpty
        self.anyHost = sorted(routes.filter { $0.hosts.isEmpty }.map { ($0, nil) })
    }

    /// The candidate routes for a normalized host (see `normalizedRequestHost`).
    public func candidates(host: String) -> [Route] {
        if let list = self.exactHosts[host] { return list }
        if self.hasWildcards {
            var suffix = Substring(host)
            while let dot = suffix.utf8.firstIndex(of: UInt8(ascii: ".")) {
                suffix = suffix[dot...]
                if let list = self.wildcardHosts[String(suffix)] { return list }
                suffix = suffix.dropFirst()
            }
        }
        return self.anyHost
    }

    /// The route for a request, or nil when none matches (the caller answers 404).
    ///
    /// - Parameters:
    ///   - host: the normalized host (`normalizedRequestHost`), empty when the request has none.
    ///   - path: the routing path (`PathNormalizer.routingPath`).
    ///   - listener: the name of the listener the request arrived on.
    public func match(host: String, path: Substring, method: HTTPMethod, headers: HTTPHeaders, listener: String = "") -> Route? {
        for route in self.candidates(host: host) where route.matches(path: path, method: method, headers: headers, listener: listener) {
            return route
        }
        return nil
    }
}
