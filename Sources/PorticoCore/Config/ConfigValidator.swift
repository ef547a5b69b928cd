//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A config that passed `ConfigValidator`. Only the validator makes one, so `RoutingTable.compile` cannot be handed
/// unchecked input and need not fail.
public struct ValidatedConfig: Sendable, Hashable {
    public let config: PorticoConfig
    fileprivate init(_ config: PorticoConfig) { self.config = config }
}

/// Checks what decoding cannot: references between sections, uniqueness, value ranges and formats. Reports every
/// problem at once, each with its key path. Pure; runs on the control plane.
public enum ConfigValidator {
    public static func validate(_ c: PorticoConfig) -> Result<ValidatedConfig, ConfigErrors> {
        var errors: [ConfigError] = []
        func fail(_ path: String, _ message: String) { errors.append(ConfigError(path: path, message: message)) }

        if case .count(let n) = c.workers, n < 1 || n > 1024 { fail("workers", "must be \"auto\" or from 1 to 1024") }

        // Listeners
        if c.listeners.isEmpty { fail("listeners", "at least one listener is required") }
        var listenerNames: [String: Int] = [:]
        var listenerAddresses: [String: Int] = [:]
        for (i, l) in c.listeners.enumerated() {
            let p = "listeners[\(i)]"
            if l.name.isEmpty {
                fail("\(p).name", "must not be empty")
            } else if let first = listenerNames[l.name] {
                fail("\(p).name", "duplicate listener name \"\(l.name)\" (also listeners[\(first)])")
            } else {
                listenerNames[l.name] = i
            }
            if let hp = HostPort(parsing: l.address) {
                if !hp.isIPLiteral && hp.host != "localhost" {
                    fail("\(p).address", "listener address must be an IP address or localhost, found \"\(hp.host)\"")
                }
                if hp.port == 0 {
                    // Port 0: each listener gets its own free port.
                } else if let first = listenerAddresses[hp.description] {
                    fail("\(p).address", "address \(hp) is already used by listeners[\(first)]")
                } else {
                    listenerAddresses[hp.description] = i
                }
            } else {
                fail("\(p).address", "invalid address \"\(l.address)\" (expected host:port, e.g. 0.0.0.0:443 or [::]:443)")
            }
            if let b = l.backlog, b < 1 { fail("\(p).backlog", "must be at least 1") }
            if let lim = l.limits {
                if let h = lim.maxHeaderBytes, h.bytes < 1024 { fail("\(p).limits.max_header_bytes", "must be at least 1KiB") }
                if let u = lim.maxUriBytes, u.bytes < 64 { fail("\(p).limits.max_uri_bytes", "must be at least 64") }
                if let r = lim.maxRequestsPerConnection, r < 0 { fail("\(p).limits.max_requests_per_connection", "must not be negative") }
            }
            if let tls = l.tls {
                if tls.certificates.isEmpty { fail("\(p).tls.certificates", "at least one certificate is required") }
                for (j, c) in tls.certificates.enumerated() {
                    if c.certFile.isEmpty { fail("\(p).tls.certificates[\(j)].cert_file", "must not be empty") }
                    if c.keyFile.isEmpty { fail("\(p).tls.certificates[\(j)].key_file", "must not be empty") }
                    for (k, h) in (c.hosts ?? []).enumerated() where HostPattern(parsing: h) == nil {
                        fail("\(p).tls.certificates[\(j)].hosts[\(k)]", "invalid host pattern \"\(h)\"")
                    }
                }
                if let ca = tls.clientAuth {
                    if ca.caFile.isEmpty { fail("\(p).tls.client_auth.ca_file", "must not be empty") }
                    for (key, h) in [("subject_header", ca.subjectHeader), ("fingerprint_header", ca.fingerprintHeader)] {
                        if let h, !isToken(h) { fail("\(p).tls.client_auth.\(key)", "invalid header name \"\(h)\"") }
                    }
                }
                if let d = tls.reloadInterval, d.nanoseconds < 100_000_000 { fail("\(p).tls.reload_interval", "must be at least 100ms") }
            }
            if let h2 = l.http2 {
                if h2.cleartext == true && l.tls != nil { fail("\(p).http2.cleartext", "only for listeners without tls (use ALPN there)") }
                if let n = h2.maxConcurrentStreams, !(1...10_000).contains(n) { fail("\(p).http2.max_concurrent_streams", "must be from 1 to 10000") }
                if let f = h2.maxFrameSize, !(16384...16_777_215).contains(f.bytes) { fail("\(p).http2.max_frame_size", "must be from 16KiB to 16MiB") }
                if let h = h2.maxHeaderListSize, h.bytes < 1024 { fail("\(p).http2.max_header_list_size", "must be at least 1KiB") }
            }
            if let t = l.timeouts {
                if let d = t.requestHeader, d.nanoseconds == 0 { fail("\(p).timeouts.request_header", "must be more than 0") }
                if let d = t.tlsHandshake, d.nanoseconds == 0 { fail("\(p).timeouts.tls_handshake", "must be more than 0") }
                if let d = t.requestBody, d.nanoseconds == 0 { fail("\(p).timeouts.request_body", "must be more than 0") }
                if let d = t.idle, d.nanoseconds == 0 { fail("\(p).timeouts.idle", "must be more than 0") }
            }
        }

        // Clusters
        var clusterNames: [String: Int] = [:]
        for (i, cl) in (c.clusters ?? []).enumerated() {
            let p = "clusters[\(i)]"
            if cl.name.isEmpty {
                fail("\(p).name", "must not be empty")
            } else if let first = clusterNames[cl.name] {
                fail("\(p).name", "duplicate cluster name \"\(cl.name)\" (also clusters[\(first)])")
            } else {
                clusterNames[cl.name] = i
            }
            if cl.hosts.isEmpty { fail("\(p).hosts", "at least one host is required") }
            for (j, h) in cl.hosts.enumerated() {
                if HostPort(parsing: h.address) == nil {
                    fail("\(p).hosts[\(j)].address", "invalid address \"\(h.address)\" (expected host:port)")
                } else if HostPort(parsing: h.address)?.port == 0 {
                    fail("\(p).hosts[\(j)].address", "port must not be 0")
                }
                if let w = h.weight, !(1...1000).contains(w) { fail("\(p).hosts[\(j)].weight", "must be from 1 to 1000") }
            }
            if let t = cl.timeouts {
                for (key, d) in [("connect", t.connect), ("response_header", t.responseHeader), ("read", t.read), ("idle", t.idle)] {
                    if let d, d.nanoseconds == 0 { fail("\(p).timeouts.\(key)", "must be more than 0") }
                }
            }
            if cl.hosts.allSatisfy({ $0.backup == true }) && !cl.hosts.isEmpty {
                fail("\(p).hosts", "at least one host must not be a backup")
            }
            if let h = cl.hash {
                if cl.balancer != .consistentHash { fail("\(p).hash", "only used with balancer: consistent_hash") }
                if (h.source == .header || h.source == .cookie) && (h.name ?? "").isEmpty {
                    fail("\(p).hash.name", "a \(h.source.rawValue) name is required")
                }
            }
            if let st = cl.sticky, let c = st.cookie, !isToken(c) { fail("\(p).sticky.cookie", "invalid cookie name \"\(c)\"") }
            if let a = cl.healthCheck?.active {
                let q = "\(p).health_check.active"
                if let path = a.path, !path.hasPrefix("/") { fail("\(q).path", "must start with \"/\"") }
                if let m = a.method, !isToken(m) || m.uppercased() != m { fail("\(q).method", "invalid method \"\(m)\"") }
                if let e = a.expectStatus, StatusSet(parsing: e) == nil {
                    fail("\(q).expect_status", "invalid status set \"\(e)\" (expected e.g. 200-399 or 200,204)")
                }
                for (key, d) in [("interval", a.interval), ("timeout", a.timeout)] {
                    if let d, d.nanoseconds == 0 { fail("\(q).\(key)", "must be more than 0") }
                }
                for (key, n) in [("healthy_threshold", a.healthyThreshold), ("unhealthy_threshold", a.unhealthyThreshold)] {
                    if let n, !(1...100).contains(n) { fail("\(q).\(key)", "must be from 1 to 100") }
                }
            }
            if let ps = cl.healthCheck?.passive {
                let q = "\(p).health_check.passive"
                if let n = ps.consecutiveFailures, !(1...1000).contains(n) { fail("\(q).consecutive_failures", "must be from 1 to 1000") }
                if let n = ps.maxEjectionPercent, !(0...100).contains(n) { fail("\(q).max_ejection_percent", "must be from 0 to 100") }
                for (j, st) in (ps.failureStatuses ?? []).enumerated() where !(500...599).contains(st) {
                    fail("\(q).failure_statuses[\(j)]", "must be a 5xx status")
                }
            }
            if let r = cl.retries {
                let q = "\(p).retries"
                for (j, cond) in (r.retryOn ?? []).enumerated() where RetryCondition(rawValue: cond) == nil {
                    fail("\(q).retry_on[\(j)]", "unknown condition \"\(cond)\" (expected connect_failure, reset, timeout, 502, 503 or 504)")
                }
                if let n = r.maxRetries, !(0...10).contains(n) { fail("\(q).max_retries", "must be from 0 to 10") }
                if let n = r.budgetPercent, !(0...100).contains(n) { fail("\(q).budget_percent", "must be from 0 to 100") }
            }
            if cl.protocol == .h2 && cl.tls == nil { fail("\(p).protocol", "h2 needs tls (use h2c for HTTP/2 without TLS)") }
            if cl.protocol == .h2c && cl.tls != nil { fail("\(p).protocol", "h2c is HTTP/2 without TLS (use h2 with tls)") }
            if cl.proxyProtocol != nil && (cl.protocol == .h2 || cl.protocol == .h2c) {
                fail("\(p).proxy_protocol", "not with HTTP/2 upstreams: one connection carries many clients' requests")
            }
            if let t = cl.tls, (t.certFile == nil) != (t.keyFile == nil) {
                fail("\(p).tls", "cert_file and key_file go together")
            }
            if let d = cl.dnsRefresh, d.nanoseconds < 100_000_000 { fail("\(p).dns_refresh", "must be at least 100ms") }
            for (key, d) in [
                ("retries.per_try_timeout", cl.retries?.perTryTimeout), ("circuit_breaker.queue_timeout", cl.circuitBreaker?.queueTimeout),
                ("health_check.passive.base_ejection_time", cl.healthCheck?.passive?.baseEjectionTime),
            ] {
                if let d, d.nanoseconds == 0 { fail("\(p).\(key)", "must be more than 0") }
            }
            if let cb = cl.circuitBreaker {
                for (key, n) in [("max_connections", cb.maxConnections), ("max_requests", cb.maxRequests)] {
                    if let n, n < 1 { fail("\(p).circuit_breaker.\(key)", "must be at least 1") }
                }
                if let n = cb.maxPending, n < 0 { fail("\(p).circuit_breaker.max_pending", "must not be negative") }
                if cb.maxPending != nil && cb.maxConnections == nil {
                    fail("\(p).circuit_breaker.max_pending", "only used with max_connections")
                }
            }
            if let pool = cl.pool {
                if let n = pool.maxIdlePerHost, n < 0 || n > 100_000 { fail("\(p).pool.max_idle_per_host", "must be from 0 to 100000") }
                if let n = pool.maxRequestsPerConnection, n < 0 { fail("\(p).pool.max_requests_per_connection", "must not be negative") }
            }
        }

        // Routes
        if c.routes.isEmpty { fail("routes", "at least one route is required") }
        for (i, r) in c.routes.enumerated() {
            let p = "routes[\(i)]"
            let actions = [r.cluster != nil, r.redirect != nil, r.respond != nil].filter { $0 }.count
            if actions == 0 {
                fail(p, "a route needs one action: cluster, redirect or respond")
            } else if actions > 1 {
                fail(p, "a route takes only one action of cluster, redirect and respond")
            }
            if let name = r.cluster, clusterNames[name] == nil {
                let known = clusterNames.keys.sorted().map { "\"\($0)\"" }.joined(separator: ", ")
                fail("\(p).cluster", "unknown cluster \"\(name)\"" + (known.isEmpty ? " (no clusters are defined)" : " (defined: \(known))"))
            }
            if let m = r.match {
                for (j, h) in (m.hosts ?? []).enumerated() where HostPattern(parsing: h) == nil {
                    fail("\(p).match.hosts[\(j)]", "invalid host pattern \"\(h)\" (expected a name such as app.example.com or *.example.org)")
                }
                if m.path != nil && m.pathPrefix != nil { fail("\(p).match", "path and path_prefix cannot both be set") }
                for (j, name) in (m.listeners ?? []).enumerated() where listenerNames[name] == nil {
                    fail("\(p).match.listeners[\(j)]", "unknown listener \"\(name)\"")
                }
                if let s = m.pathPrefix, !s.hasPrefix("/") { fail("\(p).match.path_prefix", "must start with \"/\"") }
                if let s = m.path, !s.hasPrefix("/") { fail("\(p).match.path", "must start with \"/\"") }
                for (j, method) in (m.methods ?? []).enumerated() where !isToken(method) || method.uppercased() != method {
                    fail("\(p).match.methods[\(j)]", "invalid method \"\(method)\" (expected an uppercase token such as GET)")
                }
                for (j, h) in (m.headers ?? []).enumerated() {
                    if !isToken(h.name) { fail("\(p).match.headers[\(j)].name", "invalid header name \"\(h.name)\"") }
                    if h.value != nil && h.present == false {
                        fail("\(p).match.headers[\(j)]", "value and present: false contradict each other")
                    }
                }
            }
            if let rd = r.redirect {
                if let s = rd.status, ![301, 302, 303, 307, 308].contains(s) {
                    fail("\(p).redirect.status", "must be 301, 302, 303, 307 or 308")
                }
                if rd.target.isEmpty { fail("\(p).redirect.target", "must not be empty") }
            }
            if let fr = r.respond, let s = fr.status, !(200...599).contains(s) {
                fail("\(p).respond.status", "must be from 200 to 599")
            }
            for (key, rules) in [("request_headers", r.requestHeaders), ("response_headers", r.responseHeaders)] {
                guard let rules else { continue }
                for name in (rules.set ?? [:]).keys.sorted() + (rules.add ?? [:]).keys.sorted() + (rules.remove ?? [])
                where !isToken(name) {
                    fail("\(p).\(key)", "invalid header name \"\(name)\"")
                }
                for (name, value) in (rules.set ?? [:]).merging(rules.add ?? [:], uniquingKeysWith: { a, _ in a })
                where value.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) {
                    fail("\(p).\(key)", "header \"\(name)\" has a line break or NUL in its value")
                }
            }
        }

        for (i, r) in c.routes.enumerated() {
            guard let z = r.compression else { continue }
            let p = "routes[\(i)].compression"
            if let e = z.encodings {
                if e.isEmpty { fail("\(p).encodings", "must list at least one of zstd, br, gzip, deflate") }
                if Set(e).count != e.count { fail("\(p).encodings", "lists a coding twice") }
            }
            for (j, t) in (z.types ?? []).enumerated() where MediaTypePattern(parsing: t) == nil {
                fail("\(p).types[\(j)]", "invalid media type \"\(t)\" (expected e.g. text/html, text/* or application/*+json)")
            }
            for (key, level, range) in [("gzip", z.levels?.gzip, 1...9), ("br", z.levels?.br, 0...11), ("zstd", z.levels?.zstd, 1...19)] {
                if let level, !range.contains(level) { fail("\(p).levels.\(key)", "must be from \(range.lowerBound) to \(range.upperBound)") }
            }
        }

        for (i, r) in c.routes.enumerated() {
            guard let cache = r.cache else { continue }
            let p = "routes[\(i)].cache"
            for (j, h) in (cache.key?.headers ?? []).enumerated() where !isToken(h) {
                fail("\(p).key.headers[\(j)]", "invalid header name \"\(h)\"")
            }
            for (j, name) in (cache.key?.cookies ?? []).enumerated() where !isToken(name) {
                fail("\(p).key.cookies[\(j)]", "invalid cookie name \"\(name)\"")
            }
            if let m = cache.post?.maxBody, m.bytes < 1 || m.bytes > 1 << 20 { fail("\(p).post.max_body", "must be from 1 to 1MiB") }
            for (j, t) in (cache.purgeAllow ?? []).enumerated() where CIDR(parsing: t) == nil {
                fail("\(p).purge_allow[\(j)]", "invalid CIDR \"\(t)\" (expected e.g. 127.0.0.1/32 or ::1)")
            }
        }
        func checkRules(_ rules: IPRulesConfig?, _ path: String) {
            for (key, list) in [("allow", rules?.allow ?? []), ("deny", rules?.deny ?? [])] {
                for (j, t) in list.enumerated() where CIDR(parsing: t) == nil {
                    fail("\(path).\(key)[\(j)]", "invalid CIDR \"\(t)\" (expected e.g. 10.0.0.0/8, 2001:db8::/32 or 192.0.2.7)")
                }
            }
        }
        for (i, l) in c.listeners.enumerated() {
            checkRules(l.ipRules, "listeners[\(i)].ip_rules")
            if let pp = l.proxyProtocol {
                if pp.trustedIps.isEmpty { fail("listeners[\(i)].proxy_protocol.trusted_ips", "at least one range is required") }
                for (j, t) in pp.trustedIps.enumerated() where CIDR(parsing: t) == nil {
                    fail("listeners[\(i)].proxy_protocol.trusted_ips[\(j)]", "invalid CIDR \"\(t)\" (expected e.g. 10.0.0.0/8 or 192.0.2.7)")
                }
                if let t = pp.timeout, t.nanoseconds < 1_000_000 { fail("listeners[\(i)].proxy_protocol.timeout", "must be at least 1ms") }
            }
            for (key, n) in [("max_connections", l.limits?.maxConnections), ("max_connections_per_ip", l.limits?.maxConnectionsPerIp),
                             ("max_connection_rate_per_ip", l.limits?.maxConnectionRatePerIp)] {
                if let n, n < 1 { fail("listeners[\(i)].limits.\(key)", "must be at least 1 (leave it out for no limit)") }
            }
        }
        for (i, r) in c.routes.enumerated() {
            checkRules(r.ipRules, "routes[\(i)].ip_rules")
            for (j, l) in (r.rateLimits ?? []).enumerated() {
                let p = "routes[\(i)].rate_limits[\(j)]"
                if l.rate < 1 { fail("\(p).rate", "must be at least 1") }
                if let b = l.burst, b < 1 { fail("\(p).burst", "must be at least 1") }
                if let per = l.per, per.nanoseconds < 1_000_000 { fail("\(p).per", "must be at least 1ms") }
                if let q = l.queue, q < 0 { fail("\(p).queue", "must not be negative") }
                if let q = l.queue, q > 0, l.store == .redis { fail("\(p).queue", "only for local limits (store: local)") }
                if l.store == .redis {
                    if let r = l.redis {
                        if HostPort(parsing: r.address) == nil { fail("\(p).redis.address", "invalid address \"\(r.address)\" (expected host:port, e.g. 127.0.0.1:6379)") }
                        if let t = r.timeout, t.nanoseconds < 1_000_000 { fail("\(p).redis.timeout", "must be at least 1ms") }
                        if let f = r.passwordFile, access(f, R_OK) != 0 { fail("\(p).redis.password_file", "cannot read \"\(f)\"") }
                    } else {
                        fail("\(p).redis", "store: redis needs redis: { address: host:port }")
                    }
                } else if l.redis != nil {
                    fail("\(p).redis", "only with store: redis")
                }
                if case .claim? = RateLimitFilter.Key(parsing: l.key), r.auth == nil {
                    fail("\(p).key", "a claim key needs the route's auth")
                }
                if RateLimitFilter.Key(parsing: l.key) == nil {
                    fail("\(p).key", "unknown key \"\(l.key ?? "")\" (expected client_ip, route, header:NAME, cookie:NAME or claim:NAME)")
                }
            }
        }
        for (i, r) in c.routes.enumerated() {
            guard let auth = r.auth else { continue }
            let p = "routes[\(i)].auth"
            if (auth.basic != nil ? 1 : 0) + (auth.jwt != nil ? 1 : 0) + (auth.forward != nil ? 1 : 0) != 1 {
                fail(p, "needs exactly one of basic, jwt or forward")
            }
            if let f = auth.forward {
                if !(c.clusters ?? []).contains(where: { $0.name == f.cluster }) { fail("\(p).forward.cluster", "unknown cluster \"\(f.cluster)\"") }
                if let path = f.path, !path.hasPrefix("/") { fail("\(p).forward.path", "must start with /") }
                for (key, names) in [("request_headers", f.requestHeaders ?? []), ("response_headers", f.responseHeaders ?? [])] {
                    for (j, name) in names.enumerated() where !isToken(name) { fail("\(p).forward.\(key)[\(j)]", "invalid header name \"\(name)\"") }
                }
                if let t = f.timeout, t.nanoseconds < 1_000_000 { fail("\(p).forward.timeout", "must be at least 1ms") }
                if f.maxBody != nil && f.cacheFor != nil { fail("\(p).forward.cache_for", "not with max_body: the answer may depend on the body") }
                if let m = f.maxBody, m.bytes > 16 << 20 { fail("\(p).forward.max_body", "at most 16MiB (the body is held in memory)") }
            }
            if let b = auth.basic {
                if b.htpasswd.isEmpty { fail("\(p).basic.htpasswd", "must not be empty") }
                if let h = b.userHeader, !isToken(h) { fail("\(p).basic.user_header", "invalid header name \"\(h)\"") }
                if let realm = b.realm, realm.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) { fail("\(p).basic.realm", "must not contain control characters") }
            }
            if let j = auth.jwt {
                if (j.keys ?? []).isEmpty && j.jwksFile == nil && j.jwksUrl == nil {
                    fail("\(p).jwt", "needs keys, jwks_file or jwks_url")
                }
                if let u = j.jwksUrl, !(u.hasPrefix("https://") || u.hasPrefix("http://")) || u.utf8.count < 10 {
                    fail("\(p).jwt.jwks_url", "must be an http:// or https:// URL")
                }
                if let d = j.jwksRefresh, d.nanoseconds < 1_000_000_000 { fail("\(p).jwt.jwks_refresh", "must be at least 1s") }
                for (k, source) in (j.tokenFrom ?? []).enumerated() {
                    let ok = source == "header" || (source.hasPrefix("cookie:") && source.count > 7) || (source.hasPrefix("query:") && source.count > 6)
                    if !ok { fail("\(p).jwt.token_from[\(k)]", "unknown source \"\(source)\" (expected header, cookie:NAME or query:NAME)") }
                }
                for (claim, field) in (j.forwardClaims ?? [:]).sorted(by: { $0.key < $1.key }) where !isToken(field) {
                    fail("\(p).jwt.forward_claims.\(claim)", "invalid header name \"\(field)\"")
                }
            }
        }
        if let o = c.overload {
            if let p = o.openFilesPercent, !(0...100).contains(p) { fail("overload.open_files_percent", "must be from 0 (off) to 100") }
            if let m = o.maxMemory, m.bytes < 16 << 20 { fail("overload.max_memory", "must be at least 16MiB") }
            if let i = o.interval, i.nanoseconds < 100_000_000 { fail("overload.interval", "must be at least 100ms") }
        }
        // Error pages: status codes Portico answers with, and files it can read (a stat, when the config loads).
        func checkPages(_ pages: [String: String]?, _ path: String) {
            for (code, file) in (pages ?? [:]).sorted(by: { $0.key < $1.key }) {
                if Int(code).map({ (400...599).contains($0) }) != true {
                    fail("\(path).\(code)", "must be a status code from 400 to 599")
                } else if access(file, R_OK) != 0 {
                    fail("\(path).\(code)", "cannot read \"\(file)\"")
                }
            }
        }
        checkPages(c.errorPages, "error_pages")
        for (i, r) in c.routes.enumerated() { checkPages(r.errorPages, "routes[\(i)].error_pages") }
        if let t = c.tracing {
            if !(t.endpoint.hasPrefix("http://") || t.endpoint.hasPrefix("https://")) || t.endpoint.utf8.count < 10 {
                fail("tracing.endpoint", "must be an http:// or https:// URL, e.g. http://127.0.0.1:4318/v1/traces")
            }
            if let r = t.sampleRatio, !(0...1).contains(r) { fail("tracing.sample_ratio", "must be from 0 to 1") }
            if let n = t.serviceName, n.isEmpty { fail("tracing.service_name", "must not be empty") }
        }
                if let admin = c.admin {
            if let hp = HostPort(parsing: admin.address) {
                if let first = listenerAddresses[hp.description] {
                    fail("admin.address", "address \(hp) is already used by listeners[\(first)]")
                }
                let loopback = hp.host == "localhost" || hp.host.hasPrefix("127.") || hp.host == "::1" || hp.host == "[::1]"
                if !loopback && admin.tokenFile == nil && admin.tls == nil {
                    fail("admin.address", "the admin API on a non-loopback address needs token_file (a bearer token) or tls (client certificates)")
                }
            } else {
                fail("admin.address", "invalid address \"\(admin.address)\" (expected host:port, e.g. 127.0.0.1:9901)")
            }
            if let t = admin.tokenFile, t.isEmpty { fail("admin.token_file", "must not be empty") }
            if let t = admin.tls {
                for (key, value) in [("cert_file", t.certFile), ("key_file", t.keyFile), ("client_ca", t.clientCa)] where value.isEmpty {
                    fail("admin.tls.\(key)", "must not be empty")
                }
            }
        }
        if let s = c.cacheStorage {
            if s.effectiveMaxSize < 1 << 20 { fail("cache_storage.max_size", "must be at least 1MiB") }
            if let o = s.maxObjectSize, o.bytes < 1 || o.bytes > s.effectiveMaxSize {
                fail("cache_storage.max_object_size", "must be more than 0 and at most max_size")
            }
            if let d = s.disk {
                if d.path.isEmpty { fail("cache_storage.disk.path", "must not be empty") }
                if d.effectiveMaxSize < s.effectiveMaxObjectSize {
                    fail("cache_storage.disk.max_size", "must be at least max_object_size (\(ByteSize(bytes: s.effectiveMaxObjectSize)))")
                }
            }
        }

        if let f = c.forwarding {
            for (i, t) in (f.trustedProxies ?? []).enumerated() where CIDR(parsing: t) == nil {
                fail("forwarding.trusted_proxies[\(i)]", "invalid CIDR \"\(t)\" (expected e.g. 10.0.0.0/8 or ::1)")
            }
            for (i, h) in (f.hideResponseHeaders ?? []).enumerated() where !isToken(h) {
                fail("forwarding.hide_response_headers[\(i)]", "invalid header name \"\(h)\"")
            }
            if let v = f.via, v.contains(where: { $0 == "\r" || $0 == "\n" }) { fail("forwarding.via", "must be one line") }
        }

        if let log = c.accessLog, let d = log.destination, d.isEmpty { fail("access_log.destination", "must not be empty") }

        for (i, d) in (c.demoOrigins ?? []).enumerated() {
            if d.name.isEmpty { fail("demo_origins[\(i)].name", "must not be empty") }
            if HostPort(parsing: d.address) == nil {
                fail("demo_origins[\(i)].address", "invalid address \"\(d.address)\" (expected host:port)")
            } else if let hp = HostPort(parsing: d.address), let first = listenerAddresses[hp.description] {
                fail("demo_origins[\(i)].address", "address \(hp) is already used by listeners[\(first)]")
            }
        }

        return errors.isEmpty ? .success(ValidatedConfig(c)) : .failure(ConfigErrors(errors))
    }
}

/// RFC 9110 §5.6.2 `token`.
func isToken(_ s: String) -> Bool {
    !s.isEmpty
        && s.utf8.allSatisfy { b in
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"):
                return true
            default:
                return "!#$%&'*+-.^_`|~".utf8.contains(b)
            }
        }
}
