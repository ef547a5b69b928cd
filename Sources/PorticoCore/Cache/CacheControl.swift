//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// The directives of a `Cache-Control` field (RFC 9111 §5.2), or of a targeted field with the same syntax
/// (`CDN-Cache-Control`, `Portico-Cache-Control`, RFC 9213), request and response directives together.
///
/// Parsed where a cache decision is made, on the request's EventLoop. Unknown directives are ignored (§5.2.3).
/// Where a directive is repeated or its value invalid, the most restrictive reading wins (§4.2.1): an invalid
/// `max-age` means stale.
public struct CacheControl: Sendable, Hashable {
    public var maxAge: Int?
    public var sMaxAge: Int?
    public var noStore = false
    /// `no-cache`, qualified or not (a qualified one is taken as unqualified: §5.2.2.4 allows it).
    public var noCache = false
    /// `private`, qualified or not (a shared cache stores neither).
    public var isPrivate = false
    public var isPublic = false
    public var mustRevalidate = false
    public var proxyRevalidate = false
    public var mustUnderstand = false
    public var noTransform = false
    public var immutable = false
    /// RFC 5861.
    public var staleWhileRevalidate: Int?
    public var staleIfError: Int?
    /// Request: `max-stale` (`Int.max` when it has no value: any staleness).
    public var maxStale: Int?
    public var minFresh: Int?
    public var onlyIfCached = false
    /// The field was present with at least one directive Portico understood.
    public var isEmpty: Bool { self == CacheControl() }

    public init() {}

    /// Parses every value of the field (several field lines are one list, RFC 9110 §5.3).
    public init<S: Sequence<String>>(fieldValues: S) {
        for value in fieldValues {
            for (name, argument) in Self.directives(value) {
                self.apply(name.lowercased(), argument)
            }
        }
    }

    private mutating func apply(_ name: String, _ argument: Substring?) {
        // delta-seconds (§1.2.2): digits; larger than 2^31 is 2^31. Invalid: 0 (stale), the restrictive reading.
        func seconds() -> Int {
            guard let a = argument, !a.isEmpty, a.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return 0 }
            return a.utf8.count > 10 ? 1 << 31 : min(Int(a) ?? 0, 1 << 31)
        }
        // A repeated directive: the smaller value (more restrictive).
        func keep(_ current: Int?, _ new: Int) -> Int { current.map { min($0, new) } ?? new }
        switch name {
        case "max-age": self.maxAge = keep(self.maxAge, seconds())
        case "s-maxage": self.sMaxAge = keep(self.sMaxAge, seconds())
        case "no-store": self.noStore = true
        case "no-cache": self.noCache = true
        case "private": self.isPrivate = true
        case "public": self.isPublic = true
        case "must-revalidate": self.mustRevalidate = true
        case "proxy-revalidate": self.proxyRevalidate = true
        case "must-understand": self.mustUnderstand = true
        case "no-transform": self.noTransform = true
        case "immutable": self.immutable = true
        case "stale-while-revalidate": self.staleWhileRevalidate = keep(self.staleWhileRevalidate, seconds())
        case "stale-if-error": self.staleIfError = keep(self.staleIfError, seconds())
        case "max-stale": self.maxStale = keep(self.maxStale, argument == nil ? Int.max : seconds())
        case "min-fresh":
            // More freshness asked for is the restrictive reading.
            let s = seconds()
            self.minFresh = self.minFresh.map { max($0, s) } ?? s
        case "only-if-cached": self.onlyIfCached = true
        default: break
        }
    }

    /// `name[=token|quoted-string]` items of one field value; commas inside quoted strings do not split.
    static func directives(_ value: String) -> [(Substring, Substring?)] {
        var out: [(Substring, Substring?)] = []
        var i = value.startIndex
        while i < value.endIndex {
            // Skip separators and whitespace.
            while i < value.endIndex, value[i] == "," || value[i] == " " || value[i] == "\t" { i = value.index(after: i) }
            guard i < value.endIndex else { break }
            let nameStart = i
            while i < value.endIndex, value[i] != "=" && value[i] != "," && value[i] != " " && value[i] != "\t" { i = value.index(after: i) }
            let name = value[nameStart..<i]
            while i < value.endIndex, value[i] == " " || value[i] == "\t" { i = value.index(after: i) }
            var argument: Substring?
            if i < value.endIndex, value[i] == "=" {
                i = value.index(after: i)
                while i < value.endIndex, value[i] == " " || value[i] == "\t" { i = value.index(after: i) }
                if i < value.endIndex, value[i] == "\"" {
                    let start = value.index(after: i)
                    var j = start
                    while j < value.endIndex, value[j] != "\"" {
                        if value[j] == "\\" { j = value.index(after: j) }
                        if j < value.endIndex { j = value.index(after: j) }
                    }
                    argument = value[start..<min(j, value.endIndex)]
                    i = j < value.endIndex ? value.index(after: j) : j
                } else {
                    let start = i
                    while i < value.endIndex, value[i] != "," && value[i] != " " && value[i] != "\t" { i = value.index(after: i) }
                    argument = value[start..<i]
                }
            }
            // Anything else up to the next comma is not part of a valid directive; skipped.
            while i < value.endIndex, value[i] != "," { i = value.index(after: i) }
            if !name.isEmpty { out.append((name, argument)) }
        }
        return out
    }
}
