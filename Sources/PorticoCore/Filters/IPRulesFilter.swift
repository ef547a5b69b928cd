//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOHTTP1

/// A route's `ip_rules`: a client whose address the rules refuse gets 403. The client's address is the socket's,
/// or, when the peer is one of `forwarding.trusted_proxies`, the right-most `X-Forwarded-For` address that is not a
/// trusted proxy (the first hop nobody trusted vouches for; a client cannot forge it).
public struct IPRulesFilter: ProxyFilter {
    public let rules: IPRules
    public let trustedProxies: [CIDR]
    public var phases: FilterPhases { .requestHead }

    public init(rules: IPRules, trustedProxies: [CIDR]) {
        self.rules = rules
        self.trustedProxies = trustedProxies
    }

    public func requestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) -> FilterDecision {
        let client = self.clientAddress(context)
        guard !self.rules.allows(client) else { return .proceed }
        context.ipDenied = true
        return .respond(FilterResponse(status: 403, headers: ["Content-Type": "text/plain; charset=utf-8"], text: "403 Forbidden\n"))
    }

    func clientAddress(_ context: RequestContext) -> String {
        guard context.clientTrusted else { return context.clientIP }
        let hops = context.requestHeaders["x-forwarded-for"].flatMap { $0.split(separator: ",") }.map { String($0.trimmingOWS()) }
        for hop in hops.reversed() {
            guard let address = IPAddressBytes(hop) else { return hop }  // unparsable: refused by any rule
            if !self.trustedProxies.contains(where: { $0.contains(address.unmapped) }) { return hop }
        }
        return hops.first ?? context.clientIP
    }
}
