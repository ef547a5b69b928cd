//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Crypto
import FoundationEssentials
package import NIOCore
package import NIOHTTP1
package import NIOPosix
package import PorticoCore
import Synchronization

/// A route's `auth.basic` (RFC 7617): a request needs `Authorization: Basic` with a user and password of the
/// htpasswd file; the user goes upstream in `user_header`. Refused: 401 with `WWW-Authenticate: Basic realm=…,
/// charset="UTF-8"`.
///
/// bcrypt is slow by design (tens of milliseconds), so a credential not seen recently is checked on a thread pool
/// while the request is suspended (reads held, nothing sent upstream), never on the EventLoop; the outcome is
/// remembered (`cache_for` for a good one, 5 seconds for a bad one, so repeating a wrong password costs no more
/// bcrypt). A remembered credential costs one SHA-256 and one shard-locked lookup on the EventLoop. At most 256
/// checks wait at once; beyond that the answer is 503 (a password-guessing flood cannot queue unbounded work).
package struct BasicAuthFilter: ProxyFilter {
    let file: HTPasswdFile
    let challenge: String
    let userHeader: String
    let cacheFor: Int64
    let pool: NIOThreadPool
    let pending: Pending

    package final class Pending: Sendable {
        let count = Atomic<Int>(0)
        package init() {}
    }

    static let maxPending = 256
    static let rememberFailureFor: Int64 = 5_000_000_000

    package var phases: FilterPhases { [.requestHead, .upstreamRequestHead] }

    package init(file: HTPasswdFile, config: BasicAuthConfig, pool: NIOThreadPool, pending: Pending) {
        self.file = file
        // A quoted-string (RFC 9110 §5.6.4): backslash and quote escaped.
        var realm = ""
        for c in config.realm ?? "Restricted" {
            if c == "\\" || c == "\"" { realm.append("\\") }
            realm.append(c)
        }
        self.challenge = "Basic realm=\"\(realm)\", charset=\"UTF-8\""
        self.userHeader = config.userHeader ?? "X-Auth-User"
        self.cacheFor = config.cacheFor?.nanoseconds ?? 300_000_000_000
        self.pool = pool
        self.pending = pending
    }

    package func requestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) -> FilterDecision {
        head.headers.remove(name: self.userHeader)
        guard let credential = Self.credential(head.headers), let decoded = Data(base64Encoded: String(credential)),
              let colon = decoded.firstIndex(of: UInt8(ascii: ":"))
        else {
            context.authFailure = "basic:missing_credentials"
            return .respond(self.unauthorized())
        }
        let user = String(decoding: decoded[..<colon], as: UTF8.self)
        let password = String(decoding: decoded[decoded.index(after: colon)...], as: UTF8.self)
        let key = Self.digest(credential)
        let now = Int64(NIODeadline.now().uptimeNanoseconds)
        if let remembered = self.file.remembered.get(key, now: now), remembered.generation == self.file.generation {
            guard remembered.user != nil else {
                context.authFailure = "basic:bad_password"
                return .respond(self.unauthorized())
            }
            context.identity = BasicUser(user: user)
            return .proceed
        }
        guard let loop = context.eventLoop else { return .respond(self.unauthorized()) }
        let waiting = self.pending.count.wrappingAdd(1, ordering: .relaxed).newValue
        if waiting > Self.maxPending {
            self.pending.count.wrappingSubtract(1, ordering: .relaxed)
            context.authFailure = "basic:overloaded"
            return .respond(FilterResponse(status: 503, headers: ["Retry-After": "1", "Content-Type": "text/plain; charset=utf-8"],
                                           text: "503 Service Unavailable\n"))
        }
        // The user is recorded now; it goes upstream only if the check passes (a failed one answers 401).
        context.identity = BasicUser(user: user)
        let file = self.file, pending = self.pending, cacheFor = self.cacheFor
        var refusal = self.unauthorized()
        refusal.updateContext = { $0.authFailure = "basic:bad_password" }
        return .suspend(self.pool.runIfActive(eventLoop: loop) { () -> FilterDecision in
            defer { pending.count.wrappingSubtract(1, ordering: .relaxed) }
            let (users, generation) = file.snapshot
            let good = users.verify(user: user, password: password)
            let now = Int64(NIODeadline.now().uptimeNanoseconds)
            file.remembered.set(key, .init(user: good ? user : nil, generation: generation),
                                until: now + (good ? cacheFor : Self.rememberFailureFor), now: now)
            return good ? .proceed : .respond(refusal)
        })
    }

    package func upstreamRequestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) {
        if let user = context.identity?.user { head.headers.add(name: self.userHeader, value: user) }
    }

    /// The base64 credentials of `Authorization: Basic …` (the scheme compared without case, RFC 9110 §11.1).
    static func credential(_ headers: HTTPHeaders) -> Substring? {
        for value in headers["authorization"] {
            let v = value[...].trimmingOWS()
            guard v.utf8.count > 6, v.prefix(6).caseInsensitiveASCIIEqual("basic ") else { continue }
            let token = v.dropFirst(6).trimmingOWS()
            if !token.isEmpty { return token }
        }
        return nil
    }

    /// What the remembered checks are keyed by: a digest, so no password is kept in memory as a key.
    static func digest(_ credential: Substring) -> String {
        hexString(SHA256.hash(data: Array(credential.utf8)))
    }

    func unauthorized() -> FilterResponse {
        FilterResponse(status: 401, headers: ["WWW-Authenticate": self.challenge, "Content-Type": "text/plain; charset=utf-8"],
                       text: "401 Unauthorized\n")
    }
}

/// An htpasswd user: its name is its `sub`.
struct BasicUser: AuthIdentity {
    let user: String?
    func claim(_ name: String) -> String? { name == "sub" ? self.user : nil }
}
