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

    /// Whether a request's body framing is known only once more of the stream has come: HTTP/2 frames a body by
    /// DATA and END_STREAM, and `content-length` is optional (RFC 9113 §8.1), so a head without one waits for the
    /// next frame before it can be forwarded with a framing an HTTP/1.1 origin reads the same way.
    public var framingFollowsHead: Bool { self == .http2 }

    /// Whether a request may switch protocols with `Upgrade` named in `Connection` (RFC 9110 §7.8). HTTP/2 has no
    /// Upgrade (RFC 9113 §8.6); its WebSocket streams (RFC 8441 extended CONNECT) arrive already rewritten as one.
    public var upgradesWithConnectionField: Bool { self == .http1 }

    /// The status that accepts a protocol switch: 101 in HTTP/1.1, 200 to an extended CONNECT (RFC 8441 §5).
    public var switchStatus: Int { self == .http1 ? 101 : 200 }

    /// Whether the client may send `Cookie` as several fields, which HTTP/1.1 wants as one (RFC 9113 §8.2.3).
    public var splitsCookies: Bool { self == .http2 }

    /// Whether the client's `content-length` is written again for the upstream: NIOHTTP2 accepts values such as
    /// `+5` that an HTTP/1.1 origin might read otherwise (Portico's HTTP/1.1 parser refuses them itself).
    public var rewritesContentLength: Bool { self == .http2 }

    /// Whether a response may carry its status in the head alone (gRPC's trailers-only responses), which must then
    /// reach the client as trailers after the head, not as an empty DATA frame with END_STREAM.
    public var hasTrailersOnlyResponses: Bool { self == .http2 }

    /// Whether `version` is a request version this protocol carries.
    public func carries(_ major: Int) -> Bool { self == .http1 ? major == 1 : major == 2 }
}
