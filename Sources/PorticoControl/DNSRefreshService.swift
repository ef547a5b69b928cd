//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import NIOPosix
import PorticoCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Resolves upstream hosts given by name (`api.internal:8080`) every `dns_refresh`, with the system resolver
/// (`getaddrinfo`, run on a thread pool: it blocks), and publishes the addresses in the host's `HostState`, where
/// new upstream connections take them in turn. A failed resolution keeps the last good addresses; each change is
/// logged once. Off the request path.
public actor DNSRefreshService {
    private let logger: Logger
    private let threadPool: NIOThreadPool
    private var tasks: [Task<Void, Never>] = []

    public init(logger: Logger) {
        self.logger = logger
        self.threadPool = NIOThreadPool(numberOfThreads: 1)
        self.threadPool.start()
    }

    public func update(_ table: RoutingTable) {
        self.stop()
        // One refresh per host state (each cluster keeps its own state of an address it shares with another).
        var seen: Set<ObjectIdentifier> = []
        for cluster in table.clusters {
            for host in cluster.hosts where !host.address.isIPLiteral && seen.insert(ObjectIdentifier(host.state)).inserted {
                let interval = cluster.dnsRefresh
                self.tasks.append(Task { [logger, threadPool] in
                    while !Task.isCancelled {
                        await Self.refresh(host, threadPool: threadPool, logger: logger)
                        try? await Task.sleep(nanoseconds: UInt64(interval.nanoseconds))
                    }
                })
            }
        }
    }

    public func stop() {
        for t in self.tasks { t.cancel() }
        self.tasks = []
    }

    static func refresh(_ host: UpstreamHost, threadPool: NIOThreadPool, logger: Logger) async {
        let name = host.address.host
        let port = host.address.port
        let result: Result<[SocketAddress], any Error>
        do {
            result = .success(try await threadPool.runIfActive { try Self.resolve(name, port: port) })
        } catch {
            result = .failure(error)
        }
        switch result {
        case .success(let addresses) where !addresses.isEmpty:
            if host.state.setResolved(addresses) {
                logger.notice("host resolved", metadata: ["host": "\(host.address)", "addresses": "\(addresses.map { "\($0.ipAddress ?? "?")" })"])
            }
        case .success:
            logger.warning("host name resolved to nothing, keeping the last addresses", metadata: ["host": "\(host.address)"])
        case .failure(let error):
            logger.warning("host name resolution failed, keeping the last addresses", metadata: ["host": "\(host.address)", "error": "\(error)"])
        }
    }

    /// Blocking `getaddrinfo` for TCP addresses of `name`.
    static func resolve(_ name: String, port: Int) throws -> [SocketAddress] {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var info: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(name, String(port), &hints, &info)
        guard rc == 0, let first = info else {
            throw ResolutionError(name: name, message: String(cString: gai_strerror(rc)))
        }
        defer { freeaddrinfo(first) }
        var out: [SocketAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let ai = cursor {
            if let sa = ai.pointee.ai_addr {
                switch Int32(sa.pointee.sa_family) {
                case AF_INET:
                    let v4 = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
                    out.append(SocketAddress(v4, host: name))
                case AF_INET6:
                    let v6 = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee }
                    out.append(SocketAddress(v6, host: name))
                default:
                    break
                }
            }
            cursor = ai.pointee.ai_next
        }
        // One entry per address (getaddrinfo repeats them per protocol).
        var unique: [String: SocketAddress] = [:]
        for a in out where unique[a.description] == nil { unique[a.description] = a }
        return out.filter { unique.removeValue(forKey: $0.description) != nil }
    }

    struct ResolutionError: Error, CustomStringConvertible {
        var name: String
        var message: String
        var description: String { "cannot resolve \(self.name): \(self.message)" }
    }
}
