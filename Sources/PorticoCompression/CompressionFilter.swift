//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore
public import NIOHTTP1
public import PorticoCore

/// A route's `compression`: compresses responses for clients that accept it, as they stream (ARCHITECTURE §3,
/// phase 9). `CompressionPolicy` decides from the request's `Accept-Encoding` and the response head; this filter
/// keeps the response's `BodyEncoder` in the request's context and runs it on each body event.
///
/// Runs on the request's EventLoop. Compression costs that loop's CPU (about what nginx's `gzip` costs: the same
/// zlib), so it is per route and limited to types that compress.
///
/// Streaming: each part is compressed as it arrives and nothing waits for the whole body; when the upstream
/// pauses (`ResponseBodyEvent.pause`) the encoder is flushed, so server-sent events and long polls reach the
/// client as they are sent. Backpressure is the proxy's: the upstream is read no faster than the client takes
/// the compressed bytes.
public struct CompressionFilter: ProxyFilter {
    public let policy: CompressionPolicy
    public var phases: FilterPhases { [.responseHead, .responseBody] }

    public init(policy: CompressionPolicy) {
        self.policy = policy
    }

    /// The encoder of a response being compressed.
    enum EncoderKey: RequestContextKey { typealias Value = BodyEncoder }

    public func responseHead(_ head: inout HTTPResponseHead, _ context: inout RequestContext) {
        // The client's Accept-Encoding, read here (not in requestHead) so that answers from an earlier filter, a
        // cache hit among them, are compressed too.
        let accept = context.requestHeaders.contains(name: "accept-encoding") ? AcceptEncoding(fieldValues: context.requestHeaders["accept-encoding"]) : nil
        switch self.policy.decide(method: context.method, response: head, accept: accept) {
        case .leave:
            return
        case .leaveVarying:
            CompressionPolicy.addVary(&head.headers)
        case .notModified:
            CompressionPolicy.notModified(&head.headers)
        case .compress(let coding):
            let level: Int
            switch coding {
            case .gzip, .deflate: level = self.policy.levels.gzip
            case .br: level = self.policy.levels.br
            case .zstd: level = self.policy.levels.zstd
            }
            let length = head.headers.first(name: "content-length").flatMap { Int($0) }
            guard let encoder = BodyEncoder(coding: coding, level: level, sizeHint: length) else {
                CompressionPolicy.addVary(&head.headers)  // out of memory: sent as it is
                return
            }
            CompressionPolicy.prepare(&head, for: coding)
            context[EncoderKey.self] = encoder
        }
    }

    public func responseBody(_ chunk: inout ByteBuffer, _ event: ResponseBodyEvent, _ context: inout RequestContext) {
        guard let encoder = context[EncoderKey.self] else { return }
        switch event {
        case .data:
            chunk = encoder.encode(chunk, .process)
        case .pause:
            chunk = encoder.encode(chunk, .flush)
        case .end:
            chunk = encoder.encode(chunk, .finish)
            context[EncoderKey.self] = nil  // its C state is freed now, not with the exchange
        }
    }
}
