//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import FoundationEssentials
import JWTKit
package import PorticoCore
import Synchronization

/// The keys one route's `auth.jwt` verifies tokens with: from files and a JWK Set (a file, or a URL the control
/// plane fetches and refreshes), resolved by jwt-kit into its algorithms once, when they load.
///
/// Why not `JWTKeyCollection.verify` on each request: it is an actor, so each check would be a task and two
/// thread hops. Its resolved keys (`JWTAlgorithm`) verify synchronously, so the request path looks the key up
/// here (one `Mutex`ed read: replaced only when a JWK Set is fetched again) and checks the signature on its
/// EventLoop.
package final class JWTKeySet: Sendable {
    package struct Keys: Sendable {
        /// Keys tokens name by `kid`.
        var byKid: [String: any JWTAlgorithm] = [:]
        /// Keys without a `kid`, tried for tokens without one, by algorithm.
        var unnamed: [any JWTAlgorithm] = []
        package var count: Int { self.byKid.count + self.unnamed.count }
    }

    /// The keys from files, the keys from the JWK Set URL, and the two merged (what tokens are checked with).
    private let state: Mutex<(files: Keys, jwks: Keys, merged: Keys)>

    package init(fileKeys: Keys) {
        self.state = Mutex((fileKeys, Keys(), fileKeys))
    }

    /// The keys for a token's `kid`, or, without one, every key without a `kid` for its `alg` (more than one while
    /// keys rotate).
    func keys(kid: String?, alg: String) -> [any JWTAlgorithm] {
        self.state.withLock { state in
            if let kid { return state.merged.byKid[kid].map { [$0] } ?? [] }
            return state.merged.unnamed.filter { $0.name == alg }
        }
    }

    /// Replaces the JWK Set URL's keys (the files' keys stay). Control plane.
    package func replaceJWKS(_ jwks: Keys) {
        self.state.withLock { state in
            state.jwks = jwks
            state.merged = Self.merge(state.files, jwks)
        }
    }

    /// Replaces the files' keys (read again on a reload: a key rotated in place takes effect). Control plane.
    package func replaceFileKeys(_ files: Keys) {
        self.state.withLock { state in
            state.files = files
            state.merged = Self.merge(files, state.jwks)
        }
    }

    private static func merge(_ files: Keys, _ jwks: Keys) -> Keys {
        var merged = files
        merged.byKid.merge(jwks.byKid) { file, _ in file }
        merged.unnamed += jwks.unnamed
        return merged
    }

    /// Reads `config.keys` (files). Throws `JWTKeyError` naming the key's index.
    package static func loadFiles(_ config: JWTAuthConfig) async throws -> Keys {
        var keys = Keys()
        for (i, key) in (config.keys ?? []).enumerated() {
            let algorithm = try await Self.resolve(key, index: i)
            if let kid = key.kid { keys.byKid[kid] = algorithm } else { keys.unnamed.append(algorithm) }
        }
        if let file = config.jwksFile {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw JWTKeyError(field: "jwks_file", message: "cannot read \"\(file)\"")
            }
            let jwks = try await Self.parseJWKS(Array(data), field: "jwks_file")
            keys.byKid.merge(jwks.byKid) { first, _ in first }
            keys.unnamed += jwks.unnamed
        }
        return keys
    }

    /// A JWK Set's keys. Keys jwt-kit cannot use (encryption keys, unknown types) are skipped; a set with no
    /// usable key is an error.
    package static func parseJWKS(_ data: [UInt8], field: String) async throws -> Keys {
        let jwks: JWKS
        do {
            jwks = try JSONDecoder().decode(JWKS.self, from: Data(data))
        } catch {
            throw JWTKeyError(field: field, message: "not a JWK Set (RFC 7517 §5): \(error)")
        }
        var keys = Keys()
        for jwk in jwks.keys {
            let collection = JWTKeyCollection()
            guard (try? await collection.add(jwk: jwk, isDefault: true)) != nil,
                  let algorithm = try? await collection.getKey(for: jwk.keyIdentifier, alg: jwk.algorithm?.rawValue)
            else { continue }
            if let kid = jwk.keyIdentifier?.string { keys.byKid[kid] = algorithm } else { keys.unnamed.append(algorithm) }
        }
        if keys.count == 0 { throw JWTKeyError(field: field, message: "the JWK Set has no key Portico can verify with") }
        return keys
    }

    private static let kid = JWKIdentifier(string: "k")

    /// One key file, through jwt-kit's key types (PEM parsing, HMAC secrets).
    static func resolve(_ key: JWTKeyConfig, index: Int) async throws -> any JWTAlgorithm {
        let field = "keys[\(index)]"
        guard let data = FileManager.default.contents(atPath: key.file) else {
            throw JWTKeyError(field: "\(field).file", message: "cannot read \"\(key.file)\"")
        }
        let text = String(decoding: data, as: UTF8.self)
        let collection = JWTKeyCollection()
        do {
            switch key.algorithm {
            case "HS256", "HS384", "HS512":
                var secret = Array(data)
                if secret.last == UInt8(ascii: "\n") { secret.removeLast() }
                if secret.last == UInt8(ascii: "\r") { secret.removeLast() }
                guard secret.count >= 32 else {
                    throw JWTKeyError(field: "\(field).file", message: "an HMAC secret must be at least 32 bytes (RFC 7518 §3.2)")
                }
                await collection.add(hmac: HMACKey(from: secret), digestAlgorithm: Self.digest(key.algorithm), kid: Self.kid)
            case "RS256", "RS384", "RS512":
                await collection.add(rsa: try Insecure.RSA.PublicKey(pem: text), digestAlgorithm: Self.digest(key.algorithm), kid: Self.kid)
            case "PS256", "PS384", "PS512":
                await collection.add(pss: try Insecure.RSA.PublicKey(pem: text), digestAlgorithm: Self.digest(key.algorithm), kid: Self.kid)
            case "ES256": await collection.add(ecdsa: try ES256PublicKey(pem: text), kid: Self.kid)
            case "ES384": await collection.add(ecdsa: try ES384PublicKey(pem: text), kid: Self.kid)
            case "ES512": await collection.add(ecdsa: try ES512PublicKey(pem: text), kid: Self.kid)
            case "EdDSA": await collection.add(eddsa: try EdDSA.PublicKey(pem: text), kid: Self.kid)
            default:
                throw JWTKeyError(field: "\(field).algorithm", message: "unknown algorithm \"\(key.algorithm)\" (expected HS256/384/512, RS256/384/512, PS256/384/512, ES256/384/512 or EdDSA)")
            }
            return try await collection.getKey(for: Self.kid)
        } catch let e as JWTKeyError {
            throw e
        } catch {
            throw JWTKeyError(field: "\(field).file", message: "not a \(key.algorithm) public key in PEM: \(error)")
        }
    }

    private static func digest(_ algorithm: String) -> DigestAlgorithm {
        algorithm.hasSuffix("512") ? .sha512 : algorithm.hasSuffix("384") ? .sha384 : .sha256
    }
}

/// A key that could not be loaded: the field under `auth.jwt` and why.
package struct JWTKeyError: Error, Sendable {
    package var field: String
    package var message: String
}
