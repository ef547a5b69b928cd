//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// `tracing`: one span per request, exported over OTLP/HTTP; W3C `traceparent` / `tracestate` propagated when
/// present and started when absent. Off unless configured (and then free: nothing is in the request path).
/// Changes take effect on restart.
public struct TracingConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// The OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`.
    public var endpoint: String
    /// Share of traces Portico starts (requests without `traceparent`) that are sampled, 0 to 1. A request's own
    /// `traceparent` sampled flag is followed. Default `1`.
    public var sampleRatio: Double?
    /// `service.name` of the spans. Default `portico`.
    public var serviceName: String?
    /// `protobuf` (default) or `json`.
    public var encoding: TracingEncoding?
    /// How long spans wait to be exported in a batch. Default `5s`.
    public var exportDelay: ConfigDuration?

    public init(endpoint: String, sampleRatio: Double? = nil, serviceName: String? = nil, encoding: TracingEncoding? = nil, exportDelay: ConfigDuration? = nil) {
        self.endpoint = endpoint
        self.sampleRatio = sampleRatio
        self.serviceName = serviceName
        self.encoding = encoding
        self.exportDelay = exportDelay
    }

    public static var configPlaceholder: TracingConfig { .init(endpoint: "") }
}

public enum TracingEncoding: String, ConfigEnum {
    case protobuf
    case json
}
