//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOHTTP1

/// A TLS listener's `hsts`: `Strict-Transport-Security` on every response (RFC 6797 §7.1: only over TLS).
public struct HSTSFilter: ProxyFilter {
    public let value: String
    public var phases: FilterPhases { .responseHead }

    public init(value: String) {
        self.value = value
    }

    public func responseHead(_ head: inout HTTPResponseHead, _ context: inout RequestContext) {
        head.headers.replaceOrAdd(name: "Strict-Transport-Security", value: self.value)
    }
}
