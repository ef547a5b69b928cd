//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOHTTP1

/// A route's `redirect`: answers with a redirect to a target template in which `$scheme`, `$host` and
/// `$request_uri` stand for the request's (nginx's variables of the same names).
public struct RedirectFilter: ProxyFilter {
    public let status: Int
    public let target: String
    public var phases: FilterPhases { .requestHead }

    public init(status: Int, target: String) {
        self.status = status
        self.target = target
    }

    public func requestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) -> FilterDecision {
        let location = Self.expand(self.target, scheme: context.scheme, host: context.host ?? "", requestURI: Self.requestURI(head.uri))
        var headers = HTTPHeaders()
        headers.add(name: "Location", value: location)
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        return .respond(FilterResponse(status: self.status, headers: headers, text: "Redirecting to \(location)\n"))
    }

    /// The path and query of a target, also when it came in absolute form.
    static func requestURI(_ uri: String) -> String {
        guard !uri.hasPrefix("/") else { return uri }
        let lower = uri.prefix(8).lowercased()
        let schemeLength = lower.hasPrefix("http://") ? 7 : (lower.hasPrefix("https://") ? 8 : 0)
        guard schemeLength > 0 else { return uri }
        let rest = uri.dropFirst(schemeLength)
        guard let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) else { return "/" }
        return rest[slash] == "?" ? "/" + rest[slash...] : String(rest[slash...])
    }

    static func expand(_ template: String, scheme: String, host: String, requestURI: String) -> String {
        guard template.contains("$") else { return template }
        return template
            .replacingAll("$request_uri", with: requestURI)
            .replacingAll("$scheme", with: scheme)
            .replacingAll("$host", with: host)
    }
}

extension String {
    fileprivate func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = ""
        var rest = self[...]
        while let r = rest.firstRange(of: target) {
            out += rest[..<r.lowerBound]
            out += replacement
            rest = rest[r.upperBound...]
        }
        out += rest
        return out
    }
}
