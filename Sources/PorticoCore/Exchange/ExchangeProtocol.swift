//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// How a downstream protocol carries exchanges: the one value in which HTTP/1.1 and HTTP/2 differ in an
/// exchange's life (`ExchangeStateMachine`). Everything else (deadlines, body accounting, when a request counts
/// as answered) is the same for both.
public enum ExchangeProtocol: Sendable, Hashable {
    /// One connection carries exchanges one after another (RFC 9112 §9.3). Whether it persists is said in
    /// `Connection` fields; a connection that ends does so after its last response has been flushed, with a
    /// lingering close when the client may still be sending (RFC 9112 §9.6).
    case http1
    /// One stream carries one exchange (RFC 9113 §8.1). No connection-specific fields (§8.2.2). The response's end
    /// ends the stream (END_STREAM); a response complete before its request is followed by RST_STREAM(NO_ERROR),
    /// which tells the client to stop sending without failing the response (§8.1).
    case http2

    /// Whether responses carry `Connection: close` / `keep-alive` (RFC 9112 §9.3; never in HTTP/2, RFC 9113 §8.2.2).
    public var hasConnectionFields: Bool { self == .http1 }
}
