//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

package import NIOCore
package import NIOHTTP1
package import PorticoCore

/// A route's `auth.jwt`: a request needs a valid bearer token (RFC 6750) from the places `token_from` names; chosen
/// claims go upstream as request fields. Refused: 401 with `WWW-Authenticate: Bearer` (with
/// `error="invalid_token"` when a token was there, §3.1), the reason in the log (`auth_failed(jwt:expired)`).
///
/// Runs on the request's EventLoop, synchronously: a remembered token is one shard-locked lookup; a new one is
/// verified in place (`JWTVerifier`) and remembered until it expires, at most a minute.
package struct JWTAuthFilter: ProxyFilter {
    let verifier: JWTVerifier
    let sources: [TokenSource]
    /// Claim name → request field, sorted by claim for a stable order.
    let forwardClaims: [(claim: String, field: String)]
    let verified = AuthCache<VerifiedToken>()
    /// Called (on the EventLoop) when a token names a key the set lacks: a JWK Set URL may have a new one.
    let onUnknownKey: (@Sendable () -> Void)?

    package var phases: FilterPhases { .requestHead }

    enum TokenSource: Sendable, Equatable {
        case header
        case cookie(String)
        case query(String)

        init?(parsing text: String) {
            if text == "header" { self = .header; return }
            if text.hasPrefix("cookie:"), text.count > 7 { self = .cookie(String(text.dropFirst(7))); return }
            if text.hasPrefix("query:"), text.count > 6 { self = .query(String(text.dropFirst(6))); return }
            return nil
        }
    }

    package init(keys: JWTKeySet, config: JWTAuthConfig, onUnknownKey: (@Sendable () -> Void)? = nil) {
        self.verifier = JWTVerifier(keys: keys, config: config)
        self.sources = (config.tokenFrom ?? ["header"]).compactMap(TokenSource.init(parsing:))
        self.forwardClaims = (config.forwardClaims ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        self.onUnknownKey = onUnknownKey
    }

    package func requestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) -> FilterDecision {
        // Identity fields are Portico's to set: never the client's.
        for (_, field) in self.forwardClaims { head.headers.remove(name: field) }
        guard let token = self.token(head, context) else {
            context.authFailure = "jwt:missing_token"
            return .respond(Self.unauthorized(nil))
        }
        let now = Int64(NIODeadline.now().uptimeNanoseconds)
        let identity: VerifiedToken
        if let remembered = self.verified.get(String(token), now: now) {
            identity = remembered
        } else {
            let wall = unixSeconds()
            switch self.verifier.verify(token, now: wall) {
            case .failure(let failure):
                if failure == .unknownKey { self.onUnknownKey?() }
                context.authFailure = "jwt:\(failure.rawValue)"
                return .respond(Self.unauthorized(failure))
            case .success(let result):
                identity = VerifiedToken(
                    claims: result.claims,
                    fields: self.forwardClaims.compactMap { claim, field in result.claims[claim]?.headerValue.map { (field, $0) } })
                let seconds = min(60, (result.validUntil ?? .infinity) - wall)
                if seconds > 0 { self.verified.set(String(token), identity, until: now + Int64(seconds * 1e9), now: now) }
            }
        }
        for (field, value) in identity.fields { head.headers.add(name: field, value: value) }
        context.identity = identity
        return .proceed
    }

    /// The token from the first source that has one.
    func token(_ head: HTTPRequestHead, _ context: RequestContext) -> Substring? {
        for source in self.sources {
            switch source {
            case .header:
                for value in head.headers["authorization"] {
                    let v = value[...].trimmingOWS()
                    // RFC 6750 §2.1: `Bearer` (the scheme compared without case, RFC 9110 §11.1), one space, the token.
                    guard v.utf8.count > 7, v.prefix(7).caseInsensitiveASCIIEqual("bearer ") else { continue }
                    let token = v.dropFirst(7).trimmingOWS()
                    if !token.isEmpty { return token }
                }
            case .cookie(let name):
                if let token = head.headers.cookie(name), !token.isEmpty { return token }
            case .query(let name):
                guard let q = context.uri.firstIndex(of: "?") else { continue }
                for pair in context.uri[context.uri.index(after: q)...].split(separator: "&") where pair.hasPrefix(name + "=") {
                    let value = pair.dropFirst(name.utf8.count + 1)
                    if !value.isEmpty { return value }
                }
            }
        }
        return nil
    }

    static func unauthorized(_ failure: JWTVerifier.Failure?) -> FilterResponse {
        let challenge = failure.map { "Bearer error=\"invalid_token\", error_description=\"\($0.description)\"" } ?? "Bearer"
        return FilterResponse(status: 401, headers: ["WWW-Authenticate": challenge, "Content-Type": "text/plain; charset=utf-8"],
                              text: "401 Unauthorized\n")
    }
}

/// A verified token's claims, and the request fields they give (computed once per token).
final class VerifiedToken: AuthIdentity {
    let claims: [String: Claim]
    let fields: [(String, String)]

    init(claims: [String: Claim], fields: [(String, String)]) {
        self.claims = claims
        self.fields = fields
    }

    var user: String? { self.claims["sub"]?.headerValue }
    func claim(_ name: String) -> String? { self.claims[name]?.headerValue }
}
