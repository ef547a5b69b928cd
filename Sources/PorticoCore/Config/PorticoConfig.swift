//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// The whole proxy configuration: one document, the single source of truth (as in Caddy).
///
/// Written as YAML or JSON with snake_case keys and decoded strictly by `ConfigDecoder`. Optional fields are
/// optional in the document; their defaults are stated on each field and applied when the config is compiled.
/// Every field is documented with its meaning, unit and default; `portico.example.yaml` uses them all.
public struct PorticoConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// How many worker EventLoops (threads) serve traffic: `auto` (one per CPU core, the default) or a number.
    /// Not reloadable: a change takes effect on restart.
    public var workers: WorkerCount?
    /// The sockets Portico accepts downstream connections on. At least one is required.
    public var listeners: [ListenerConfig]
    /// Routes, matched most-specific-first (see `RoutingTable`). At least one is required.
    public var routes: [RouteConfig]
    /// Named groups of upstream hosts that routes proxy to.
    public var clusters: [ClusterConfig]?
    /// How the proxy identifies the client and itself to upstreams, and masks upstream identity.
    public var forwarding: ForwardingConfig?
    /// The access log: one line per request.
    public var accessLog: AccessLogConfig?
    /// Small HTTP servers that Portico starts itself, for a demo with no other software. Default: none.
    public var demoOrigins: [DemoOriginConfig]?
    /// Pages for the answers Portico itself gives (404 no route, 502, 503, 504, 413…), by status code: a file each,
    /// read when the config loads. A route's own `error_pages` come first. Default: short plain-text answers.
    public var errorPages: [String: String]?
    /// Request tracing over OTLP/HTTP. Default: off.
    public var tracing: TracingConfig?
    /// The admin API listener (config, clusters, health, metrics, dashboard). Default: off.
    public var admin: AdminConfig?
    /// Protection when the process nears its file descriptor or memory limit. Default: on, at 95% of the open
    /// files limit; no memory limit.
    public var overload: OverloadConfig?
    /// Memory for the responses routes with `cache` store. Default: 64MiB when any route caches.
    public var cacheStorage: CacheStorageConfig?
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish before Portico exits. Default `30s`.
    public var shutdownGrace: ConfigDuration?

    public init(
        workers: WorkerCount? = nil,
        listeners: [ListenerConfig] = [],
        routes: [RouteConfig] = [],
        clusters: [ClusterConfig]? = nil,
        forwarding: ForwardingConfig? = nil,
        accessLog: AccessLogConfig? = nil,
        demoOrigins: [DemoOriginConfig]? = nil,
        shutdownGrace: ConfigDuration? = nil,
        cacheStorage: CacheStorageConfig? = nil,
        admin: AdminConfig? = nil,
        tracing: TracingConfig? = nil
    ) {
        self.tracing = tracing
        self.cacheStorage = cacheStorage
        self.admin = admin
        self.workers = workers
        self.listeners = listeners
        self.routes = routes
        self.clusters = clusters
        self.forwarding = forwarding
        self.accessLog = accessLog
        self.demoOrigins = demoOrigins
        self.shutdownGrace = shutdownGrace
    }

    public static var configPlaceholder: PorticoConfig { .init() }
}

/// `auto` or a positive number of workers.
public enum WorkerCount: Codable, Sendable, Hashable, ConfigPlaceholder {
    case auto
    case count(Int)

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int.self) {
            self = .count(n)
            return
        }
        let s = try c.decode(String.self)
        guard s == "auto" else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "expected \"auto\" or a number of workers, found \"\(s)\"")
        }
        self = .auto
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .auto: try c.encode("auto")
        case .count(let n): try c.encode(n)
        }
    }

    public static var configPlaceholder: WorkerCount { .auto }
}

/// A built-in demo origin: answers every request with a small text page naming itself, the method, the path and
/// the request headers it received. For trying Portico with no other software; not for production.
public struct DemoOriginConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// A name shown in every response, e.g. `origin-a`. Required.
    public var name: String
    /// `host:port` to listen on (loopback only is sensible). Required.
    public var address: String

    public init(name: String, address: String) {
        self.name = name
        self.address = address
    }

    public static var configPlaceholder: DemoOriginConfig { .init(name: "", address: "") }
}
