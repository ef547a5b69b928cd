//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOHTTP1

/// Compiled `forwarding` settings: what the proxy adds to requests going upstream and removes from responses
/// coming back. Pure; applied on the connection's EventLoop.
public struct ForwardingPolicy: Sendable {
    public var xForwardedFor: Bool
    public var xForwardedProto: Bool
    public var xForwardedHost: Bool
    public var xRealIP: Bool
    public var forwarded: Bool
    /// The full `Via` value (`1.1 portico`), or nil when off.
    public var via: String?
    public var trustedProxies: [CIDR]
    public var serverHeader: ServerHeaderPolicy
    public var hideResponseHeaders: [String]
    public var rewriteLocation: Bool

    public enum ServerHeaderPolicy: Sendable, Hashable {
        case remove
        case keep
        case replace(String)
    }

    /// Fields that carry an mTLS client identity upstream (`X-Client-Subject`, `X-Client-Cert-SHA256` and any
    /// configured names): removed from every untrusted client's request on every listener, so a client of a plain
    /// listener cannot claim one.
    public var identityFields: [String] = ["x-client-subject", "x-client-cert-sha256"]
    /// `X-Request-ID` kept (from trusted proxies) or made.
    public var requestID: Bool

    public init(_ c: ForwardingConfig?) {
        self.xForwardedFor = c?.xForwardedFor ?? true
        self.xForwardedProto = c?.xForwardedProto ?? true
        self.xForwardedHost = c?.xForwardedHost ?? true
        self.xRealIP = c?.xRealIp ?? false
        self.requestID = c?.requestId ?? true
        self.forwarded = c?.forwarded ?? false
        let via = c?.via ?? "portico"
        self.via = via.isEmpty ? nil : "1.1 \(via)"
        self.trustedProxies = (c?.trustedProxies ?? []).compactMap(CIDR.init(parsing:))
        switch c?.serverHeader ?? "remove" {
        case "remove": self.serverHeader = .remove
        case "keep": self.serverHeader = .keep
        case let other: self.serverHeader = .replace(other)
        }
        self.hideResponseHeaders = c?.hideResponseHeaders ?? ["X-Powered-By"]
        self.rewriteLocation = c?.rewriteLocation ?? true
    }

    /// Whether headers that describe earlier hops may be believed from this peer (text form, as
    /// `SocketAddress.ipAddress` gives it). Parses the address only when there are trusted proxies to match.
    public func isTrusted(_ peerText: String) -> Bool {
        guard !self.trustedProxies.isEmpty else { return false }
        return self.isTrusted(IPAddressBytes(peerText))
    }

    /// Whether headers that describe earlier hops may be believed from this peer.
    public func isTrusted(_ peer: IPAddressBytes?) -> Bool {
        guard let peer, !self.trustedProxies.isEmpty else { return false }
        return self.trustedProxies.contains { $0.contains(peer) }
    }

    /// Adds the client-identifying fields to a request about to go upstream.
    ///
    /// - Parameters:
    ///   - clientIP: the downstream peer's address as text (`203.0.113.7`, `::1`).
    ///   - trusted: `isTrusted(peer)`, computed once per connection.
    ///   - scheme: `http` or `https` on the downstream side.
    ///   - host: the downstream Host header, if any.
    /// - Parameter verifiedIdentity: the request came with a verified client certificate, whose fields the
    ///   listener's identity filter has set (they are kept).
    public func applyRequest(_ headers: inout HTTPHeaders, clientIP: String, trusted: Bool, scheme: String, host: String?,
                             verifiedIdentity: Bool = false) {
        if !trusted && !verifiedIdentity {
            for name in self.identityFields { headers.remove(name: name) }
        }
        if self.xForwardedFor {
            if trusted, let existing = headers.first(name: "x-forwarded-for") {
                headers.replaceOrAdd(name: "X-Forwarded-For", value: existing + ", " + clientIP)
            } else {
                headers.replaceOrAdd(name: "X-Forwarded-For", value: clientIP)
            }
        } else if !trusted {
            headers.remove(name: "x-forwarded-for")
        }
        if self.xForwardedProto {
            if !(trusted && headers.contains(name: "x-forwarded-proto")) {
                headers.replaceOrAdd(name: "X-Forwarded-Proto", value: scheme)
            }
        } else if !trusted {
            headers.remove(name: "x-forwarded-proto")
        }
        if self.xForwardedHost {
            if !(trusted && headers.contains(name: "x-forwarded-host")) {
                if let host { headers.replaceOrAdd(name: "X-Forwarded-Host", value: host) } else { headers.remove(name: "x-forwarded-host") }
            }
        } else if !trusted {
            headers.remove(name: "x-forwarded-host")
        }
        if self.xRealIP {
            if !(trusted && headers.contains(name: "x-real-ip")) {
                headers.replaceOrAdd(name: "X-Real-IP", value: clientIP)
            }
        } else if !trusted {
            // Not Portico's field: an untrusted client's own is not passed on as if it were (a spoofing gap).
            headers.remove(name: "x-real-ip")
        }
        if self.forwarded {
            var element = "for=" + Self.forwardedNode(clientIP) + ";proto=" + scheme
            if let host { element += ";host=" + Self.quotedIfNeeded(host) }
            if trusted, let existing = headers.first(name: "forwarded") {
                headers.replaceOrAdd(name: "Forwarded", value: existing + ", " + element)
            } else {
                headers.replaceOrAdd(name: "Forwarded", value: element)
            }
        } else if !trusted {
            headers.remove(name: "forwarded")
        }
        if let via = self.via { headers.add(name: "Via", value: via) }
    }

    /// RFC 7239 §6: IPv6 nodes are bracketed and quoted.
    static func forwardedNode(_ ip: String) -> String {
        ip.contains(":") ? "\"[\(ip)]\"" : ip
    }

    static func quotedIfNeeded(_ s: String) -> String {
        s.allSatisfy { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" } ? s : "\"\(s)\""
    }

    /// Masks the upstream in a response about to go downstream: Server, hidden headers, Via, and Location /
    /// Content-Location pointing at `upstreamAuthority` rewritten to `publicBase` (`https://app.example.com`).
    /// `publicBase` (`https://app.example.com`) is only built when there is a `Location` to rewrite.
    public func applyResponse(_ headers: inout HTTPHeaders, upstreamAuthority: String, publicBase: @autoclosure () -> String?) {
        switch self.serverHeader {
        case .keep: break
        case .remove: headers.remove(name: "server")
        case .replace(let value): headers.replaceOrAdd(name: "Server", value: value)
        }
        for name in self.hideResponseHeaders { headers.remove(name: name) }
        if let via = self.via { headers.add(name: "Via", value: via) }
        guard self.rewriteLocation else { return }
        for name in Self.locationFields {
            guard let value = headers.first(name: name), let publicBase = publicBase(),
                let rewritten = Self.rewrite(value, upstreamAuthority: upstreamAuthority, publicBase: publicBase)
            else { continue }
            headers.replaceOrAdd(name: name == "location" ? "Location" : "Content-Location", value: rewritten)
        }
    }

    static let locationFields = ["location", "content-location"]

    /// `http://127.0.0.1:9001/x` → `https://app.example.com/x` when `127.0.0.1:9001` is the upstream.
    static func rewrite(_ value: String, upstreamAuthority: String, publicBase: String) -> String? {
        for scheme in ["http://", "https://"] {
            let prefix = scheme + upstreamAuthority
            guard value.utf8.count >= prefix.utf8.count, value.lowercased().hasPrefix(prefix.lowercased()) else { continue }
            let rest = value.dropFirst(prefix.count)
            if rest.isEmpty || rest.hasPrefix("/") || rest.hasPrefix("?") || rest.hasPrefix("#") {
                return publicBase + (rest.isEmpty ? "/" : String(rest))
            }
        }
        return nil
    }
}
