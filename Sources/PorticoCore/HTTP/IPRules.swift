//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Allow and deny lists of CIDR ranges (`ip_rules` on a listener or a route), IPv4 and IPv6. An address is refused
/// when a `deny` range holds it, or when there are `allow` ranges and none holds it (deny wins, as Traefik's and
/// Caddy's matchers combine). IPv4-mapped IPv6 addresses count as their IPv4 form. Pure; checked per connection
/// (listener) or per request (route).
public struct IPRules: Sendable, Hashable {
    public let allow: [CIDR]
    public let deny: [CIDR]

    public init(_ config: IPRulesConfig) {
        self.allow = (config.allow ?? []).compactMap(CIDR.init(parsing:))
        self.deny = (config.deny ?? []).compactMap(CIDR.init(parsing:))
    }

    public var isEmpty: Bool { self.allow.isEmpty && self.deny.isEmpty }

    public func allows(_ address: IPAddressBytes) -> Bool {
        let a = address.unmapped
        if self.deny.contains(where: { $0.contains(a) }) { return false }
        return self.allow.isEmpty || self.allow.contains { $0.contains(a) }
    }

    /// For text addresses; one that does not parse is refused when there are rules.
    public func allows(_ address: String) -> Bool {
        guard let a = IPAddressBytes(address) else { return self.isEmpty }
        return self.allows(a)
    }
}

/// `ip_rules`: CIDR ranges (`10.0.0.0/8`, `2001:db8::/32`, or one address).
public struct IPRulesConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// Only these ranges (when any are listed).
    public var allow: [String]?
    /// Never these ranges (checked first).
    public var deny: [String]?

    public init(allow: [String]? = nil, deny: [String]? = nil) {
        self.allow = allow
        self.deny = deny
    }

    public static var configPlaceholder: IPRulesConfig { .init() }
}
