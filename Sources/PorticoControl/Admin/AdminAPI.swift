//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import NIOCore
import NIOHTTP1
import PorticoCore
import PorticoEngine

/// The admin API's routes (documented in `docs/admin-api.openapi.yaml`, tested against it). Runs as async code
/// on the control plane; every call that reads or changes the running config goes through the `ProxyServer`
/// actor, so a config change here is the same validate, compile, swap as a SIGHUP reload.
struct AdminAPI: Sendable {
    let server: ProxyServer
    /// `Authorization: Bearer <token>` is required when set.
    let token: String?

    func handle(_ request: AdminRequest) async -> AdminResponse {
        if let token, !Self.authorized(request.headers, token: token) {
            var r = AdminResponse.json(.unauthorized, Self.encode(["error": "a bearer token is required"]))
            r.headers.add(name: "WWW-Authenticate", value: "Bearer realm=\"portico-admin\"")
            return r
        }
        if request.method == .POST, let refusal = Self.crossSiteRefusal(request.headers) { return refusal }
        let parts = request.path.split(separator: "/").map(String.init)
        switch (request.method, parts.first ?? "", parts.count) {
        case (.GET, "healthz", 1), (.HEAD, "healthz", 1):
            return .json(.ok, Self.encode(["status": "alive"]))
        case (.GET, "readyz", 1), (.HEAD, "readyz", 1):
            let ready = await self.server.isReady
            return .json(ready ? .ok : .serviceUnavailable, Self.encode(["status": ready ? "ready" : "starting"]))
        case (.GET, "config", 1):
            let (etag, json) = await self.server.runningConfigJSON()
            return .json(.ok, json, headers: ["ETag": etag, "Cache-Control": "no-store"])
        case (.POST, "config", 1):
            return await self.postConfig(request)
        case (.POST, "config", 2) where parts[1] == "validate":
            switch await self.server.validate(text: String(buffer: request.body)) {
            case .success: return .json(.ok, Self.encode(["valid": true]))
            case .failure(let errors): return Self.configErrors(errors)
            }
        case (.GET, "clusters", 1):
            return .json(.ok, Self.encode(await self.server.clusterSnapshots()))
        case (.GET, "clusters", 2):
            guard let c = await self.server.clusterSnapshots().first(where: { $0.name == parts[1] }) else {
                return .json(.notFound, Self.encode(["error": "no cluster \"\(parts[1])\""]))
            }
            return .json(.ok, Self.encode(c))
        case (.POST, "clusters", 5) where parts[2] == "hosts" && (parts[4] == "drain" || parts[4] == "undrain"):
            let address = parts[3].removingPercentEncoding ?? parts[3]
            switch await self.server.setDrained(cluster: parts[1], address: address, drained: parts[4] == "drain") {
            case .some(let host): return .json(.ok, Self.encode(host))
            case .none: return .json(.notFound, Self.encode(["error": "no host \(address) in cluster \"\(parts[1])\""]))
            }
        case (.GET, "", 0):
            return .text(.ok, DashboardPage.html, contentType: "text/html; charset=utf-8")
        case (.GET, "stats", 1):
            return .json(.ok, Self.encode(await DashboardStats.take(server: self.server)), headers: ["Cache-Control": "no-store"])
        case (.POST, "cache", 2) where parts[1] == "purge":
            return await self.purge(request)
        case (.GET, "metrics", 1):
            return .text(.ok, await self.server.metricsText(), contentType: "text/plain; version=0.0.4; charset=utf-8")
        default:
            let known = ["healthz", "readyz", "config", "clusters", "metrics", "stats", "cache", ""]
            if known.contains(parts.first ?? "") {
                return .json(.methodNotAllowed, Self.encode(["error": "\(request.method.rawValue) is not allowed on \(request.path)"]))
            }
            return .json(.notFound, Self.encode(["error": "no such endpoint: \(request.path)"]))
        }
    }

    /// `POST /config`: a new config (YAML or JSON), applied like a SIGHUP reload. `If-Match` with the running
    /// config's ETag is required (RFC 9110 §13.1.1), so a change made from a stale read is refused (412).
    private func postConfig(_ request: AdminRequest) async -> AdminResponse {
        guard let ifMatch = request.headers.first(name: "if-match") else {
            return .json(HTTPResponseStatus(statusCode: 428), Self.encode(["error": "If-Match with the ETag of GET /config is required"]))
        }
        let result = await self.server.applyFromAdmin(text: String(buffer: request.body), ifMatch: ifMatch)
        switch result {
        case .applied(let etag, let generation):
            return .json(.ok, Self.encode(["generation": "\(generation)", "etag": etag]), headers: ["ETag": etag])
        case .staleETag(let current):
            return .json(.preconditionFailed, Self.encode(["error": "the running config changed (ETag \(current))"]), headers: ["ETag": current])
        case .busy:
            return .json(.conflict, Self.encode(["error": "another config change is being applied"]))
        case .invalid(let errors):
            return Self.configErrors(errors)
        }
    }

    /// `POST /cache/purge` with `{"url": "https://host/path?query"}` (every stored variant of that URL, with and
    /// without its query) or `{"tags": ["a", "b"]}` (every response tagged so): how many were removed.
    private func purge(_ request: AdminRequest) async -> AdminResponse {
        guard let store = await self.server.cacheStore else {
            return .json(.notFound, Self.encode(["error": "no route caches"]))
        }
        guard let body = try? JSONSerialization.jsonObject(with: Data(String(buffer: request.body).utf8)) as? [String: Any] else {
            return .json(.badRequest, Self.encode(["error": "send {\"url\": \"https://host/path\"} or {\"tags\": [\"tag\"]}"]))
        }
        var removed = 0
        if let url = body["url"] as? String, let r = url.firstRange(of: "://") {
            let scheme = url[..<r.lowerBound].lowercased()
            let rest = url[r.upperBound...]
            let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
            let target = rest[slash...].isEmpty ? "/" : String(rest[slash...])
            let key = "\(scheme)://\(rest[..<slash].lowercased())\(target.hasPrefix("?") ? "/" + target : target)"
            removed += store.remove(key)
            if let q = key.firstIndex(of: "?") { removed += store.remove(String(key[..<q])) }
        } else if let tags = body["tags"] as? [String] {
            for tag in tags { removed += store.purge(tag: tag) }
        } else {
            return .json(.badRequest, Self.encode(["error": "send {\"url\": \"https://host/path\"} or {\"tags\": [\"tag\"]}"]))
        }
        return .json(.ok, Self.encode(["purged": removed]))
    }

    /// 422 with every error, each with its key path and position (as `portico check` prints them).
    static func configErrors(_ errors: ConfigErrors) -> AdminResponse {
        struct Item: Encodable {
            var path: String
            var line: Int?
            var column: Int?
            var message: String
        }
        struct Body: Encodable { var errors: [Item] }
        let body = Body(errors: errors.all.map { Item(path: $0.path, line: $0.line, column: $0.column, message: $0.message) })
        return .json(.unprocessableEntity, Self.encode(body))
    }

    /// A browser lets any page send a "simple" cross-site POST (a form) to a loopback admin listener without
    /// asking: those are refused, so a web page an operator opens cannot drain hosts or change the config. Tools
    /// (curl, scripts) send no `Origin` and a config's own media type, or none.
    static func crossSiteRefusal(_ headers: HTTPHeaders) -> AdminResponse? {
        if let site = headers.first(name: "sec-fetch-site"), site != "same-origin" && site != "none" {
            return .json(.forbidden, Self.encode(["error": "cross-site requests are refused"]))
        }
        if let origin = headers.first(name: "origin"), let host = headers.first(name: "host"),
            !(origin.hasSuffix("://" + host))
        {
            return .json(.forbidden, Self.encode(["error": "cross-origin requests are refused"]))
        }
        let type = headers.first(name: "content-type")?.lowercased() ?? ""
        if ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"].contains(where: { type.hasPrefix($0) }) {
            return .json(.unsupportedMediaType, Self.encode(["error": "send YAML or JSON (application/yaml or application/json), or no body"]))
        }
        return nil
    }

    static func authorized(_ headers: HTTPHeaders, token: String) -> Bool {
        guard let value = headers.first(name: "authorization"), value.hasPrefix("Bearer ") else { return false }
        // Compared in constant time: the token must not leak through timing.
        let given = Array(value.utf8.dropFirst(7))
        let expected = Array(token.utf8)
        var diff = UInt8(given.count == expected.count ? 0 : 1)
        for i in 0..<min(given.count, expected.count) { diff |= given[i] ^ expected[i] }
        return diff == 0
    }

    static func encode(_ value: some Encodable) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return Array((try? encoder.encode(value)) ?? Data("{}".utf8))
    }
}

/// What `GET /clusters` shows of one cluster.
struct ClusterSnapshot: Codable, Sendable {
    var name: String
    var balancer: String
    var hosts: [HostSnapshot]
    var circuitBreaker: BreakerSnapshot

    struct BreakerSnapshot: Codable, Sendable {
        var connections: Int
        var pending: Int
        var requests: Int
        var overflows: Int
        var maxConnections: Int?
        var maxRequests: Int?
    }
}

/// One host: health (active and passive), drain, load and latency, slow-start weight.
struct HostSnapshot: Codable, Sendable {
    var address: String
    var weight: Int
    /// The weight the balancer uses now: below `weight` during slow start.
    var effectiveWeight: Double
    var backup: Bool
    var activeHealthy: Bool
    var ejected: Bool
    var ejectedForSeconds: Double
    var ejections: Int
    var consecutiveFailures: Int
    var drained: Bool
    var available: Bool
    var inFlight: Int
    var latencyEwmaMs: Double

    init(_ host: UpstreamHost, cluster: Cluster, now: Int64) {
        let s = host.state
        self.address = host.address.description
        self.weight = host.weight
        self.effectiveWeight = Double(s.effectiveWeight(host.weight, window: cluster.slowStartNanos, now: now)) / 100
        self.backup = host.isBackup
        self.activeHealthy = s.isActiveHealthy
        self.ejected = s.isEjected(now: now)
        self.ejectedForSeconds = self.ejected ? Double(s.ejectedUntil - now) / 1e9 : 0
        self.ejections = s.ejections
        self.consecutiveFailures = s.consecutiveFailures
        self.drained = s.isDrained
        self.available = s.isAvailable(now: now)
        self.inFlight = s.inFlight
        self.latencyEwmaMs = Double(s.latency) / 1e6
    }
}
