//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import PorticoTestSupport
import Testing

/// Overload (issue 10 §2): the real binary under a low `ulimit -n`. Nearing the limit, it stops accepting and
/// closes idle keep-alive connections, while a request in flight completes; below the limit again, it accepts.
@Suite(.serialized) struct OverloadTests {
    @Test func nearTheOpenFilesLimitIdleConnectionsGoAndInFlightRequestsFinish() async throws {
        let origin = try await TestOrigin.start(name: "o")
        defer { Task { await origin.shutdown() } }
        let path = try BinaryTests.tempFile("overload.yaml", """
            workers: 1
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            overload: { open_files_percent: 75, interval: 100ms }
            routes:
              - { match: { path_prefix: /delay/ }, cluster: c }
              - { respond: { body: "ok" } }
            clusters: [ { name: c, hosts: [ { address: "\(origin.address)" } ] } ]
            """)
        // 64 files: about 17 are Portico's own; 75% is 48.
        let (p, port, err) = try BinaryTests.start(["-c", "ulimit -n 64; exec \"$0\" run --config \"$1\" --log-level notice", path],
                                                   viaShell: true)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }

        let pid = p.processIdentifier
        let outcome = try await offThePool { () -> (count: Int, firstClosed: Bool, lastOpen: Bool, slow: Int?) in
            // A slow request in flight (its origin answers after 3 s).
            let slow = try RawHTTPClient(port: port, timeoutSeconds: 10)
            try slow.send("GET /delay/3000 HTTP/1.1\r\nHost: t\r\n\r\n")
            // Idle keep-alive connections, one request each. Once Portico's open files reach the threshold (read
            // from its /proc), the next step waits for the event: the idle ones closed by Portico. With them gone it
            // is under again and accepts, so every connection here is answered.
            var idle: [RawHTTPClient] = []
            var shed = false
            for _ in 0..<40 {
                let c = try RawHTTPClient(port: port, timeoutSeconds: 1)
                try c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                guard c.readResponses(1).first?.status == 200 else { break }
                idle.append(c)
                let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
                if !shed && open >= 48 {
                    _ = idle[0].waitForClose(timeoutSeconds: 10)
                    shed = true
                }
            }
            // The first 25 were open when the threshold was reached: closed. The last came after: open.
            let firstClosed = idle.prefix(25).allSatisfy { $0.readAll(limit: 1).closed }
            let lastOpen = idle.count == 40 && !idle[39].readAll(limit: 1).closed
            return (idle.count, firstClosed, lastOpen, slow.readResponses(1).first?.status)
        }
        #expect(outcome.count == 40 && outcome.firstClosed && outcome.lastOpen, "\(outcome)")
        #expect(outcome.slow == 200)
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        let log = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(log.contains("overloaded: not accepting connections") && log.contains("overload over: accepting connections again"), "\(log)")
    }
}
