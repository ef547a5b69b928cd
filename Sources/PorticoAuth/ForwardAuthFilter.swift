//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Crypto
package import NIOCore
package import NIOHTTP1
package import PorticoCore

/// A route's `auth.forward` (nginx `auth_request`, Traefik ForwardAuth): the request waits while an auth service
/// is asked, through Portico's own pools (`RequestContext.subrequests`), with the original method, the chosen
/// request fields and a description of the original request. A 2xx lets it through, with the chosen fields of
/// that answer added upstream; any other answer goes to the client as it came (a 401 with its
/// `WWW-Authenticate`, a 302 to a login page); no answer in time, or none at all, is 503, never a pass.
///
/// Runs on the request's EventLoop; the subrequest is asynchronous. With `cache_for`, each answer is remembered
/// per credential and request (a digest of what the auth service was told), so a busy client costs a lookup; an
/// answer that sets a cookie is never remembered.
package struct ForwardAuthFilter: ProxyFilter {
    let cluster: String
    let path: String
    let requestFields: [String]
    let responseFields: [String]
    let timeout: TimeAmount
    let cacheFor: Int64?
    let maxBody: Int?
    let remembered = AuthCache<Answer>()

    /// What the auth service said: the fields to add upstream, or the response to give.
    enum Answer: Sendable {
        case allow([(String, String)])
        case deny(FilterResponse)
    }

    /// The fields a 2xx gave, for `upstreamRequestHead` (filled on the request's EventLoop when the answer comes).
    final class Granted: @unchecked Sendable {
        // @unchecked: written and read on the request's EventLoop only.
        var fields: [(String, String)] = []
    }
    enum GrantedKey: RequestContextKey { typealias Value = Granted }

    package var phases: FilterPhases { [.requestHead, .upstreamRequestHead, .subrequests] }

    package init(_ config: ForwardAuthConfig) {
        self.cluster = config.cluster
        self.path = config.path ?? "/"
        self.requestFields = (config.requestHeaders ?? ["Authorization", "Cookie"]).map { $0.lowercased() }
        self.responseFields = (config.responseHeaders ?? []).map { $0.lowercased() }
        self.timeout = .nanoseconds(config.timeout?.nanoseconds ?? 5_000_000_000)
        self.cacheFor = config.cacheFor?.nanoseconds
        self.maxBody = config.maxBody?.bytes
    }

    package func requestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) -> FilterDecision {
        for name in self.responseFields { head.headers.remove(name: name) }
        let granted = Granted()
        context[GrantedKey.self] = granted
        var key: String?
        if let cacheFor = self.cacheFor, cacheFor > 0 {
            let k = self.credentialKey(head, context)
            key = k
            switch self.remembered.get(k, now: Int64(NIODeadline.now().uptimeNanoseconds)) {
            case .allow(let fields)?:
                granted.fields = fields
                return .proceed
            case .deny(let response)?:
                context.authFailure = "forward:\(response.status)"
                return .respond(response)
            case nil:
                break
            }
        }
        guard let client = context.subrequests, let loop = context.eventLoop else {
            return .respond(Self.unavailable)
        }
        var ask = HTTPRequestHead(version: .http1_1, method: head.method, uri: self.path)
        for name in self.requestFields {
            for value in head.headers[name] { ask.headers.add(name: name, value: value) }
        }
        ask.headers.add(name: "X-Forwarded-Method", value: head.method.rawValue)
        ask.headers.add(name: "X-Forwarded-Proto", value: context.scheme)
        if let host = context.host { ask.headers.add(name: "X-Forwarded-Host", value: host) }
        ask.headers.add(name: "X-Forwarded-Uri", value: context.uri)
        ask.headers.add(name: "X-Forwarded-For", value: context.clientIP)
        ask.headers.add(name: "X-Original-URI", value: context.uri)
        ask.headers.add(name: "X-Original-Method", value: head.method.rawValue)
        if let maxBody = self.maxBody {
            // The body goes along: read it first (bounded), then ask.
            if let type = head.headers.first(name: "content-type") { ask.headers.add(name: "Content-Type", value: type) }
            let withBody = ask
            return .needBody(maxBytes: maxBody) { [self] body in
                self.ask(withBody, body: body, client: client, loop: loop, granted: granted, key: nil)
            }
        }
        if head.method != .GET && head.method != .HEAD { ask.headers.add(name: "Content-Length", value: "0") }
        return self.ask(ask, body: nil, client: client, loop: loop, granted: granted, key: key)
    }

    /// Sends the subrequest; the request waits for its answer.
    func ask(_ ask: HTTPRequestHead, body: ByteBuffer?, client: any SubrequestClient, loop: any EventLoop, granted: Granted,
             key: String?) -> FilterDecision {
        let responseFields = self.responseFields, remembered = self.remembered, cacheFor = self.cacheFor ?? 0
        return .suspend(client.send(cluster: self.cluster, head: ask, body: body, timeout: self.timeout, maxBodyBytes: 64 * 1024, eventLoop: loop)
            .map { answer -> FilterDecision in
                let decided: Answer
                if (200..<300).contains(answer.head.status.code) {
                    var fields: [(String, String)] = []
                    for name in responseFields {
                        for value in answer.head.headers[name] { fields.append((name, value)) }
                    }
                    decided = .allow(fields)
                } else {
                    decided = .deny(Self.passOn(answer))
                }
                // An answer that sets a cookie (a session, a login redirect's state) belongs to its client alone.
                if let key, cacheFor > 0, !answer.head.headers.contains(name: "set-cookie") {
                    let now = Int64(NIODeadline.now().uptimeNanoseconds)
                    remembered.set(key, decided, until: now + cacheFor, now: now)
                }
                switch decided {
                case .allow(let fields):
                    granted.fields = fields
                    return .proceed
                case .deny(let response):
                    return .respond(response)
                }
            }
            .recover { _ in .respond(Self.unavailable) })
    }

    package func upstreamRequestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) {
        guard let granted = context[GrantedKey.self] else { return }
        for (name, value) in granted.fields { head.headers.add(name: name, value: value) }
    }

    /// The auth service's refusal as the client gets it: its status, fields (but the connection's own and the
    /// framing, which Portico sets) and body.
    static func passOn(_ answer: SubrequestResponse) -> FilterResponse {
        var headers = answer.head.headers
        HopByHopHeaders.strip(&headers)
        headers.remove(name: "content-length")
        let status = Int(answer.head.status.code)
        return FilterResponse(status: status, headers: headers, body: answer.body, updateContext: { $0.authFailure = "forward:\(status)" })
    }

    static let unavailable = FilterResponse(
        status: 503, headers: ["Content-Type": "text/plain; charset=utf-8", "Retry-After": "1"], text: "503 Service Unavailable\n",
        updateContext: { $0.authFailure = "forward:unavailable" })

    /// What an answer is remembered by: everything the auth service was told (method, host, target, client
    /// address, the sent fields), as a digest, so no credential is kept as a key and no answer about one path,
    /// host or client stands for another.
    func credentialKey(_ head: HTTPRequestHead, _ context: RequestContext) -> String {
        var hasher = SHA256()
        for part in [head.method.rawValue, context.scheme, context.host ?? "", context.uri, context.clientIP] {
            hasher.update(data: Array(part.utf8))
            hasher.update(data: [0])
        }
        for name in self.requestFields {
            for value in head.headers[name] {
                hasher.update(data: Array(name.utf8))
                hasher.update(data: [1])
                hasher.update(data: Array(value.utf8))
                hasher.update(data: [0])
            }
        }
        return hexString(hasher.finalize())
    }

}
