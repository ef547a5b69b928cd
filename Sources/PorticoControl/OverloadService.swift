//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Logging
import PorticoCore
import PorticoEngine

#if canImport(Glibc)
import Glibc
#endif

/// Measures the process's open files and resident memory every `overload.interval` and carries out
/// `OverloadPolicy`'s decisions on the engine: stop accepting and shed connections on entering overload, accept
/// again on leaving it. Each change is logged.
///
/// A task on the control plane; measuring reads `/proc/self` (in memory, a few microseconds per hundred files).
actor OverloadService {
    private let engine: ProxyEngine
    private let logger: Logger
    private var task: Task<Void, Never>?
    private(set) var overloaded = false
    private(set) var episodes = 0

    init(engine: ProxyEngine, logger: Logger) {
        self.engine = engine
        self.logger = logger
    }

    func start(_ config: OverloadConfig?) async {
        self.task?.cancel()
        if self.overloaded {
            // New settings start from a clean state: accept again; the new policy measures anew.
            self.overloaded = false
            await self.engine.setAccepting(true)
        }
        var policy = OverloadPolicy(config)
        guard policy.isEnabled else { return }
        let interval = UInt64(config?.interval?.nanoseconds ?? 1_000_000_000)
        self.task = Task {
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: interval)
                if Task.isCancelled { return }
                let action = policy.evaluate(Self.measure())
                await self.carryOut(action, stillOverloaded: policy.overloaded)
            }
        }
    }

    func stop() {
        self.task?.cancel()
        self.task = nil
    }

    private func carryOut(_ action: OverloadPolicy.Action?, stillOverloaded: Bool) async {
        switch action {
        case .enter(let reason)?:
            self.overloaded = true
            self.episodes += 1
            self.logger.critical("overloaded: not accepting connections, closing idle ones", metadata: ["reason": "\(reason)"])
            await self.engine.setAccepting(false)
            await self.engine.shedConnections()
        case .leave?:
            self.overloaded = false
            self.logger.notice("overload over: accepting connections again")
            await self.engine.setAccepting(true)
        case nil:
            // Still over: connections that were busy at the last look may be idle now.
            if stillOverloaded { await self.engine.shedConnections() }
        }
    }

    /// Open files (entries of /proc/self/fd), the soft limit, and resident memory (/proc/self/statm).
    static func measure() -> OverloadPolicy.Usage {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        var open = 0
        if let dir = opendir("/proc/self/fd") {
            while readdir(dir) != nil { open += 1 }
            closedir(dir)
            open = max(0, open - 3)  // ".", "..", and the directory's own descriptor
        }
        var resident = 0
        if let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) {
            let fields = text.split(separator: " ")
            if fields.count > 1, let pages = Int(fields[1]) { resident = pages * sysconf(Int32(_SC_PAGESIZE)) }
        }
        let soft = limit.rlim_cur >= rlim_t(Int.max) ? 0 : Int(limit.rlim_cur)  // RLIM_INFINITY: no limit to near
        return OverloadPolicy.Usage(openFiles: open, openFilesLimit: soft, residentBytes: resident)
    }
}
