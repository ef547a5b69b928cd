//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOHTTP1
import Testing

@testable import PorticoCore

/// `ip_rules`: deny wins, then allow (when any), IPv4 and IPv6, mapped addresses, the forwarded client address.
@Suite struct IPRulesTests {
    @Test func allowAndDeny() {
        let rules = IPRules(IPRulesConfig(allow: ["10.0.0.0/8", "2001:db8::/32"], deny: ["10.9.0.0/16"]))
        #expect(rules.allows("10.1.2.3") && rules.allows("2001:db8::1") && rules.allows("::ffff:10.1.2.3"))
        #expect(!rules.allows("10.9.1.1"))  // deny wins
        #expect(!rules.allows("192.0.2.7") && !rules.allows("2001:db9::1") && !rules.allows("not-an-ip"))
        let denyOnly = IPRules(IPRulesConfig(deny: ["192.0.2.7"]))
        #expect(denyOnly.allows("192.0.2.8") && !denyOnly.allows("192.0.2.7"))
        #expect(IPRules(IPRulesConfig()).allows("anything"))
    }

    /// Behind a trusted proxy the client is the right-most untrusted X-Forwarded-For hop (not the left-most,
    /// which the client itself may have written).
    @Test func forwardedClientAddress() {
        let filter = IPRulesFilter(rules: IPRules(IPRulesConfig(allow: ["203.0.113.0/24"])), trustedProxies: [CIDR(parsing: "127.0.0.0/8")!, CIDR(parsing: "10.0.0.0/8")!])
        func decide(peer: String, trusted: Bool, xff: [String]) -> Int? {
            var context = RequestContext(clientIP: peer, clientTrusted: trusted, scheme: "http", host: "h", listener: "l", route: "r", uri: "/")
            for v in xff { context.requestHeaders.add(name: "X-Forwarded-For", value: v) }
            var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/")
            if case .respond(let r) = filter.requestHead(&head, &context) { return r.status }
            return nil
        }
        #expect(decide(peer: "127.0.0.1", trusted: true, xff: ["203.0.113.9"]) == nil)
        #expect(decide(peer: "127.0.0.1", trusted: true, xff: ["203.0.113.9, 10.1.1.1"]) == nil)  // through two proxies
        #expect(decide(peer: "127.0.0.1", trusted: true, xff: ["203.0.113.9, 198.51.100.1"]) == 403)  // forged left part
        #expect(decide(peer: "198.51.100.1", trusted: false, xff: ["203.0.113.9"]) == 403)  // an untrusted peer's XFF is ignored
        #expect(decide(peer: "203.0.113.5", trusted: false, xff: []) == nil)
    }

    @Test func configErrors() {
        let yaml = """
            listeners: [ { name: l, address: "127.0.0.1:0", ip_rules: { allow: ["10.0.0.0/33"] } } ]
            routes: [ { respond: {}, ip_rules: { deny: [nope] } } ]
            """
        guard case .failure(let errors) = ConfigLoader.load(text: yaml, file: nil) else { Issue.record("accepted"); return }
        #expect(Set(errors.all.map(\.path)) == ["listeners[0].ip_rules.allow[0]", "routes[0].ip_rules.deny[0]"])
    }
}
