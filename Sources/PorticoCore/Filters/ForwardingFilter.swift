//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOHTTP1

/// The global `forwarding` settings as a filter: client-identifying fields on the way up (X-Forwarded-*,
/// X-Real-IP, Forwarded, Via), `Server` / `X-Powered-By` masking and `Location` rewriting on the way down.
public struct ForwardingFilter: ProxyFilter {
    public let policy: ForwardingPolicy
    public var phases: FilterPhases { [.upstreamRequestHead, .responseHead] }

    public init(_ policy: ForwardingPolicy) {
        self.policy = policy
    }

    public func upstreamRequestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) {
        self.policy.applyRequest(&head.headers, clientIP: context.clientIP, trusted: context.clientTrusted, scheme: context.scheme, host: context.host,
                                 verifiedIdentity: context.clientCertificate != nil)
    }

    public func responseHead(_ head: inout HTTPResponseHead, _ context: inout RequestContext) {
        // Only what came from an upstream is masked and rewritten.
        guard let authority = context.upstreamAuthority else { return }
        self.policy.applyResponse(&head.headers, upstreamAuthority: authority, publicBase: context.host.map { "\(context.scheme)://\($0)" })
    }
}
