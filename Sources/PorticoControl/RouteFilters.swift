//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import PorticoCompression
import PorticoCore

/// The filters a route's config adds to its chain (`RoutingTable.compile(routeFilters:)`), in the order they run:
/// after the global forwarding filter, before the route's header rules and its fixed response or redirect.
///
/// Order matters: tracing first (so a cache hit has its span too), then IP rules, rate limits, auth, then the cache, so it looks up what the client asked and stores what the origin sent;
/// compression after it, so stored and fresh responses are compressed alike on the way out.
struct RouteFilters {
    let cacheStore: CacheStore?
    /// `forwarding.trusted_proxies`, for the client address of `ip_rules`.
    var trustedProxies: [CIDR] = []
    /// The tracing filter, first in every chain, when `tracing` is configured.
    var tracing: (any ProxyFilter)? = nil

    /// The auth filter of each distinct `auth` config (`AuthService.prepare`).
    var auth: [AuthConfig: any ProxyFilter] = [:]

    /// Rate limiters outlive a reload while the route's limits stay the same (their counts go on).
    var rateLimitFilters: [RouteKey: RateLimitFilter] = [:]
    struct RouteKey: Hashable {
        var route: String
        var limits: [RateLimitConfig]
        var trustedProxies: [String]
    }

    func rateLimits(_ route: RouteConfig, _ limits: [RateLimitConfig]) -> RateLimitFilter {
        let name = route.name ?? "-"
        return self.rateLimitFilters.first { $0.key.route == name && $0.key.limits == limits }?.value
            ?? RateLimitFilter(route: name, configs: limits, trustedProxies: self.trustedProxies)
    }

    func make(_ route: RouteConfig) -> [any ProxyFilter] {
        var filters: [any ProxyFilter] = []
        if let tracing = self.tracing { filters.append(tracing) }
        if let rules = route.ipRules.map(IPRules.init), !rules.isEmpty {
            // Before the cache: a refused client gets no stored response either.
            filters.append(IPRulesFilter(rules: rules, trustedProxies: self.trustedProxies))
        }
        let limits = route.rateLimits.flatMap { $0.isEmpty ? nil : self.rateLimits(route, $0) }
        // Before the cache too: hits count against the limit. Before auth (nginx's order: limit_req before
        // auth_basic), so a flood of guesses is refused before it costs a bcrypt; after it only when a limit is
        // keyed by who the client is.
        if let limits, !limits.needsIdentity { filters.append(limits) }
        if let auth = route.auth, let filter = self.auth[auth] {
            // Before the cache, so only a permitted client gets a stored response.
            filters.append(filter)
        }
        if let limits, limits.needsIdentity { filters.append(limits) }
        if let cache = route.cache, let store = self.cacheStore {
            filters.append(CacheFilter(store: store, config: cache, cluster: route.cluster))
        }
        if let compression = route.compression {
            filters.append(CompressionFilter(policy: CompressionPolicy(compression)))
        }
        return filters
    }
}
