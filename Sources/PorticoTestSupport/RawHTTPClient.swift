//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#endif

/// A blocking TCP client for sending exact bytes (malformed, pipelined, half-written requests) and reading
/// raw responses. For tests only; call it from a thread that may block.
public final class RawHTTPClient {
    private var fd: Int32

    /// Connects to 127.0.0.1:`port`; reads time out after `timeoutSeconds`.
    public init(port: Int, timeoutSeconds: Int = 5) throws {
        self.fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard self.fd >= 0 else { throw RawClientError("socket failed") }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(self.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(self.fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let code = errno
            close(self.fd)
            // A class whose init throws after its properties are set still runs `deinit`: without this it would
            // close the descriptor again, by then perhaps another thread's (an EventLoop's socket: EBADF there).
            self.fd = -1
            throw RawClientError("connect failed: errno \(code)")
        }
    }

    deinit { if self.fd >= 0 { close(self.fd) } }

    public func send(_ text: String) throws {
        try self.send(Array(text.utf8))
    }

    public func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw RawClientError("send failed: errno \(errno)") }
            offset += n
        }
    }

    /// Sends zeros, 64 KiB at a time, until `total` bytes went out or a send blocked for `seconds` (the peer
    /// stopped taking them). Returns how many bytes the kernel accepted.
    public func sendUntilBlocked(total: Int, seconds: Int) -> Int {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(self.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let chunk = [UInt8](repeating: 0, count: 65536)
        var sent = 0
        while sent < total {
            let n = chunk.withUnsafeBytes { Glibc.send(self.fd, $0.baseAddress, min($0.count, total - sent), Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            sent += n
        }
        return sent
    }

    private var pending: [UInt8] = []

    /// Reads until `delimiter` has arrived; returns everything up to and including it (nil on close/timeout).
    public func readUntil(_ delimiter: String) -> String? {
        let d = Array(delimiter.utf8)
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            if let r = self.pending.firstRange(of: d) {
                let out = Array(self.pending[..<r.upperBound])
                self.pending.removeFirst(r.upperBound)
                return String(decoding: out, as: UTF8.self)
            }
            let n = recv(self.fd, &buf, buf.count, 0)
            if n <= 0 { return nil }
            self.pending.append(contentsOf: buf[0..<n])
        }
    }

    /// Reads exactly `count` bytes (nil on close/timeout).
    public func readExactly(_ count: Int) -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: 65536)
        while self.pending.count < count {
            let n = recv(self.fd, &buf, buf.count, 0)
            if n <= 0 { return nil }
            self.pending.append(contentsOf: buf[0..<n])
        }
        let out = Array(self.pending[0..<count])
        self.pending.removeFirst(count)
        return out
    }


    /// Closes the connection with a reset (SO_LINGER 0), as a client that crashed or gave up does: the peer sees
    /// the connection fail at once, not the end of a request stream.
    public func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(self.fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(self.fd)
        self.fd = -1
    }

    /// Waits (poll(2), no sleeping) until the peer closes an idle connection, or the timeout passes; true when
    /// it closed (an EOF or a reset, not bytes).
    public func waitForClose(timeoutSeconds: Int) -> Bool {
        var p = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
        _ = poll(&p, 1, Int32(timeoutSeconds * 1000))
        var byte: UInt8 = 0
        let n = recv(self.fd, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
        return n == 0 || (n < 0 && errno == ECONNRESET)
    }

    /// Reads until the peer closes, the timeout passes, or `limit` bytes.
    public func readAll(limit: Int = 64 << 20) -> (text: String, closed: Bool) {
        let (bytes, closed) = self.readAllBytes(limit: limit)
        return (String(decoding: bytes, as: UTF8.self), closed)
    }

    /// Like `readAll`, without decoding: for binary protocols (HTTP/2 frames).
    public func readAllBytes(limit: Int = 64 << 20) -> (bytes: [UInt8], closed: Bool) {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let n = recv(self.fd, &buf, buf.count, 0)
            if n == 0 { return (out, true) }
            if n < 0 { return (out, errno == ECONNRESET) }
            out.append(contentsOf: buf[0..<n])
        }
        return (out, false)
    }

    /// Reads until `count` complete responses (by Content-Length or chunked framing) have arrived or the
    /// connection closes. Returns their status codes and bodies.
    /// `headIndexes`: which of the responses answer HEAD requests (their length headers describe no body).
    public func readResponses(_ count: Int, headIndexes: Set<Int> = []) -> [RawResponse] {
        var data: [UInt8] = []
        var responses: [RawResponse] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while responses.count < count {
            if let (r, used) = RawResponse.parse(data, isHead: headIndexes.contains(responses.count)) {
                responses.append(r)
                data.removeFirst(used)
                continue
            }
            let n = recv(self.fd, &buf, buf.count, 0)
            if n <= 0 { break }
            data.append(contentsOf: buf[0..<n])
        }
        return responses
    }
}

public struct RawResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: String
    /// The body's bytes (for bodies that are not text, such as compressed ones).
    public var bytes: [UInt8] = []

    public func header(_ name: String) -> String? {
        self.headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    /// Parses one response (Content-Length, chunked, or bodyless 1xx/204/304) from the front of `data`.
    static func parse(_ data: [UInt8], isHead: Bool) -> (RawResponse, Int)? {
        let crlf2: [UInt8] = [13, 10, 13, 10]
        guard let end = data.firstRange(of: crlf2) else { return nil }
        let headText = String(decoding: data[..<end.lowerBound], as: UTF8.self)
        var lines = headText.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { return nil }
        let headers: [(String, String)] = lines.compactMap { l in
            guard let c = l.firstIndex(of: ":") else { return nil }
            return (String(l[..<c]), String(l[l.index(after: c)...]).trimmingLeadingSpaces())
        }
        var r = RawResponse(status: status, headers: headers, body: "")
        var offset = end.upperBound
        if isHead || (100..<200).contains(status) || status == 204 || status == 304 {
            return (r, offset)
        }
        if let cl = r.header("content-length"), let n = Int(cl) {
            guard data.count - offset >= n else { return nil }
            r.bytes = Array(data[offset..<offset + n])
            r.body = String(decoding: r.bytes, as: UTF8.self)
            return (r, offset + n)
        }
        if r.header("transfer-encoding")?.lowercased() == "chunked" {
            var body: [UInt8] = []
            while true {
                guard let lineEnd = data[offset...].firstRange(of: [13, 10] as [UInt8]) else { return nil }
                let sizeText = String(decoding: data[offset..<lineEnd.lowerBound], as: UTF8.self)
                guard let size = Int(sizeText.split(separator: ";").first ?? "", radix: 16) else { return nil }
                offset = lineEnd.upperBound
                if size == 0 {
                    guard let trailerEnd = data[offset...].firstRange(of: [13, 10] as [UInt8]) else { return nil }
                    offset = trailerEnd.upperBound
                    r.body = String(decoding: body, as: UTF8.self)
                    r.bytes = body
                    return (r, offset)
                }
                guard data.count >= offset + size + 2 else { return nil }
                body.append(contentsOf: data[offset..<offset + size])
                offset += size + 2
            }
        }
        return nil
    }
}

public struct RawClientError: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { self.description = d }
    public init(description: String) { self.description = description }
}

extension String {
    fileprivate func trimmingLeadingSpaces() -> String {
        String(self.drop(while: { $0 == " " || $0 == "\t" }))
    }
}

/// Runs blocking work (a `RawHTTPClient` exchange) on a thread of its own and waits for it without holding one of
/// Swift concurrency's few threads: a test that blocks those can starve the async code it is waiting for (the
/// admin API runs on them).
public func offThePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = BlockingThread {
            continuation.resume(with: Result { try work() })
        }
        thread.start()
    }
}

/// A detached POSIX thread running one closure.
private final class BlockingThread: @unchecked Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }

    func start() {
        var tid = pthread_t()
        let box = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&tid, nil, { raw in
            let me = Unmanaged<BlockingThread>.fromOpaque(raw!).takeRetainedValue()
            me.body()
            return nil
        }, box)
        pthread_detach(tid)
    }
}
