//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import FoundationEssentials
import JWTKit
public import PorticoCore

/// What `ConfigValidator` cannot check without reading files: that every route's htpasswd file parses (each bad
/// line named) and every JWT key file holds a key of its algorithm. Runs with the validator, on the control plane,
/// before a config is accepted, so a bad file keeps the running config in force.
public enum AuthConfigCheck {
    public static func errors(_ config: PorticoConfig) -> [ConfigError] {
        var errors: [ConfigError] = []
        for (i, route) in config.routes.enumerated() {
            let p = "routes[\(i)].auth"
            if let basic = route.auth?.basic, !basic.htpasswd.isEmpty {
                do {
                    _ = try HTPasswdFile(path: basic.htpasswd)
                } catch {
                    errors.append(ConfigError(path: "\(p).basic.htpasswd", message: "\(basic.htpasswd): \(error)"))
                }
            }
            if let jwt = route.auth?.jwt {
                for e in Self.keyErrors(jwt) { errors.append(ConfigError(path: "\(p).jwt.\(e.field)", message: e.message)) }
            }
        }
        return errors
    }

    /// Each key file parsed with the key type of its algorithm (synchronously; `JWTKeySet` resolves them later).
    static func keyErrors(_ config: JWTAuthConfig) -> [JWTKeyError] {
        var errors: [JWTKeyError] = []
        for (i, key) in (config.keys ?? []).enumerated() {
            guard let data = FileManager.default.contents(atPath: key.file) else {
                errors.append(JWTKeyError(field: "keys[\(i)].file", message: "cannot read \"\(key.file)\""))
                continue
            }
            let pem = String(decoding: data, as: UTF8.self)
            do {
                switch key.algorithm {
                case "HS256", "HS384", "HS512":
                    let length = pem.utf8.count - (pem.hasSuffix("\r\n") ? 2 : pem.hasSuffix("\n") ? 1 : 0)
                    if length < 32 {
                        errors.append(JWTKeyError(field: "keys[\(i)].file", message: "an HMAC secret must be at least 32 bytes (RFC 7518 §3.2)"))
                    }
                case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512": _ = try Insecure.RSA.PublicKey(pem: pem)
                case "ES256": _ = try ES256PublicKey(pem: pem)
                case "ES384": _ = try ES384PublicKey(pem: pem)
                case "ES512": _ = try ES512PublicKey(pem: pem)
                case "EdDSA": _ = try EdDSA.PublicKey(pem: pem)
                default:
                    errors.append(JWTKeyError(field: "keys[\(i)].algorithm", message: "unknown algorithm \"\(key.algorithm)\" (expected HS256/384/512, RS256/384/512, PS256/384/512, ES256/384/512 or EdDSA)"))
                }
            } catch {
                errors.append(JWTKeyError(field: "keys[\(i)].file", message: "\(key.file) is not a \(key.algorithm) public key in PEM"))
            }
        }
        if let file = config.jwksFile {
            if let data = FileManager.default.contents(atPath: file) {
                if (try? JSONDecoder().decode(JWKS.self, from: data)) == nil {
                    errors.append(JWTKeyError(field: "jwks_file", message: "\(file) is not a JWK Set (RFC 7517 §5)"))
                }
            } else {
                errors.append(JWTKeyError(field: "jwks_file", message: "cannot read \"\(file)\""))
            }
        }
        return errors
    }
}
