//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import NIOPosix
import PorticoCore
import Testing

@testable import PorticoEngine

#if canImport(Glibc)
import Glibc
#endif

/// Connect failures are classified by type and errno, never by their text (issue 11 §7).
@Suite struct ConnectErrorTests {
    @Test func classification() async throws {
        #expect(ProxyHandler.classifyConnectError(ChannelError.connectTimeout(.seconds(1))) == .connectTimeout)
        #expect(ProxyHandler.classifyConnectError(IOError(errnoCode: ECONNREFUSED, reason: "connect")) == .connectRefused)
        #expect(ProxyHandler.classifyConnectError(IOError(errnoCode: EHOSTUNREACH, reason: "connect")) == .connectFailed)
        struct Other: Error, CustomStringConvertible { var description: String { "connection refused (but not really)" } }
        #expect(ProxyHandler.classifyConnectError(Other()) == .connectFailed)  // the text does not count

        // A real refusal as NIO reports it (every address tried, each refused): a port nothing listens on.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let closed = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = closed.localAddress!.port!
        try await closed.close()
        do {
            _ = try await ClientBootstrap(group: group).connect(host: "localhost", port: port).get()
            Issue.record("connected to a closed port")
        } catch {
            #expect(error is NIOConnectionError || error is IOError, "\(type(of: error))")
            #expect(ProxyHandler.classifyConnectError(error) == .connectRefused, "\(error)")
        }
        try await group.shutdownGracefully()
    }
}
