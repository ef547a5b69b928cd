//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOHTTP1
import NIOSSL

/// Builds a downstream connection's pipeline, on its EventLoop:
///
///     socket ─▶ HTTPResponseEncoder / HTTPRequestDecoder (paired, so HEAD responses carry no body) ─▶ ProxyHandler
///
/// Deliberately lean: no pipelining helper (the `ProxyHandler` orders responses itself), no error handler (it
/// maps parse errors to 400/431), no header validator (headers come from a validated config or an upstream
/// whose fields the decoder already checked). Every handler costs on every request (DEPENDENCIES.md).
enum DownstreamPipeline {
    static func configure(_ channel: any Channel, worker: WorkerState, listener: ListenerSettings) throws {
        if let tls = listener.tls {
            // A failed handshake only closes this connection (NIOSSL sends the alert and closes).
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context))
        }
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderListSize = listener.maxHeaderBytes
        limits.maxHeaderFieldSize = listener.maxHeaderBytes
        limits.maxHeaderFieldCount = 256
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withPipeliningAssistance: false,
            withErrorHandling: false,
            withOutboundHeaderValidation: false,
            withEncoderConfiguration: .init(),
            withDecoderLimitConfiguration: limits
        )
        try channel.pipeline.syncOperations.addHandler(ProxyHandler(worker: worker, listener: listener))
    }
}
