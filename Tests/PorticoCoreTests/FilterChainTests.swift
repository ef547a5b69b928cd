//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1
import Testing

@testable import PorticoCore

/// The filter chain without I/O: phases, order, what each built-in filter does.
@Suite struct FilterChainTests {
    /// Appends its name to `X-Trace` in every head phase it is given, and answers when told to.
    struct Tracer: ProxyFilter {
        let name: String
        var phases: FilterPhases
        var answer: Int?

        func requestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) -> FilterDecision {
            head.headers.add(name: "X-Trace", value: self.name)
            if let answer { return .respond(FilterResponse(status: answer, text: self.name)) }
            return .proceed
        }
        func upstreamRequestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) {
            head.headers.add(name: "X-Trace", value: self.name)
        }
        func responseHead(_ head: inout HTTPResponseHead, _ context: inout RequestContext) {
            head.headers.add(name: "X-Trace", value: self.name)
        }
    }

    static func context() -> RequestContext {
        RequestContext(clientIP: "192.0.2.7", clientTrusted: false, scheme: "https", host: "app.example", listener: "l", route: "r", uri: "/p?q=1")
    }

    @Test func phasesRunInChainOrderAndOnlyWhereImplemented() {
        let chain = FilterChain([
            Tracer(name: "a", phases: [.requestHead, .responseHead]),
            Tracer(name: "b", phases: [.upstreamRequestHead]),
            Tracer(name: "c", phases: [.requestHead, .upstreamRequestHead, .responseHead]),
        ])
        var ctx = Self.context()
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
        let (decision, next) = chain.runRequestHead(&head, &ctx)
        guard case .proceed = decision else { Issue.record("stopped"); return }
        #expect(next == 2 && chain.requestHeadCount == 2)
        #expect(head.headers["x-trace"] == ["a", "c"])
        var up = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
        chain.runUpstreamRequestHead(&up, &ctx)
        #expect(up.headers["x-trace"] == ["b", "c"])
        var response = HTTPResponseHead(version: .http1_1, status: .ok)
        chain.runResponseHead(&response, &ctx)
        #expect(response.headers["x-trace"] == ["a", "c"])
        #expect(!chain.hasResponseBodyFilters)
    }

    /// A filter that answers stops the chain; the index says where a suspended chain would resume.
    @Test func answeringStopsTheChain() {
        let chain = FilterChain([
            Tracer(name: "a", phases: .requestHead),
            Tracer(name: "b", phases: .requestHead, answer: 403),
            Tracer(name: "c", phases: .requestHead),
        ])
        var ctx = Self.context()
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
        let (decision, next) = chain.runRequestHead(&head, &ctx)
        guard case .respond(let r) = decision else { Issue.record("did not answer"); return }
        #expect(r.status == 403 && next == 2)
        #expect(head.headers["x-trace"] == ["a", "b"])
        // Resuming after b runs c only.
        var again = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
        _ = chain.runRequestHead(&again, &ctx, from: next)
        #expect(again.headers["x-trace"] == ["c"])
    }

    /// Route chains: global forwarding first, then config filters (cache, compression), then header rules, then
    /// the responder.
    @Test func routesCompileTheirChains() throws {
        let yaml = """
            listeners: [ { name: l, address: "127.0.0.1:0" } ]
            routes:
              - { name: fixed, match: { path: /f }, respond: { status: 418, body: "x" }, response_headers: { set: { X-R: "1" } } }
              - { name: proxied, cluster: c }
            clusters: [ { name: c, hosts: [ { address: "192.0.2.1:80" } ] } ]
            """
        let valid = try ConfigLoader.load(text: yaml, file: nil).get()
        let table = RoutingTable.compile(valid, generation: 1) { route in
            [Tracer(name: "extra", phases: .upstreamRequestHead)]
        }
        let fixed = table.routes.first { $0.name == "fixed" }!
        #expect(fixed.filters.filters.map { "\(type(of: $0))" } == ["ForwardingFilter", "Tracer", "HeaderRulesFilter", "FixedResponseFilter"])
        let proxied = table.routes.first { $0.name == "proxied" }!
        #expect(proxied.filters.filters.map { "\(type(of: $0))" } == ["ForwardingFilter", "Tracer"])
        // Header rules with nothing to do implement no phase, so they are left out.
        var ctx = Self.context()
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/f")
        guard case (.respond(let r), _) = fixed.filters.runRequestHead(&head, &ctx) else { Issue.record("fixed did not answer"); return }
        #expect(r.status == 418 && String(buffer: r.body) == "x")
        var response = HTTPResponseHead(version: .http1_1, status: .imATeapot)
        fixed.filters.runResponseHead(&response, &ctx)
        #expect(response.headers["x-r"] == ["1"])
    }

    @Test func builtInFilters() {
        var ctx = Self.context()
        // Redirect: $scheme, $host, $request_uri (the origin form of an absolute-form target too).
        let redirect = RedirectFilter(status: 308, target: "$scheme://new.example$request_uri")
        for uri in ["/p?q=1", "http://app.example/p?q=1"] {
            var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: uri)
            guard case .respond(let r) = redirect.requestHead(&head, &ctx) else { Issue.record("no redirect"); return }
            #expect(r.status == 308 && r.headers.first(name: "location") == "https://new.example/p?q=1")
        }
        #expect(RedirectFilter.requestURI("https://a.example?x=1") == "/?x=1")
        #expect(RedirectFilter.requestURI("https://a.example") == "/")
        // HSTS on every response.
        var response = HTTPResponseHead(version: .http1_1, status: .ok, headers: ["Strict-Transport-Security": "max-age=1"])
        HSTSFilter(value: "max-age=63072000").responseHead(&response, &ctx)
        #expect(response.headers["strict-transport-security"] == ["max-age=63072000"])
        // mTLS identity: spoofed fields removed, verified ones added only with a certificate.
        let identity = ClientIdentityFilter(subjectField: "X-Client-Subject", fingerprintField: "X-Client-Cert-SHA256")
        var up = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/", headers: ["X-Client-Subject": "CN=spoof", "x-client-cert-sha256": "00"])
        identity.upstreamRequestHead(&up, &ctx)
        #expect(!up.headers.contains(name: "x-client-subject") && !up.headers.contains(name: "x-client-cert-sha256"))
        ctx.clientCertificate = .init(subject: "CN=alice", sha256: "ab")
        identity.upstreamRequestHead(&up, &ctx)
        #expect(up.headers["x-client-subject"] == ["CN=alice"] && up.headers["x-client-cert-sha256"] == ["ab"])
        // Forwarding: client fields up; Server masked and Location rewritten only for upstream responses.
        let forwarding = ForwardingFilter(ForwardingPolicy(nil))
        var fwd = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
        forwarding.upstreamRequestHead(&fwd, &ctx)
        #expect(fwd.headers["x-forwarded-for"] == ["192.0.2.7"] && fwd.headers["x-forwarded-proto"] == ["https"])
        var local = HTTPResponseHead(version: .http1_1, status: .ok, headers: ["Server": "local"])
        forwarding.responseHead(&local, &ctx)
        #expect(local.headers["server"] == ["local"])
        ctx.upstreamAuthority = "192.0.2.1:80"
        var upstream = HTTPResponseHead(version: .http1_1, status: .found, headers: ["Server": "origin", "Location": "http://192.0.2.1:80/x"])
        forwarding.responseHead(&upstream, &ctx)
        #expect(!upstream.headers.contains(name: "server"))
        #expect(upstream.headers["location"] == ["https://app.example/x"])
    }
}
