//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOHTTP1

/// A route's compiled header changes: remove, then set, then add (the order Caddy's `header` handler applies).
public struct HeaderRules: Sendable, Hashable {
    public var remove: [String]
    public var set: [(name: String, value: String)]
    public var add: [(name: String, value: String)]

    public var isEmpty: Bool { self.remove.isEmpty && self.set.isEmpty && self.add.isEmpty }

    public init(_ config: HeaderRulesConfig?) {
        self.remove = config?.remove ?? []
        self.set = (config?.set ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        self.add = (config?.add ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    public func apply(to headers: inout HTTPHeaders) {
        for name in self.remove { headers.remove(name: name) }
        for (name, value) in self.set { headers.replaceOrAdd(name: name, value: value) }
        for (name, value) in self.add { headers.add(name: name, value: value) }
    }

    public static func == (a: HeaderRules, b: HeaderRules) -> Bool {
        a.remove == b.remove && a.set.elementsEqual(b.set, by: ==) && a.add.elementsEqual(b.add, by: ==)
    }

    public func hash(into h: inout Hasher) {
        h.combine(self.remove)
        for (n, v) in self.set { h.combine(n); h.combine(v) }
        for (n, v) in self.add { h.combine(n); h.combine(v) }
    }
}
