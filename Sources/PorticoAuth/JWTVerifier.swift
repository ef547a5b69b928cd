//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import FoundationEssentials
import JWTKit
package import PorticoCore

/// Checks one compact JWS token (RFC 7515 §7.1) against a key set and a route's claim rules: the signature with the
/// key its `kid` names and only with that key's algorithm (never `none`, never an HMAC key used as an RSA one),
/// then `exp`, `nbf` (with leeway), `iss`, `aud` and required claims (RFC 7519 §4.1).
///
/// Synchronous and allocation-light: runs on the request's EventLoop. An ES256 check costs tens of microseconds, so
/// `JWTAuthFilter` remembers verified tokens.
package struct JWTVerifier: Sendable {
    package let keys: JWTKeySet
    let issuers: Set<String>?
    let audiences: Set<String>?
    let leeway: Double
    let requireClaims: [String: String]

    package init(keys: JWTKeySet, config: JWTAuthConfig) {
        self.keys = keys
        self.issuers = config.issuers.map(Set.init)
        self.audiences = config.audiences.map(Set.init)
        self.leeway = Double(config.leeway?.nanoseconds ?? 30_000_000_000) / 1e9
        self.requireClaims = config.requireClaims ?? [:]
    }

    package enum Failure: String, Error, Sendable {
        case malformed
        case unsupportedAlgorithm = "unsupported_algorithm"
        case unknownKey = "unknown_key"
        case badSignature = "bad_signature"
        case expired
        case notYetValid = "not_yet_valid"
        case wrongIssuer = "wrong_issuer"
        case wrongAudience = "wrong_audience"
        case missingClaim = "missing_claim"

        /// For `error_description` (RFC 6750 §3).
        var description: String {
            switch self {
            case .malformed: "the token is malformed"
            case .unsupportedAlgorithm: "the token's algorithm is not accepted"
            case .unknownKey: "the token's key is unknown"
            case .badSignature: "the token's signature is invalid"
            case .expired: "the token has expired"
            case .notYetValid: "the token is not valid yet"
            case .wrongIssuer: "the token's issuer is not accepted"
            case .wrongAudience: "the token is not for this audience"
            case .missingClaim: "the token lacks a required claim"
            }
        }
    }

    /// A verified token: its claims, and when it stops being valid (seconds since 1970, with the leeway).
    package struct Verified: Sendable {
        package var claims: [String: Claim]
        package var validUntil: Double?
    }

    package func verify(_ token: Substring, now: Double) -> Result<Verified, Failure> {
        let parts = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty, !parts[2].isEmpty,
              let headerBytes = Base64URL.decode(parts[0]),
              let header = try? JSONDecoder().decode(Header.self, from: Data(headerBytes)),
              let signature = Base64URL.decode(parts[2])
        else { return .failure(.malformed) }
        // RFC 7515 §4.1.11: a header that names extensions we do not understand must be refused.
        guard header.crit == nil, header.alg != "none" else { return .failure(.unsupportedAlgorithm) }
        let candidates = self.keys.keys(kid: header.kid, alg: header.alg)
        guard !candidates.isEmpty else { return .failure(.unknownKey) }
        // Only with the key's own algorithm: never an HMAC check with an RSA or EC key's bytes.
        let matching = candidates.filter { $0.name == header.alg }
        guard !matching.isEmpty else { return .failure(.unsupportedAlgorithm) }
        let signingInput = Array(token.utf8[parts[0].startIndex..<parts[1].endIndex])
        guard matching.contains(where: { (try? $0.verify(signature, signs: signingInput)) == true }) else { return .failure(.badSignature) }
        guard let payloadBytes = Base64URL.decode(parts[1]),
              let claims = try? JSONDecoder().decode([String: Claim].self, from: Data(payloadBytes))
        else { return .failure(.malformed) }
        return self.check(claims, now: now)
    }

    /// The claim rules (RFC 7519 §4.1.3–5).
    func check(_ claims: [String: Claim], now: Double) -> Result<Verified, Failure> {
        var validUntil: Double?
        if let exp = claims["exp"] {
            guard case .number(let t) = exp else { return .failure(.malformed) }
            if now > t + self.leeway { return .failure(.expired) }
            validUntil = t + self.leeway
        }
        if let nbf = claims["nbf"] {
            guard case .number(let t) = nbf else { return .failure(.malformed) }
            if now + self.leeway < t { return .failure(.notYetValid) }
        }
        if let issuers = self.issuers {
            guard case .string(let iss)? = claims["iss"], issuers.contains(iss) else { return .failure(.wrongIssuer) }
        }
        if let audiences = self.audiences {
            let aud: [String]
            switch claims["aud"] {
            case .string(let a)?: aud = [a]
            case .array(let list)?: aud = list.compactMap { if case .string(let s) = $0 { s } else { nil } }
            default: aud = []
            }
            guard aud.contains(where: audiences.contains) else { return .failure(.wrongAudience) }
        }
        for (name, value) in self.requireClaims {
            // Exactly: a string equal to it, or a number or boolean written as it.
            let matches: Bool
            switch claims[name] {
            case .string(let s)?: matches = s == value
            case .number?, .bool?: matches = claims[name]?.headerValue == value
            default: matches = false
            }
            guard matches else { return .failure(.missingClaim) }
        }
        return .success(Verified(claims: claims, validUntil: validUntil))
    }

    struct Header: Decodable {
        var alg: String
        var kid: String?
        var crit: [String]?
    }
}

/// A JSON value of a token's payload.
package enum Claim: Decodable, Sendable, Equatable {
    case string(String)
    case number(Double)
    case bool(Bool)
    case array([Claim])
    case object([String: Claim])
    case null

    package init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([Claim].self) { self = .array(a) }
        else { self = .object(try c.decode([String: Claim].self)) }
    }

    /// The claim as a request field value: strings as they are, integers without a fraction, arrays joined with
    /// commas; objects are not forwarded. Control characters are left out (a field value must not carry them).
    package var headerValue: String? {
        let text: String
        switch self {
        case .string(let s): text = s
        case .number(let n): text = n == n.rounded() && abs(n) < 1e15 ? String(Int64(n)) : String(n)
        case .bool(let b): text = b ? "true" : "false"
        case .array(let items): text = items.compactMap(\.headerValue).joined(separator: ",")
        case .object, .null: return nil
        }
        return String(decoding: text.utf8.filter { $0 >= 0x20 && $0 != 0x7F }, as: UTF8.self)
    }
}

/// base64url without padding (RFC 7515 §2, RFC 4648 §5).
enum Base64URL {
    static func decode(_ text: Substring.UTF8View.SubSequence) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(text.count * 3 / 4)
        var buffer: UInt32 = 0
        var bits = 0
        for c in text {
            let v: UInt32
            switch c {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(c - UInt8(ascii: "A"))
            case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(c - UInt8(ascii: "a")) + 26
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(c - UInt8(ascii: "0")) + 52
            case UInt8(ascii: "-"): v = 62
            case UInt8(ascii: "_"): v = 63
            default: return nil
            }
            buffer = buffer << 6 | v
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
            }
        }
        // A lone trailing character (6 bits) cannot encode a byte.
        if bits >= 6 { return nil }
        return out
    }
}
