//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Crypto
import _CryptoExtras
import Foundation
import HummingbirdBcrypt
import PorticoAuth
@testable import PorticoControl
import PorticoCore
import PorticoTestSupport
import Testing

/// Authentication at the edge (issue 10 §5): Basic from an htpasswd file and JWT bearer tokens, through the real
/// binary's listeners against a real origin. The origin's echo page shows what reached it.
@Suite(.serialized) struct AuthTests {
    static func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("portico-auth-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    func get(_ port: Int, _ target: String, _ fields: [String] = []) throws -> RawResponse {
        let c = try RawHTTPClient(port: port)
        try c.send("GET \(target) HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + fields.map { $0 + "\r\n" }.joined() + "\r\n")
        return try #require(c.readResponses(1).first)
    }

    static func basic(_ user: String, _ password: String) -> String {
        "Authorization: Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
    }

    // MARK: Basic

    @Test func basicAuthFromAnHtpasswdFile() async throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("users.htpasswd")
        let sha = Data(Insecure.SHA1.hash(data: Data("s3cret".utf8))).base64EncodedString()
        try "# users\nalice:\(Bcrypt.hash("wonderland", cost: 5))\nbob:{SHA}\(sha)\ncarol:$2y$\(Bcrypt.hash("pw", cost: 4).dropFirst(4))\n".write(to: file, atomically: true, encoding: .utf8)
        let origin = try await TestOrigin.start(name: "o")
        let yaml = """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes:
              - { match: { path_prefix: /private/ }, cluster: c, auth: { basic: { htpasswd: "\(file.path)", realm: "Staff \\"only\\"" } } }
              - { cluster: c }
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin])
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let port = proxy.port()

        let none = try get(port, "/private/a")
        #expect(none.status == 401 && none.header("www-authenticate") == "Basic realm=\"Staff \\\"only\\\"\", charset=\"UTF-8\"")
        #expect(try get(port, "/private/a", [Self.basic("alice", "wrong")]).status == 401)
        #expect(try get(port, "/private/a", [Self.basic("nobody", "wonderland")]).status == 401)
        #expect(try get(port, "/private/a", ["Authorization: Bearer abc"]).status == 401)
        #expect(origin.requestCount == 0)

        // Good credentials (bcrypt, and {SHA}): through, with the user upstream; the client's own field removed.
        let alice = try get(port, "/private/a", [Self.basic("alice", "wonderland"), "X-Auth-User: mallory"])
        #expect(alice.status == 200)
        #expect(alice.body.contains("x-auth-user: alice") && !alice.body.contains("mallory"))
        #expect(try get(port, "/private/a", [Self.basic("bob", "s3cret")]).body.contains("x-auth-user: bob"))
        #expect(try get(port, "/private/a", [Self.basic("carol", "pw")]).body.contains("x-auth-user: carol"))  // $2y$, as htpasswd -B writes
        // Remembered: the same credentials again (from the cache) still pass; the scheme compared without case.
        #expect(try get(port, "/private/b", ["authorization: basic " + Data("alice:wonderland".utf8).base64EncodedString()]).status == 200)
        // Other routes need nothing, and the client's X-Auth-User is its own business there.
        #expect(try get(port, "/open").status == 200)

        // The file changes: the new password works and the old one, though remembered, no longer does.
        try "alice:\(Bcrypt.hash("looking-glass", cost: 5))\n".write(to: file, atomically: true, encoding: .utf8)
        try await waitUntil("the htpasswd file is re-read", timeout: .seconds(10)) {
            try get(port, "/private/a", [Self.basic("alice", "looking-glass")]).status == 200
        }
        #expect(try get(port, "/private/a", [Self.basic("alice", "wonderland")]).status == 401)
        #expect(try get(port, "/private/a", [Self.basic("bob", "s3cret")]).status == 401)

        // A broken file is not taken: the users stay as they were.
        try "alice:$apr1$abc$def\n".write(to: file, atomically: true, encoding: .utf8)
        await proxy.server.auth.reloadChangedFiles()  // the watcher's step, now: it reads the file and refuses it
        #expect(try get(port, "/private/a", [Self.basic("alice", "looking-glass")]).status == 200)
    }

    @Test func htpasswdParsing() {
        let bcrypt = Bcrypt.hash("pw", cost: 4)
        guard case .success(let ok) = HTPasswd.parse("a:\(bcrypt)\r\n\n# c\nb:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n") else {
            Issue.record("refused"); return
        }
        #expect(ok.users.count == 2)
        #expect(ok.verify(user: "a", password: "pw") && !ok.verify(user: "a", password: "px"))
        #expect(ok.verify(user: "b", password: "password") && !ok.verify(user: "c", password: "pw"))
        guard case .failure(let errors) = HTPasswd.parse("a:$apr1$x$y\nnocolon\nb:{SHA}short\nc:\(bcrypt)\nc:\(bcrypt)\n") else {
            Issue.record("accepted"); return
        }
        #expect(errors.all.map(\.line) == [1, 2, 3, 5])
    }

    @Test func basicAuthConfigErrorsNameTheFileAndLine() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("bad.htpasswd")
        try "ok:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nbad:plain\n".write(to: file, atomically: true, encoding: .utf8)
        let yaml = """
            listeners: [ { name: l, address: "127.0.0.1:0" } ]
            routes:
              - { respond: {}, auth: { basic: { htpasswd: "\(file.path)", user_header: "bad header" } } }
              - { respond: {}, auth: { basic: { htpasswd: "\(dir.path)/missing" } } }
              - { respond: {}, auth: {} }
            """
        guard case .failure(let errors) = ConfigLoader.load(text: yaml, file: "t.yaml", extraChecks: ConfigFileChecks.errors) else {
            Issue.record("accepted"); return
        }
        let byPath = Dictionary(errors.all.map { ($0.path, $0.message) }, uniquingKeysWith: { a, _ in a })
        #expect(byPath["routes[0].auth.basic.user_header"] != nil)
        #expect(byPath["routes[0].auth.basic.htpasswd"]?.contains("line 2") == true, "\(byPath)")
        #expect(byPath["routes[1].auth.basic.htpasswd"]?.contains("cannot read") == true)
        #expect(byPath["routes[2].auth"] != nil)
    }

    // MARK: JWT

    struct Signer {
        let es256 = P256.Signing.PrivateKey()
        let hmacSecret = Array("a-very-long-shared-secret-of-at-least-32-bytes".utf8)

        static func b64(_ bytes: some Sequence<UInt8>) -> String {
            Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }

        static func json(_ object: [String: Any]) -> [UInt8] {
            Array(try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
        }

        func token(alg: String = "ES256", kid: String? = nil, _ claims: [String: Any]) -> String {
            var header: [String: Any] = ["alg": alg, "typ": "JWT"]
            if let kid { header["kid"] = kid }
            let input = Self.b64(Self.json(header)) + "." + Self.b64(Self.json(claims))
            let signature: [UInt8]
            switch alg {
            case "ES256": signature = Array(try! self.es256.signature(for: Data(input.utf8)).rawRepresentation)
            case "HS256": signature = Array(HMAC<SHA256>.authenticationCode(for: Data(input.utf8), using: SymmetricKey(data: self.hmacSecret)))
            default: signature = []
            }
            return input + "." + Self.b64(signature)
        }

        /// The public key as a JWK Set.
        func jwks(kid: String) -> String {
            let raw = Array(self.es256.publicKey.rawRepresentation)
            return String(decoding: Self.json(["keys": [["kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                                                         "x": Self.b64(raw[0..<32]), "y": Self.b64(raw[32..<64])]]]), as: UTF8.self)
        }
    }

    @Test func jwtBearerTokens() async throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let signer = Signer()
        let pem = dir.appendingPathComponent("es256.pem")
        try signer.es256.publicKey.pemRepresentation.write(to: pem, atomically: true, encoding: .utf8)
        let secret = dir.appendingPathComponent("hs.secret")
        try Data(signer.hmacSecret + [10]).write(to: secret)
        let origin = try await TestOrigin.start(name: "o")
        let yaml = """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes:
              - match: { path_prefix: /es/ }
                cluster: c
                auth:
                  jwt:
                    keys: [ { algorithm: ES256, file: "\(pem.path)" } ]
                    issuers: [ "https://issuer.test" ]
                    audiences: [ "api" ]
                    leeway: 5s
                    token_from: [ header, "cookie:session", "query:access_token" ]
                    forward_claims: { sub: X-User, roles: X-Roles }
              - match: { path_prefix: /hs/ }
                cluster: c
                auth: { jwt: { keys: [ { algorithm: HS256, file: "\(secret.path)", kid: shared } ], forward_claims: { sub: X-User } } }
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin])
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let port = proxy.port()
        let now = Int(Date().timeIntervalSince1970)
        let good: [String: Any] = ["sub": "user-7", "iss": "https://issuer.test", "aud": ["other", "api"], "exp": now + 600, "nbf": now - 10, "roles": ["a", "b"]]
        func claims(_ change: [String: Any?]) -> [String: Any] {
            var c = good
            for (k, v) in change { c[k] = v }
            return c
        }

        let missing = try get(port, "/es/x")
        #expect(missing.status == 401 && missing.header("www-authenticate") == "Bearer")
        let ok = try get(port, "/es/x", ["Authorization: Bearer \(signer.token(good))", "X-User: admin"])
        #expect(ok.status == 200)
        #expect(ok.body.contains("x-user: user-7") && ok.body.contains("x-roles: a,b") && !ok.body.contains("admin"))
        // Again (remembered), from a cookie, from the query.
        #expect(try get(port, "/es/y", ["Authorization: Bearer \(signer.token(good))"]).status == 200)
        #expect(try get(port, "/es/x", ["Cookie: a=b; session=\(signer.token(good))"]).body.contains("x-user: user-7"))
        #expect(try get(port, "/es/x?q=1&access_token=\(signer.token(good))").status == 200)

        let refused: [(String, String)] = [
            ("expired", signer.token(claims(["exp": now - 60]))),
            ("not yet valid", signer.token(claims(["nbf": now + 60]))),
            ("wrong issuer", signer.token(claims(["iss": "https://evil.test"]))),
            ("wrong audience", signer.token(claims(["aud": "web"]))),
            ("alg none", signer.token(alg: "none", good)),
            ("HS256 on an ES256 key", signer.token(alg: "HS256", good)),
            ("bad signature", String(signer.token(good).dropLast(4)) + "AAAA"),
            ("malformed", "abc.def"),
            ("unknown kid", signer.token(kid: "nope", good)),
        ]
        for (what, token) in refused {
            let r = try get(port, "/es/x", ["Authorization: Bearer \(token)"])
            #expect(r.status == 401, "\(what)")
            #expect(r.header("www-authenticate")?.hasPrefix("Bearer error=\"invalid_token\"") == true, "\(what): \(r.header("www-authenticate") ?? "-")")
        }
        // Within the leeway: still good.
        #expect(try get(port, "/es/x", ["Authorization: Bearer \(signer.token(claims(["exp": now - 2])))"]).status == 200)

        // HS256 with a key named by kid; the ES256 key's tokens are not good here.
        #expect(try get(port, "/hs/x", ["Authorization: Bearer \(signer.token(alg: "HS256", kid: "shared", ["sub": "h"]))"]).body.contains("x-user: h"))
        #expect(try get(port, "/hs/x", ["Authorization: Bearer \(signer.token(alg: "HS256", ["sub": "h"]))"]).status == 401)
        #expect(try get(port, "/hs/x", ["Authorization: Bearer \(signer.token(good))"]).status == 401)
        #expect(origin.requestCount == 6)
    }

    /// Every family of key from a PEM file: RSA (PKCS #1 v1.5 and PSS), EC on P-384, Ed25519.
    @Test func jwtAlgorithmsFromPEMFiles() async throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let rsa = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let p384 = P384.Signing.PrivateKey()
        let ed = Curve25519.Signing.PrivateKey()
        // Ed25519's SubjectPublicKeyInfo (RFC 8410): a fixed prefix, then the 32 key bytes.
        let edDER = Data([0x30, 0x2A, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x03, 0x21, 0x00]) + ed.publicKey.rawRepresentation
        let edPEM = "-----BEGIN PUBLIC KEY-----\n\(edDER.base64EncodedString())\n-----END PUBLIC KEY-----\n"
        let cases: [(alg: String, pem: String, sign: (Data) throws -> Data)] = [
            ("RS256", rsa.publicKey.pemRepresentation, { try rsa.signature(for: $0, padding: .insecurePKCS1v1_5).rawRepresentation }),
            ("PS256", rsa.publicKey.pemRepresentation, { try rsa.signature(for: $0, padding: .PSS).rawRepresentation }),
            ("ES384", p384.publicKey.pemRepresentation, { try p384.signature(for: $0).rawRepresentation }),
            ("EdDSA", edPEM, { try ed.signature(for: $0) }),
        ]
        var routes = ""
        for (i, c) in cases.enumerated() {
            let file = dir.appendingPathComponent("k\(i).pem")
            try c.pem.write(to: file, atomically: true, encoding: .utf8)
            routes += "  - { match: { path_prefix: /\(c.alg)/ }, cluster: c, auth: { jwt: { keys: [ { algorithm: \(c.alg), file: \"\(file.path)\" } ], forward_claims: { sub: X-User } } } }\n"
        }
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes:
            \(routes)clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """, origins: [origin])
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        for c in cases {
            let input = Signer.b64(Signer.json(["alg": c.alg, "typ": "JWT"])) + "." + Signer.b64(Signer.json(["sub": "via-\(c.alg)"]))
            let token = input + "." + Signer.b64(try c.sign(Data(input.utf8)))
            let r = try get(proxy.port(), "/\(c.alg)/x", ["Authorization: Bearer \(token)"])
            #expect(r.status == 200 && r.body.contains("x-user: via-\(c.alg)"), "\(c.alg): \(r.status)")
            // Another family's token is refused on this route.
            let other = cases.first { $0.alg != c.alg && $0.pem != c.pem }!
            let wrong = Signer.b64(Signer.json(["alg": other.alg])) + "." + Signer.b64(Signer.json(["sub": "x"]))
            #expect(try get(proxy.port(), "/\(c.alg)/x", ["Authorization: Bearer \(wrong).\(Signer.b64(try other.sign(Data(wrong.utf8))))"]).status == 401)
        }
    }

    /// A key file replaced in place takes effect with a reload (SIGHUP), as a compromised key must.
    @Test func aReloadReadsJWTKeyFilesAgain() async throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (old, new) = (Signer(), Signer())
        let pem = dir.appendingPathComponent("k.pem")
        try old.es256.publicKey.pemRepresentation.write(to: pem, atomically: true, encoding: .utf8)
        let origin = try await TestOrigin.start(name: "o")
        let yaml = """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes: [ { cluster: c, auth: { jwt: { keys: [ { algorithm: ES256, file: "\(pem.path)" } ] } } } ]
            clusters: [ { name: c, hosts: [ { address: "\(origin.address)" } ] } ]
            """
        let configPath = dir.appendingPathComponent("portico.yaml").path
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
        let proxy = try await ProxyHarness.start(yaml: yaml, origins: [origin], configPath: configPath)
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        #expect(try get(proxy.port(), "/", ["Authorization: Bearer \(old.token(["sub": "a"]))"]).status == 200)
        try new.es256.publicKey.pemRepresentation.write(to: pem, atomically: true, encoding: .utf8)
        guard case .success = await proxy.server.reloadFromFile() else { Issue.record("reload failed"); return }
        #expect(try get(proxy.port(), "/", ["Authorization: Bearer \(new.token(["sub": "b"]))"]).status == 200)
        #expect(try get(proxy.port(), "/", ["Authorization: Bearer \(old.token(["sub": "c"]))"]).status == 401)
    }

    @Test func jwtKeysFromAJWKSURL() async throws {
        let signer = Signer()
        // The JWK Set is served by another Portico (a fixed response), over real HTTP.
        let issuer = try await ProxyHarness.start(yaml: """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes: [ { respond: { body: '\(signer.jwks(kid: "k1"))', content_type: application/json } } ]
            """)
        defer { Task { await issuer.shutdown() } }
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes: [ { cluster: c, auth: { jwt: { jwks_url: "http://127.0.0.1:\(issuer.port())/.well-known/jwks.json", forward_claims: { sub: X-User } } } } ]
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """, origins: [origin])
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        let r = try get(proxy.port(), "/x", ["Authorization: Bearer \(signer.token(kid: "k1", ["sub": "from-jwks"]))"])
        #expect(r.status == 200 && r.body.contains("x-user: from-jwks"))
        #expect(try get(proxy.port(), "/x", ["Authorization: Bearer \(signer.token(kid: "k2", ["sub": "x"]))"]).status == 401)
        #expect(try get(proxy.port(), "/x", ["Authorization: Bearer \(Signer().token(kid: "k1", ["sub": "x"]))"]).status == 401)
    }

    @Test func rateLimitsKeyedByAClaimRunAfterAuth() async throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let signer = Signer()
        let pem = dir.appendingPathComponent("es256.pem")
        try signer.es256.publicKey.pemRepresentation.write(to: pem, atomically: true, encoding: .utf8)
        let origin = try await TestOrigin.start(name: "o")
        let proxy = try await ProxyHarness.start(yaml: """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes:
              - cluster: c
                auth: { jwt: { keys: [ { algorithm: ES256, file: "\(pem.path)" } ] } }
                rate_limits: [ { name: per-user, key: "claim:sub", rate: 2, per: 1m } ]
            clusters: [ { name: c, hosts: [ { address: "{{origin:o}}" } ] } ]
            """, origins: [origin])
        defer { Task { await proxy.shutdown(); await origin.shutdown() } }
        for user in ["ann", "ben"] {
            let token = signer.token(["sub": user])
            let codes = try (0..<3).map { _ in try get(proxy.port(), "/", ["Authorization: Bearer \(token)"]).status }
            #expect(codes == [200, 200, 429], "\(user): \(codes)")
        }
        // Unauthenticated requests are refused by auth, and do not use anyone's budget.
        #expect(try get(proxy.port(), "/").status == 401)
        #expect(origin.requestCount == 4)
    }

    @Test func jwtConfigErrors() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let short = dir.appendingPathComponent("short.secret")
        try "too short".write(to: short, atomically: true, encoding: .utf8)
        let notPEM = dir.appendingPathComponent("x.pem")
        try "hello".write(to: notPEM, atomically: true, encoding: .utf8)
        let yaml = """
            listeners: [ { name: l, address: "127.0.0.1:0" } ]
            routes:
              - respond: {}
                auth:
                  jwt:
                    keys: [ { algorithm: HS256, file: "\(short.path)" }, { algorithm: ES256, file: "\(notPEM.path)" }, { algorithm: XX1, file: "\(notPEM.path)" } ]
                    token_from: [ header, "body:x" ]
                    jwks_url: "ftp://x"
              - { respond: {}, auth: { jwt: {} } }
            """
        guard case .failure(let errors) = ConfigLoader.load(text: yaml, file: "t.yaml", extraChecks: ConfigFileChecks.errors) else {
            Issue.record("accepted"); return
        }
        #expect(Set(errors.all.map(\.path)) == [
            "routes[0].auth.jwt.keys[0].file", "routes[0].auth.jwt.keys[1].file", "routes[0].auth.jwt.keys[2].algorithm",
            "routes[0].auth.jwt.token_from[1]", "routes[0].auth.jwt.jwks_url", "routes[1].auth.jwt",
        ], "\(errors)")
    }
}
