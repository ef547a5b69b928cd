//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOHTTP1

/// A compiled route. Immutable and shared by every worker; an in-flight request keeps the `Route` it matched
/// even after a reload publishes a new table (RCU).
public final class Route: Sendable {
    public let index: Int
    public let name: String
    public let hosts: [HostPattern]
    public let path: PathCondition
    public let methods: [HTTPMethod]
    public let headers: [HeaderCondition]
    /// Listener names this route is limited to (empty: all).
    public let listeners: [String]
    public let action: RouteAction
    public let hostHeader: HostHeaderMode
    /// The route's filters, one flat chain compiled with the table: the global ones (forwarding fields), the
    /// filters its config adds (cache, compression), its header rules, then its fixed response or redirect (which
    /// answers every request). A listener's own filters run before these (`ListenerSettings.filters`).
    public let filters: FilterChain
    /// Where this route counts in the workers' metrics (`MetricSlots`).
    public let metricSlot: Int
    /// `max_body_bytes` (0: none beyond the listener's).
    public let maxBodyBytes: Int
    /// The route's own `error_pages`, by status.
    public let errorPages: [Int: ErrorPage]

    public enum PathCondition: Sendable, Hashable {
        case any
        case exact(String)
        case prefix(String)
    }

    public struct HeaderCondition: Sendable, Hashable {
        public var name: String
        public enum Test: Sendable, Hashable {
            case present
            case absent
            case equals(String)
        }
        public var test: Test
    }

    init(index: Int, config: RouteConfig, clusterIndex: [String: Int], globalFilters: [any ProxyFilter] = [], extraFilters: [any ProxyFilter] = [],
         metricSlots: MetricSlots? = nil, errorPages: [Int: ErrorPage] = [:]) {
        self.errorPages = errorPages
        self.index = index
        self.name = config.name ?? "route-\(index)"
        self.metricSlot = metricSlots?.slot(.route, self.name) ?? 0
        self.maxBodyBytes = config.maxBodyBytes?.bytes ?? 0
        self.hosts = (config.match?.hosts ?? []).compactMap(HostPattern.init(parsing:))
        if let exact = config.match?.path {
            self.path = .exact(exact)
        } else if let prefix = config.match?.pathPrefix, prefix != "/" {
            self.path = .prefix(prefix)
        } else {
            self.path = .any
        }
        self.methods = (config.match?.methods ?? []).map { HTTPMethod(rawValue: $0) }
        self.listeners = config.match?.listeners ?? []
        self.headers = (config.match?.headers ?? []).map { h in
            let test: HeaderCondition.Test
            if let v = h.value {
                test = .equals(v)
            } else if h.present == false {
                test = .absent
            } else {
                test = .present
            }
            return HeaderCondition(name: h.name, test: test)
        }
        if let cluster = config.cluster {
            self.action = .proxy(cluster: clusterIndex[cluster]!)
        } else if let r = config.redirect {
            self.action = .redirect(status: r.status ?? 301, target: r.target)
        } else {
            let f = config.respond ?? FixedResponseConfig()
            let body = f.body ?? ""
            self.action = .respond(
                status: f.status ?? 200,
                body: body,
                contentType: f.contentType ?? (body.isEmpty ? nil : "text/plain; charset=utf-8")
            )
        }
        self.hostHeader = config.hostHeader ?? .keep
        // The config's filters (cache, compression) come before the header rules: the cache keys and stores what
        // the client and the origin sent, and the route's own rules still have the last word on every response,
        // stored or not.
        var filters: [any ProxyFilter] = globalFilters
        filters += extraFilters
        let rules = HeaderRulesFilter(request: HeaderRules(config.requestHeaders), response: HeaderRules(config.responseHeaders))
        if !rules.phases.isEmpty { filters.append(rules) }
        switch self.action {
        case .proxy: break
        case .redirect(let status, let target): filters.append(RedirectFilter(status: status, target: target))
        case .respond(let status, let body, let contentType): filters.append(FixedResponseFilter(status: status, body: body, contentType: contentType))
        }
        self.filters = FilterChain(filters)
    }

    /// Ordering key, most specific first: host, then path, then methods, then header conditions; ties keep
    /// config order. See `RoutingTable` for the documented order.
    func specificity(forHost pattern: HostPattern?) -> (Int, Int, Int, Int) {
        let host = pattern?.specificity ?? 0
        let path: Int
        switch self.path {
        case .exact(let p): path = 1_000_000 + p.utf8.count
        case .prefix(let p): path = p.utf8.count
        case .any: path = 0
        }
        return (host, path, self.methods.isEmpty ? 0 : 1, self.headers.count + (self.listeners.isEmpty ? 0 : 1))
    }

    /// Whether the non-host conditions hold.
    func matches(path: Substring, method: HTTPMethod, headers: HTTPHeaders, listener: String) -> Bool {
        if !self.listeners.isEmpty && !self.listeners.contains(listener) { return false }
        switch self.path {
        case .any: break
        case .exact(let p): if path != p[...] { return false }
        case .prefix(let p): if !path.hasPrefix(p) { return false }
        }
        if !self.methods.isEmpty && !self.methods.contains(method) { return false }
        for h in self.headers {
            switch h.test {
            case .present: if !headers.contains(name: h.name) { return false }
            case .absent: if headers.contains(name: h.name) { return false }
            case .equals(let v): if !headers[h.name].contains(v) { return false }
            }
        }
        return true
    }
}

/// What a route does with a request it matched.
public enum RouteAction: Sendable, Hashable {
    case proxy(cluster: Int)
    case redirect(status: Int, target: String)
    case respond(status: Int, body: String, contentType: String?)
}
