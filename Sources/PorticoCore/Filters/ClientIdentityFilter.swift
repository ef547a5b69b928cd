//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOHTTP1

/// An mTLS listener's identity fields: the verified client certificate's subject and SHA-256 fingerprint go
/// upstream in configured fields, and whatever a client sent in those fields itself is removed first.
public struct ClientIdentityFilter: ProxyFilter {
    public let subjectField: String
    public let fingerprintField: String
    public var phases: FilterPhases { .upstreamRequestHead }

    public init(subjectField: String, fingerprintField: String) {
        self.subjectField = subjectField
        self.fingerprintField = fingerprintField
    }

    public func upstreamRequestHead(_ head: inout HTTPRequestHead, _ context: inout RequestContext) {
        // Never pass on what a client claims about itself in these fields.
        head.headers.remove(name: self.subjectField)
        head.headers.remove(name: self.fingerprintField)
        if let identity = context.clientCertificate {
            head.headers.add(name: self.subjectField, value: identity.subject)
            head.headers.add(name: self.fingerprintField, value: identity.sha256)
        }
    }
}
