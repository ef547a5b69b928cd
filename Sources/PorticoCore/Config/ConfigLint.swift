//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Warnings for a valid config that probably does not do what its author meant (`portico check`): routes that
/// can never match, clusters no route uses, listeners no route can serve. Pure; the config still loads.
public enum ConfigLint {
    /// The warnings, placed on their lines when `text` is the config's source.
    public static func warnings(_ validated: ValidatedConfig, text: String? = nil, file: String? = nil) -> [ConfigError] {
        let c = validated.config
        var out: [ConfigError] = []
        func warn(_ path: String, _ message: String) { out.append(ConfigError(file: file, path: path, message: message)) }

        let routes = c.routes.enumerated().map { Route(index: $0, config: $1, clusterIndex: Self.clusterIndex(c)) }
        for (i, b) in routes.enumerated() {
            if let (j, _) = routes.enumerated().first(where: { $0.offset != i && Self.shadows($0.element, b) }) {
                warn("routes[\(i)]", "can never match: every request it matches is taken by routes[\(j)] (\(routes[j].name)), which comes first")
            }
        }
        let used = Set(c.routes.compactMap(\.cluster))
        for (i, cluster) in (c.clusters ?? []).enumerated() where !used.contains(cluster.name) {
            warn("clusters[\(i)]", "cluster \"\(cluster.name)\" is used by no route")
        }
        for (i, l) in c.listeners.enumerated() {
            let served = c.routes.contains { r in r.match?.listeners.map { $0.contains(l.name) } ?? true }
            if !served { warn("listeners[\(i)]", "listener \"\(l.name)\" has no route (every route is limited to other listeners): it answers 404") }
        }
        guard let text else { return out }
        let positions = ConfigDecoder().decodePartially(PorticoConfig.self, from: text, file: file).positions
        return out.map { positions.locate($0) }
    }

    /// The warnings for the config file at `path` (already loaded as `validated`).
    public static func warnings(_ validated: ValidatedConfig, path: String) -> [ConfigError] {
        let text = try? ConfigLoader.readFile(path).get()
        return self.warnings(validated, text: text, file: path)
    }

    private static func clusterIndex(_ c: PorticoConfig) -> [String: Int] {
        Dictionary((c.clusters ?? []).enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Whether `a` takes every request `b` matches, and is chosen before it (RoutingTable's order: host, path,
    /// methods, header conditions, then config order). Only the cases this can decide for sure: `a` has the same
    /// hosts as `b` (or neither has any).
    static func shadows(_ a: Route, _ b: Route) -> Bool {
        guard Set(a.hosts) == Set(b.hosts) else { return false }
        // a covers b's paths
        switch (a.path, b.path) {
        case (.any, _): break
        case (.prefix(let p), .prefix(let q)): guard q.hasPrefix(p) else { return false }
        case (.prefix(let p), .exact(let q)): guard q.hasPrefix(p) else { return false }
        case (.exact(let p), .exact(let q)): guard p == q else { return false }
        default: return false
        }
        // a's other conditions hold whenever b's do
        if !a.methods.isEmpty && !(!b.methods.isEmpty && b.methods.allSatisfy { a.methods.contains($0) }) { return false }
        if !Set(a.headers).isSubset(of: Set(b.headers)) { return false }
        if !a.listeners.isEmpty && !(!b.listeners.isEmpty && Set(b.listeners).isSubset(of: Set(a.listeners))) { return false }
        // and a comes first
        let sa = a.specificity(forHost: a.hosts.first), sb = b.specificity(forHost: b.hosts.first)
        return sa > sb || (sa == sb && a.index < b.index)
    }
}
