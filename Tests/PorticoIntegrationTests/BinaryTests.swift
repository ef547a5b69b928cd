//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import PorticoTestSupport
import Testing

/// The real `portico` executable: command line, config errors, signals. It is built with the tests and found next
/// to the test bundle. Every process started here is stopped by its own PID.
@Suite(.serialized) struct BinaryTests {
    static var binary: URL {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // swift test runs `.build/<triple>/debug/porticoPackageTests.xctest`; the executable sits beside it.
        for _ in 0..<3 {
            let candidate = dir.appendingPathComponent("portico")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: ".build/debug/portico")
    }

    static func run(_ args: [String], stdin: String? = nil) throws -> (code: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = binary
        p.arguments = args
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    static func tempFile(_ name: String, _ text: String) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("portico-tests-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    @Test func versionAndHelp() throws {
        let v = try Self.run(["version"])
        #expect(v.code == 0 && v.out.hasPrefix("portico "))
        // The git commit and build date, written in by the BuildInfo plugin.
        #expect(v.out.contains("(commit ") && v.out.contains(", built 20"), "\(v.out)")
        for cmd in [["--help"], ["run", "--help"], ["check", "--help"], ["proxy", "--help"]] {
            let h = try Self.run(cmd)
            #expect(h.code == 0)
            #expect(h.out.contains("USAGE"))
        }
    }

    @Test func checkReportsEveryErrorWithFileLineAndPath() throws {
        let path = try Self.tempFile("bad.yaml", """
            listeners:
              - name: public
                address: 127.0.0.1:0
                bogus: 1
            routes:
              - cluster: nowhere
            """)
        let r = try Self.run(["check", "--config", path])
        #expect(r.code == 1)
        // `portico --config FILE` is `portico run --config FILE`: it refuses the same file, binding nothing.
        let run = try Self.run(["--config", path])
        #expect(run.code == 1 && run.err.contains("unknown cluster"))
        #expect(r.err.contains("\(path):4:5: listeners[0].bogus: unknown key \"bogus\""))
        #expect(r.err.contains("\(path):6:14: routes[0].cluster: unknown cluster \"nowhere\""))
        #expect(r.err.contains("2 error(s)"))
    }

    @Test func checkAcceptsTheBundledAndExampleConfigs() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for name in ["portico.yaml", "portico.example.yaml", "examples/edge.yaml"] {
            let r = try Self.run(["check", "--config", root.appendingPathComponent(name).path])
            #expect(r.code == 0, "\(name): \(r.err)")
            #expect(r.out.contains(": ok: "))
        }
    }

    /// Starts `portico` with `args` and waits until it logs that a listener is ready; returns the process and port.
    /// With `viaShell`, `args` are `["-c", script, arguments…]` for `/bin/sh`, and the script gets the binary's path
    /// as `$0` (for a `ulimit` before `exec`).
    static func start(_ args: [String], viaShell: Bool = false) throws -> (Process, Int, Pipe) {
        let p = Process()
        if viaShell {
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = Array(args.prefix(2)) + [binary.path] + Array(args.dropFirst(2))
        } else {
            p.executableURL = binary
            p.arguments = args
        }
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        var text = ""
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
            if let r = text.range(of: "ready on "), let line = text[r.upperBound...].split(separator: "\n").first,
                let colon = line.lastIndex(of: ":"), let port = Int(line[line.index(after: colon)...])
            {
                return (p, port, err)
            }
        }
        p.terminate()
        throw RawClientError(description: "portico did not start: \(text)")
    }

    @Test func quickProxyModeProxies() async throws {
        let origin = try await TestOrigin.start(name: "quick")
        defer { Task { await origin.shutdown() } }
        let (p, port, _) = try Self.start(["proxy", "--listen", "127.0.0.1:0", "--to", origin.address, "--workers", "1", "--log-level", "notice"])
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let c = try RawHTTPClient(port: port)
        try c.send("GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        let r = c.readResponses(1)
        #expect(r.first?.status == 200)
        #expect(r.first?.header("x-origin") == "quick")
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
    }

    /// `portico proxy --cache SIZE --compress`: the second request is a hit, and both are compressed.
    @Test func quickModeCachesAndCompresses() async throws {
        let origin = try await TestOrigin.start(name: "quick")
        defer { Task { await origin.shutdown() } }
        let (p, port, _) = try Self.start(["proxy", "--listen", "127.0.0.1:0", "--to", origin.address, "--workers", "1", "--log-level", "notice",
                                           "--cache", "16MiB", "--compress"])
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let target = "/respond/q?size=5000&h=Cache-Control:%20max-age=60&h=Content-Type:%20text/plain"
        var statuses: [String] = []
        for _ in 0..<2 {
            let c = try RawHTTPClient(port: port)
            try c.send("GET \(target) HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n")
            let r = try #require(c.readResponses(1).first)
            #expect(r.status == 200 && r.header("content-encoding") == "gzip")
            #expect(ContentDecoder.decode(r.bytes, coding: "gzip") == TestOrigin.text(size: 5000))
            statuses.append(r.header("cache-status") ?? "-")
        }
        #expect(statuses[0].contains("fwd=uri-miss; stored") && statuses[1].contains("hit"), "\(statuses)")
        #expect(origin.requestCount == 1)
        #expect(try Self.run(["proxy", "--to", origin.address, "--cache", "10KiB"]).err.contains("--cache takes a size"))
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
    }

    /// Reads the process's standard error until `marker` appears (or it ends, or 10 s pass).
    static func readStderr(_ pipe: Pipe, until marker: String) -> String {
        var text = ""
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline && !text.contains(marker) {
            let chunk = pipe.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        return text
    }

    /// SIGUSR1 reopens the access log file: after logrotate moves it away, new lines go to a new file.
    @Test func sigusr1ReopensTheAccessLog() async throws {
        let origin = try await TestOrigin.start(name: "a")
        defer { Task { await origin.shutdown() } }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("portico-usr1-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let logPath = dir.appendingPathComponent("access.log").path
        let path = try Self.tempFile("usr1.yaml", """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "\(logPath)" }
            routes: [ { cluster: c } ]
            clusters: [ { name: c, hosts: [ { address: "\(origin.address)" } ] } ]
            """)
        let (p, port, _) = try Self.start(["run", "--config", path, "--log-level", "notice"])
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        func request(_ target: String) throws {
            let c = try RawHTTPClient(port: port)
            try c.send("GET \(target) HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            _ = c.readResponses(1)
        }
        func contents(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        try request("/before-rotation")
        try await waitUntil("the first line is written") { contents(logPath).contains("/before-rotation") }
        let rotated = logPath + ".1"
        try FileManager.default.moveItem(atPath: logPath, toPath: rotated)
        kill(p.processIdentifier, SIGUSR1)
        // Lines go to the new file once it is reopened; until then they may still reach the moved one.
        try await waitUntil("a line reaches a new access.log") {
            try request("/after-rotation")
            return contents(logPath).contains("/after-rotation")
        }
        #expect(!contents(rotated).isEmpty && !contents(logPath).contains("/before-rotation"))
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
    }

    @Test func sighupReloadsAndBadConfigKeepsRunningConfig() async throws {
        let a = try await TestOrigin.start(name: "a")
        let b = try await TestOrigin.start(name: "b")
        defer { Task { await a.shutdown(); await b.shutdown() } }
        func config(_ origin: TestOrigin) -> String {
            """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            routes: [ { cluster: c } ]
            clusters: [ { name: c, hosts: [ { address: "\(origin.address)" } ] } ]
            """
        }
        let path = try Self.tempFile("reload.yaml", config(a))
        let (p, port, errPipe) = try Self.start(["run", "--config", path, "--log-level", "notice"])
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        func originNow() throws -> String? {
            let c = try RawHTTPClient(port: port)
            try c.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            return c.readResponses(1).first?.header("x-origin")
        }
        #expect(try originNow() == "a")
        // A long request in flight across the reload and the shutdown still completes.
        let slow = try RawHTTPClient(port: port)
        try slow.send("GET /delay/700 HTTP/1.1\r\nHost: t\r\n\r\n")

        try "routes: [ { cluster: missing } ]".write(toFile: path, atomically: true, encoding: .utf8)
        kill(p.processIdentifier, SIGHUP)
        // Waits for the reload's own log line rather than for a fixed time.
        let refusal = Self.readStderr(errPipe, until: "keeping the running config")
        #expect(refusal.contains("keeping the running config"))
        #expect(try originNow() == "a")  // bad config: the running one stays

        try config(b).write(toFile: path, atomically: true, encoding: .utf8)
        kill(p.processIdentifier, SIGHUP)
        try await waitUntil("the reloaded config sends requests to b") { try originNow() == "b" }

        kill(p.processIdentifier, SIGTERM)
        #expect(slow.readResponses(1).first?.status == 200)
        p.waitUntilExit()
        let log = String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus == 0, "\(p.terminationReason == .uncaughtSignal ? "signal" : "exit") \(p.terminationStatus): \(log)")
    }
}
