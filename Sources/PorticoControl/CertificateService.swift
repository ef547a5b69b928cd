//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import NIOPosix
import PorticoCore
import PorticoEngine

/// Loads listener certificates and reloads them when their files change (Caddy, `TimedCertificateReloader`), on
/// a thread of its own: file reads block, so they never run on an EventLoop or on Swift concurrency's threads.
/// The engine gets loaded `ListenerTLS` values and reads no file.
///
/// An actor: its state is its own, whatever calls it.
actor CertificateService {
    private let threadPool: NIOThreadPool
    private let logger: Logger
    /// The TLS of each listener by name, as loaded for the running generation.
    private var running: [String: ListenerTLS] = [:]
    private var reloads: [Task<Void, Never>] = []

    init(logger: Logger) {
        self.logger = logger
        self.threadPool = NIOThreadPool(numberOfThreads: 1)
        self.threadPool.start()
    }

    /// The TLS of every TLS listener of `config`: the running one when its settings did not change (so a reload
    /// keeps the session ticket key and the store that watches the files), else loaded from its files.
    func prepare(_ config: PorticoConfig) async throws -> [String: ListenerTLS] {
        var out: [String: ListenerTLS] = [:]
        for l in config.listeners {
            guard let tls = l.tls else { continue }
            let http2 = l.http2?.enabled ?? true
            if let running = self.running[l.name], running.config == tls, running.offersHTTP2 == http2 {
                out[l.name] = running
            } else {
                out[l.name] = try await self.threadPool.runIfActive { try ListenerTLS(tls, http2: http2) }
            }
        }
        return out
    }

    /// `tls` is now in force: watch its files (one loop per listener, at its `reload_interval`).
    func activate(_ tls: [String: ListenerTLS]) {
        self.running = tls
        for t in self.reloads { t.cancel() }
        self.reloads = tls.values.map { listener in
            Task { [threadPool, logger] in
                while !Task.isCancelled {
                    try? await Task.sleep(nanoseconds: UInt64(listener.reloadInterval.nanoseconds))
                    if Task.isCancelled { return }
                    _ = try? await threadPool.runIfActive { listener.store.reloadIfChanged(logger: logger) }
                }
            }
        }
    }

    func stop() async {
        for t in self.reloads { t.cancel() }
        self.reloads = []
        try? await self.threadPool.shutdownGracefully()
    }
}
