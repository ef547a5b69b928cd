//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOHTTP1
import Synchronization

/// The global `forwarding` settings as a filter: client-identifying fields on the way up (X-Forwarded-*,
/// X-Real-IP, Forwarded, Via), `Server` / `X-Powered-By` masking and `Location` rewriting on the way down.
public struct ForwardingFilter: ProxyFilter {
    public let policy: ForwardingPolicy
    public var phases: FilterPhases { self.policy.requestID ? [.requestHead, .upstreamRequestHead, .responseHead] : [.upstreamRequestHead, .responseHead] }

    public init(_ policy: ForwardingPolicy) {
        self.policy = policy
    }

    /// The request's ID: a trusted proxy's `X-Request-ID` (printable, at most 200 bytes), else a new one.
    public func requestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) -> FilterDecision {
        if context.clientTrusted, let given = head.headers.first(name: "x-request-id"), !given.isEmpty, given.utf8.count <= 200,
            given.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f })
        {
            context.requestID = given
        } else {
            context.requestID = Self.newRequestID()
        }
        return .proceed
    }

    /// 128 bits as 32 hex digits (nginx's `$request_id` shape): a process-wide counter through SipHash keyed per
    /// process (Swift's `Hasher`, randomly seeded at start) with a key of ours, twice. Never repeated within a
    /// process (the counter), unrelated across processes, not invertible (a client cannot learn the counter, and so
    /// how many requests others made, from its own IDs), and no system call (glibc 2.36's `arc4random_buf` makes a
    /// `getrandom` call each time).
    static func newRequestID() -> String {
        let n = Self.requestCounter.wrappingAdd(1, ordering: .relaxed).newValue
        let words = (Self.prf(n, 0), Self.prf(n, 1))
        return withUnsafeBytes(of: words) { hexString($0) }
    }

    private static let requestCounter = Atomic<UInt64>(0)
    private static let requestKey: UInt64 = {
        var rng = SystemRandomNumberGenerator()
        return rng.next()
    }()

    private static func prf(_ n: UInt64, _ half: UInt8) -> Int {
        var h = Hasher()
        h.combine(Self.requestKey)
        h.combine(n)
        h.combine(half)
        return h.finalize()
    }

    public func upstreamRequestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) {
        self.policy.applyRequest(&head.headers, clientIP: context.clientIP, trusted: context.clientTrusted, scheme: context.scheme, host: context.host,
                                 verifiedIdentity: context.clientCertificate != nil)
        if let id = context.requestID { head.headers.replaceOrAdd(name: "X-Request-ID", value: id) }
    }

    public func responseHead(_ head: inout HTTPResponseHead, _ context: inout RequestContext) {
        if let id = context.requestID { head.headers.replaceOrAdd(name: "X-Request-ID", value: id) }
        // Only what came from an upstream is masked and rewritten.
        guard let authority = context.upstreamAuthority else { return }
        self.policy.applyResponse(&head.headers, upstreamAuthority: authority, publicBase: context.host.map { "\(context.scheme)://\($0)" })
    }
}
