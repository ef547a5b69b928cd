//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PorticoCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where access log lines go. Lines are formatted on the worker's EventLoop into that worker's buffer (no lock
/// per line); every 100 ms, or when a buffer passes 64 KiB, the worker hands the buffer to this sink, whose own
/// thread does the blocking `write(2)`. A slow disk therefore never blocks an EventLoop; if the writer falls more
/// than 64 MiB behind, batches are dropped and counted rather than growing memory without bound.
public final class AccessLogSink: Sendable {
    public enum Destination: Sendable, Hashable {
        case stdout
        case stderr
        case file(String)
    }

    public let format: AccessLogFormat
    private let state: NIOLockedValueBox<State>
    private let condition: ConditionLock<Int>
    private let destination: Destination

    private struct State {
        var queue: [ByteBuffer] = []
        var queuedBytes = 0
        var dropped = 0
        var stopped = false
        var fd: Int32 = -1
        var reopen = false
    }

    public init(destination: Destination, format: AccessLogFormat) {
        self.format = format
        self.destination = destination
        self.state = NIOLockedValueBox(State())
        self.condition = ConditionLock(value: 0)
        // One dedicated thread for blocking writes; it lives as long as the sink.
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        pool.submit { [self] _ in self.run() }
    }

    /// Hands a batch of formatted lines to the writer thread. Called on an EventLoop; takes a lock once per batch.
    func submit(_ buffer: ByteBuffer) {
        self.condition.lock()
        let accepted = self.state.withLockedValue { s -> Bool in
            if s.queuedBytes > 64 << 20 {
                s.dropped += 1
                return false
            }
            s.queue.append(buffer)
            s.queuedBytes += buffer.readableBytes
            return true
        }
        self.condition.unlock(withValue: accepted ? 1 : 0)
    }

    /// Reopens a log file (after rotation), on the next batch.
    public func reopen() {
        self.state.withLockedValue { $0.reopen = true }
    }

    /// Stops the writer after it has written everything submitted so far.
    public func stop() {
        self.condition.lock()
        self.state.withLockedValue { $0.stopped = true }
        self.condition.unlock(withValue: 1)
    }

    private func openFD() -> Int32 {
        switch self.destination {
        case .stdout: return 1
        case .stderr: return 2
        case .file(let path): return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        }
    }

    private func run() {
        var fd = self.openFD()
        while true {
            self.condition.lock(whenValue: 1)
            let (batch, stopped, reopen) = self.state.withLockedValue { s -> ([ByteBuffer], Bool, Bool) in
                let b = s.queue
                s.queue.removeAll()
                s.queuedBytes = 0
                let r = s.reopen
                s.reopen = false
                return (b, s.stopped, r)
            }
            self.condition.unlock(withValue: 0)
            if reopen, case .file = self.destination {
                if fd > 2 { close(fd) }
                fd = self.openFD()
            }
            for buffer in batch where fd >= 0 {
                buffer.withUnsafeReadableBytes { bytes in
                    var offset = 0
                    while offset < bytes.count {
                        let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                        if n <= 0 {
                            if n < 0 && errno == EINTR { continue }
                            break
                        }
                        offset += n
                    }
                }
            }
            if stopped {
                if fd > 2 { close(fd) }
                return
            }
        }
    }
}

/// A worker's access log buffer. Only touched on the worker's EventLoop.
final class AccessLogBuffer {
    let sink: AccessLogSink
    var buffer: ByteBuffer

    init(sink: AccessLogSink) {
        self.sink = sink
        self.buffer = ByteBufferAllocator().buffer(capacity: 16 * 1024)
    }

    func append(_ entry: AccessLogEntry) {
        switch self.sink.format {
        case .combined: entry.writeCombined(into: &self.buffer)
        case .json: entry.writeJSON(into: &self.buffer)
        }
        if self.buffer.readableBytes >= 64 * 1024 { self.flush() }
    }

    func flush() {
        guard self.buffer.readableBytes > 0 else { return }
        self.sink.submit(self.buffer)
        self.buffer = ByteBufferAllocator().buffer(capacity: 16 * 1024)
    }
}

/// One request, as the access log records it. Built once in the exchange's log phase.
struct AccessLogEntry {
    var clientIP: String
    var method: String
    var uri: String
    var version: HTTPVersionText
    var status: Int
    var bytesSent: Int
    var referer: String?
    var userAgent: String?
    var host: String?
    var route: String?
    var cluster: String?
    var upstream: String?
    var durationSeconds: Double
    var upstreamSeconds: Double?
    var reason: String?
    var attempts: Int
    var time: timespec
    var requestID: String? = nil

    struct HTTPVersionText { var major: Int; var minor: Int }

    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    private func formattedTime() -> (clf: String, iso: String) {
        var t = tm()
        var secs = self.time.tv_sec
        gmtime_r(&secs, &t)
        func pad(_ v: Int32, _ n: Int = 2) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        let clf = "\(pad(t.tm_mday))/\(Self.months[Int(t.tm_mon)])/\(t.tm_year + 1900):\(pad(t.tm_hour)):\(pad(t.tm_min)):\(pad(t.tm_sec)) +0000"
        let ms = pad(Int32(self.time.tv_nsec / 1_000_000), 3)
        let iso = "\(t.tm_year + 1900)-\(pad(t.tm_mon + 1))-\(pad(t.tm_mday))T\(pad(t.tm_hour)):\(pad(t.tm_min)):\(pad(t.tm_sec)).\(ms)Z"
        return (clf, iso)
    }

    /// nginx's `combined`, then Portico's fields: `host route cluster upstream duration upstream_duration
    /// reason attempts`. `-` for an absent value.
    func writeCombined(into buffer: inout ByteBuffer) {
        let t = self.formattedTime().clf
        func q(_ s: String?) -> String { "\"" + (s.map(Self.escapeQuoted) ?? "-") + "\"" }
        var line = "\(self.clientIP) - - [\(t)] \"\(Self.escapeQuoted(self.method)) \(Self.escapeQuoted(self.uri)) HTTP/\(self.version.major).\(self.version.minor)\" "
        line += "\(self.status) \(self.bytesSent) \(q(self.referer)) \(q(self.userAgent)) "
        line += "host=\(self.host.map(Self.escapeBare) ?? "-") route=\(self.route ?? "-") cluster=\(self.cluster ?? "-") upstream=\(self.upstream ?? "-") "
        line += "duration=\(Self.seconds(self.durationSeconds)) upstream_duration=\(self.upstreamSeconds.map(Self.seconds) ?? "-") "
        line += "attempts=\(self.attempts) reason=\(self.reason ?? "-") request_id=\(self.requestID ?? "-")\n"
        buffer.writeString(line)
    }

    func writeJSON(into buffer: inout ByteBuffer) {
        let t = self.formattedTime().iso
        func s(_ v: String?) -> String { v.map { "\"" + Self.escapeJSON($0) + "\"" } ?? "null" }
        var line = "{\"time\":\"\(t)\",\"client\":\(s(self.clientIP)),\"method\":\(s(self.method)),\"uri\":\(s(self.uri)),"
        line += "\"protocol\":\"HTTP/\(self.version.major).\(self.version.minor)\",\"status\":\(self.status),\"bytes_sent\":\(self.bytesSent),"
        line += "\"referer\":\(s(self.referer)),\"user_agent\":\(s(self.userAgent)),\"host\":\(s(self.host)),\"route\":\(s(self.route)),"
        line += "\"cluster\":\(s(self.cluster)),\"upstream\":\(s(self.upstream)),\"duration\":\(Self.seconds(self.durationSeconds)),"
        line += "\"upstream_duration\":\(self.upstreamSeconds.map(Self.seconds) ?? "null"),\"attempts\":\(self.attempts),\"reason\":\(s(self.reason)),\"request_id\":\(s(self.requestID))}\n"
        buffer.writeString(line)
    }

    static func seconds(_ v: Double) -> String {
        let ms = Int((v * 1000).rounded())
        let frac = ms % 1000
        return "\(ms / 1000)." + (frac < 10 ? "00" : frac < 100 ? "0" : "") + "\(frac)"
    }

    /// Log injection: control characters and quotes are escaped (nginx escapes as \xHH).
    static func escapeQuoted(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5c || $0 >= 0x7f }) else { return s }
        var out = ""
        for b in s.utf8 {
            if b < 0x20 || b == 0x22 || b == 0x5c || b >= 0x7f {
                out += "\\x" + String(b, radix: 16, uppercase: true).leftPadded(2)
            } else {
                out.unicodeScalars.append(Unicode.Scalar(b))
            }
        }
        return out
    }

    static func escapeBare(_ s: String) -> String {
        let e = escapeQuoted(s)
        return e.contains(" ") ? e.replacingSpaces() : e
    }

    static func escapeJSON(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5c }) else { return s }
        var out = ""
        for ch in s.unicodeScalars {
            switch ch {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if ch.value < 0x20 {
                    out += "\\u" + String(ch.value, radix: 16).leftPadded(4)
                } else {
                    out.unicodeScalars.append(ch)
                }
            }
        }
        return out
    }
}

extension String {
    fileprivate func leftPadded(_ n: Int) -> String {
        self.count >= n ? self : String(repeating: "0", count: n - self.count) + self
    }

    fileprivate func replacingSpaces() -> String {
        String(self.map { $0 == " " ? "+" : $0 })
    }
}
