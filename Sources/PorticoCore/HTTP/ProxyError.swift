//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// Why an exchange failed, where, and whether it may be retried (Pingora's `Error`: type, source, retry).
/// The `kind`'s name is what the access log prints in its `reason` field.
public struct ProxyError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { self.name }

        public static let connectRefused = Kind("upstream_connect_refused")
        public static let connectTimeout = Kind("upstream_connect_timeout")
        public static let connectFailed = Kind("upstream_connect_failed")
        public static let noHealthyUpstream = Kind("no_upstream_available")
        public static let upstreamClosedEarly = Kind("upstream_closed_before_response")
        public static let upstreamReset = Kind("upstream_reset_mid_response")
        public static let responseHeaderTimeout = Kind("upstream_response_header_timeout")
        public static let readTimeout = Kind("upstream_read_timeout")
        public static let invalidUpstreamResponse = Kind("upstream_invalid_response")
        public static let downstreamClosed = Kind("client_closed")
        public static let badRequest = Kind("bad_request")
        public static let headerTooLarge = Kind("request_header_too_large")
        public static let uriTooLong = Kind("uri_too_long")
        public static let bodyTooLarge = Kind("request_body_too_large")
        public static let requestHeaderTimeout = Kind("request_header_timeout")
        public static let noRoute = Kind("no_route")
        public static let circuitBreakerOverflow = Kind("circuit_breaker_overflow")
        public static let filterFailed = Kind("filter_failed")
        public static let requestBodyTimeout = Kind("request_body_timeout")
    }

    public enum Source: Sendable, Hashable {
        case downstream, upstream, `internal`
    }

    public var kind: Kind
    public var source: Source
    public var context: String?

    public init(_ kind: Kind, source: Source, context: String? = nil) {
        self.kind = kind
        self.source = source
        self.context = context
    }

    /// The status a client gets for this error when no response has started (ARCHITECTURE §8).
    public var status: Int {
        switch self.kind {
        case .noHealthyUpstream, .circuitBreakerOverflow: return 503
        case .connectTimeout, .responseHeaderTimeout, .readTimeout: return 504
        case .connectRefused, .connectFailed, .upstreamClosedEarly, .upstreamReset, .invalidUpstreamResponse: return 502
        case .headerTooLarge: return 431
        case .uriTooLong: return 414
        case .bodyTooLarge: return 413
        case .requestHeaderTimeout, .requestBodyTimeout: return 408
        case .noRoute: return 404
        case .downstreamClosed: return 499
        case .filterFailed: return 500
        default: return 400
        }
    }

    public var description: String {
        self.context.map { "\(self.kind): \($0)" } ?? self.kind.description
    }
}
