//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import PorticoTestSupport
import Testing

/// A real grpc-swift-2 client and server with Portico between them (HTTP/2 both sides): unary and bidirectional
/// streaming calls, status and message trailers, and deadlines. Messages are raw bytes, so no code generation.
@Suite(.serialized) struct GRPCIntegrationTests {
    struct Bytes: MessageSerializer, MessageDeserializer {
        func serialize<B: GRPCContiguousBytes>(_ message: [UInt8]) throws -> B { B(message) }
        func deserialize<B: GRPCContiguousBytes>(_ bytes: B) throws -> [UInt8] { bytes.withUnsafeBytes { Array($0) } }
    }

    enum Methods {
        static let service = ServiceDescriptor(package: "portico.test", service: "Echo")
        static let get = MethodDescriptor(fullyQualifiedService: service.fullyQualifiedService, method: "Get")
        static let update = MethodDescriptor(fullyQualifiedService: service.fullyQualifiedService, method: "Update")
        static let fail = MethodDescriptor(fullyQualifiedService: service.fullyQualifiedService, method: "Fail")
        static let slow = MethodDescriptor(fullyQualifiedService: service.fullyQualifiedService, method: "Slow")
    }

    struct EchoService: RegistrableRPCService {
        func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
            router.registerHandler(forMethod: Methods.get, deserializer: Bytes(), serializer: Bytes()) { request, _ in
                let single = try await ServerRequest(stream: request)
                return StreamingServerResponse(single: ServerResponse(message: single.message.reversed()))
            }
            router.registerHandler(forMethod: Methods.update, deserializer: Bytes(), serializer: Bytes()) { request, _ in
                StreamingServerResponse { writer in
                    for try await message in request.messages { try await writer.write(message + [0xff]) }
                    return ["x-done": "yes"]
                }
            }
            router.registerHandler(forMethod: Methods.fail, deserializer: Bytes(), serializer: Bytes()) { _, _ in
                throw RPCError(code: .notFound, message: "no such thing")
            }
            router.registerHandler(forMethod: Methods.slow, deserializer: Bytes(), serializer: Bytes()) { request, _ in
                _ = try await ServerRequest(stream: request)
                try await Task.sleep(nanoseconds: 3_000_000_000)
                return StreamingServerResponse(single: ServerResponse(message: []))
            }
        }
    }

    @Test func unaryStreamingTrailersAndDeadlinesPassThrough() async throws {
        let transport = HTTP2ServerTransport.Posix(address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext)
        let server = GRPCServer(transport: transport, services: [EchoService()])
        let serving = Task { try await server.serve() }
        defer { server.beginGracefulShutdown() }
        let serverPort = try #require(try await transport.listeningAddress.ipv4).port

        let yaml = """
            listeners: [ { name: grpc, address: "127.0.0.1:0", http2: { cleartext: true } } ]
            access_log: { destination: "off" }
            routes: [ { match: { path_prefix: /portico.test.Echo/ }, cluster: grpc } ]
            clusters: [ { name: grpc, protocol: h2c, hosts: [ { address: "127.0.0.1:\(serverPort)" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, workers: 2, logLevel: .critical)
        defer { Task { await proxy.shutdown() } }

        try await withGRPCClient(
            transport: .http2NIOPosix(target: .ipv4(host: "127.0.0.1", port: proxy.port()), transportSecurity: .plaintext)
        ) { client in
            // Unary.
            let reply = try await client.unary(
                request: ClientRequest(message: [1, 2, 3]), descriptor: Methods.get,
                serializer: Bytes(), deserializer: Bytes(), options: .defaults
            ) { try $0.message }
            #expect(reply == [3, 2, 1])

            // Bidirectional streaming, with trailing metadata.
            let (echoed, trailer) = try await client.bidirectionalStreaming(
                request: StreamingClientRequest(of: [UInt8].self) { writer in
                    for i in 0..<20 { try await writer.write([UInt8(i)]) }
                },
                descriptor: Methods.update, serializer: Bytes(), deserializer: Bytes(), options: .defaults
            ) { response -> ([[UInt8]], String?) in
                var got: [[UInt8]] = []
                guard case .success(let contents) = response.accepted else { return (got, nil) }
                var trailer: String?
                for try await part in contents.bodyParts {
                    switch part {
                    case .message(let m): got.append(m)
                    case .trailingMetadata(let md): trailer = md["x-done"].first(where: { _ in true }).map { "\($0)" }
                    }
                }
                return (got, trailer)
            }
            #expect(echoed == (0..<20).map { [UInt8($0), 0xff] })
            #expect(trailer?.contains("yes") == true)

            // Errors: grpc-status and grpc-message arrive intact.
            await #expect {
                try await client.unary(
                    request: ClientRequest(message: []), descriptor: Methods.fail,
                    serializer: Bytes(), deserializer: Bytes(), options: .defaults
                ) { try $0.message }
            } throws: { error in
                guard let rpc = error as? RPCError else { return false }
                return rpc.code == .notFound && rpc.message == "no such thing"
            }

            // Deadlines (grpc-timeout) are honoured.
            var options = CallOptions.defaults
            options.timeout = .milliseconds(300)
            let start = ContinuousClock.now
            await #expect {
                try await client.unary(
                    request: ClientRequest(message: []), descriptor: Methods.slow,
                    serializer: Bytes(), deserializer: Bytes(), options: options
                ) { try $0.message }
            } throws: { error in
                (error as? RPCError)?.code == .deadlineExceeded
            }
            // The deadline, not the handler's answer (after 3 s), ended the call. (Not a speed check: the margin is
            // the 2.7 s between the two, so a busy machine does not fail it.)
            #expect(ContinuousClock.now - start < .seconds(3))
        }
        server.beginGracefulShutdown()
        try? await serving.value
    }
}
