//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Crypto
import Dispatch
public import Logging
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The cache's second tier (`cache_storage.disk`): every response `CacheStore` stores is also written to a
/// directory, read back when memory no longer holds it, and kept across restarts, within a byte budget of its
/// own with least-recently-used eviction.
///
/// The index (primary key → size, tags, last use) is in memory, behind a `Mutex` held for a dictionary access
/// only, so an EventLoop asks "is it on disk?" without I/O. Every file operation runs on one serial
/// `DispatchQueue` — never on an EventLoop — in the order it was asked for, so a write followed by a removal of
/// the same key can never leave the file behind. At start the directory is scanned on that queue (headers only,
/// `CacheFile`); until a file is indexed its key is a miss, as in nginx's cache loader.
///
/// One file per primary key, all its variants in it (`CacheFile`), written to `tmp/` then renamed, so a crash
/// leaves a whole file or none. Files: `DIR/ab/<sha256 of the key>`, 256 subdirectories.
public final class CacheDiskTier: Sendable {
    public let directory: String
    public let maxBytes: Int
    private let queue = DispatchQueue(label: "portico.cache.disk")
    private let index = Mutex(Index())
    private let logger: Logger

    private struct Entry {
        var bytes: Int
        var tags: [String]
        var variants: Int
        var lastUse: UInt64
    }

    private struct Index {
        var entries: [String: Entry] = [:]
        var bytes = 0
        var clock: UInt64 = 0
        var evicting = false
        /// Reads in progress, by key, and who waits for each (concurrent misses read a file once).
        var reads: [String: [@Sendable ([CachedResponse]) -> Void]] = [:]

        mutating func tick() -> UInt64 {
            self.clock &+= 1
            return self.clock
        }

        mutating func remove(_ key: String) -> Entry? {
            guard let e = self.entries.removeValue(forKey: key) else { return nil }
            self.bytes -= e.bytes
            return e
        }
    }

    /// Makes the directory (and its `tmp/`) if missing and starts indexing what it holds. Throws when the
    /// directory cannot be made or written; runs on the control plane (it does I/O).
    public init(directory: String, maxBytes: Int, logger: Logger) throws {
        self.directory = Self.normalize(directory)
        self.maxBytes = maxBytes
        self.logger = logger
        try Self.makeDirectory(self.directory)
        try Self.makeDirectory(self.directory + "/tmp")
        guard access(self.directory, W_OK) == 0 else { throw CacheDiskError("\(self.directory) is not writable") }
        self.queue.async { self.scan() }
    }

    /// `path` without a trailing slash.
    public static func normalize(_ path: String) -> String {
        path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
    }

    /// Whether `key` is on disk; counts as a use.
    public func contains(_ key: String) -> Bool {
        self.index.withLock { ix in
            guard ix.entries[key] != nil else { return false }
            ix.entries[key]!.lastUse = ix.tick()
            return true
        }
    }

    /// Writes `variants` as the file of `key` (all of the key's variants: the file replaces the previous one).
    public func write(_ key: String, _ variants: [CachedResponse]) {
        guard !variants.isEmpty else {
            self.remove(key)
            return
        }
        let bytes = variants.reduce(0) { $0 + $1.cost }
        let evict = self.index.withLock { ix -> Bool in
            _ = ix.remove(key)
            ix.entries[key] = Entry(bytes: bytes, tags: Array(Set(variants.flatMap(\.tags))), variants: variants.count, lastUse: ix.tick())
            ix.bytes += bytes
            guard ix.bytes > self.maxBytes, !ix.evicting else { return false }
            ix.evicting = true
            return true
        }
        self.queue.async {
            self.writeFile(key, CacheFile.encode(key: key, variants))
            if evict { self.evict() }
        }
    }

    /// Removes the file of `key`; returns how many variants it held.
    @discardableResult
    public func remove(_ key: String) -> Int {
        guard let entry = self.index.withLock({ $0.remove(key) }) else { return 0 }
        self.queue.async { unlink(self.path(key)) }
        return entry.variants
    }

    /// Removes every file with a response tagged `tag`; returns how many variants they held.
    public func purge(tag: String) -> Int {
        let keys = self.index.withLock { ix -> [(String, Int)] in
            let keys = ix.entries.filter { $0.value.tags.contains(tag) }.map { ($0.key, $0.value.variants) }
            for (key, _) in keys { _ = ix.remove(key) }
            return keys
        }
        guard !keys.isEmpty else { return 0 }
        self.queue.async { for (key, _) in keys { unlink(self.path(key)) } }
        return keys.reduce(0) { $0 + $1.1 }
    }

    /// Reads the variants of `key` (empty if the file is gone or damaged), on the disk queue; `done` is called
    /// there. Reads of one key in progress are shared.
    public func read(_ key: String, _ done: @escaping @Sendable ([CachedResponse]) -> Void) {
        let first = self.index.withLock { ix -> Bool in
            if ix.reads[key] != nil {
                ix.reads[key]!.append(done)
                return false
            }
            ix.reads[key] = [done]
            return true
        }
        guard first else { return }
        self.queue.async {
            var variants: [CachedResponse] = []
            if let file = self.readFile(self.path(key)) {
                if let decoded = CacheFile.decode(file), decoded.key == key {
                    variants = decoded.variants
                } else {
                    self.logger.warning("cache file damaged, removed", metadata: ["key": "\(key)"])
                    self.index.withLock { _ = $0.remove(key) }
                    unlink(self.path(key))
                }
            } else {
                self.index.withLock { _ = $0.remove(key) }
            }
            let waiters = self.index.withLock { $0.reads.removeValue(forKey: key) } ?? []
            for w in waiters { w(variants) }
        }
    }

    /// Stored keys and the bytes their files hold.
    public var usage: (keys: Int, bytes: Int) {
        self.index.withLock { ($0.entries.count, $0.bytes) }
    }

    /// Runs `body` on the disk queue after every operation asked for so far (tests; a clean stop).
    public func sync<T: Sendable>(_ body: @Sendable () -> T) -> T {
        self.queue.sync(execute: body)
    }

    // MARK: On the disk queue

    /// `DIR/ab/<sha256>`.
    private func path(_ key: String) -> String {
        let name = hexString(SHA256.hash(data: Array(key.utf8)))
        return "\(self.directory)/\(name.prefix(2))/\(name)"
    }

    private func writeFile(_ key: String, _ bytes: ByteBuffer) {
        let final = self.path(key)
        let tmp = "\(self.directory)/tmp/\(final.suffix(64))"
        do {
            try Self.makeDirectory(String(final.dropLast(65)))
            let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw CacheDiskError("open \(tmp): errno \(errno)") }
            defer { close(fd) }
            try bytes.withUnsafeReadableBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw CacheDiskError("write \(tmp): errno \(errno)")
                    }
                    offset += n
                }
            }
            guard rename(tmp, final) == 0 else { throw CacheDiskError("rename to \(final): errno \(errno)") }
        } catch {
            unlink(tmp)
            // Not on disk after all: memory still has it, and the index must not promise it.
            self.index.withLock { _ = $0.remove(key) }
            self.logger.warning("cache file not written", metadata: ["error": "\(error)"])
        }
    }

    private func readFile(_ path: String, limit: Int? = nil) -> ByteBuffer? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        let size = min(Int(st.st_size), limit ?? Int.max)
        var buffer = ByteBufferAllocator().buffer(capacity: size)
        let read = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { raw in
            var offset = 0
            while offset < size {
                let n = Glibc.read(fd, raw.baseAddress! + offset, size - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                offset += n
            }
            return offset
        }
        return read == size ? buffer : nil
    }

    /// Indexes the files already in the directory, oldest first in the recency order (by modification time),
    /// leaving alone keys written since the start. Leftovers in `tmp/` are removed.
    private func scan() {
        var found: [(key: String, entry: Entry, mtime: Int)] = []
        for name in Self.list(self.directory + "/tmp") { unlink("\(self.directory)/tmp/\(name)") }
        for sub in Self.list(self.directory) where sub.count == 2 && sub.allSatisfy(\.isHexDigit) {
            for name in Self.list("\(self.directory)/\(sub)") {
                let path = "\(self.directory)/\(sub)/\(name)"
                var st = stat()
                guard stat(path, &st) == 0 else { continue }
                guard let prefix = self.readFile(path, limit: CacheFile.prefixLength), let length = CacheFile.headerLength(prefix),
                      let head = self.readFile(path, limit: CacheFile.prefixLength + length),
                      let header = CacheFile.decodeHeader(head.getSlice(at: CacheFile.prefixLength, length: length)!),
                      self.path(header.key) == path
                else {
                    unlink(path)
                    continue
                }
                let entry = Entry(bytes: Int(st.st_size), tags: header.tags, variants: header.variantCount, lastUse: 0)
                found.append((header.key, entry, Int(st.st_mtim.tv_sec)))
            }
        }
        found.sort { $0.mtime < $1.mtime }
        let evict = self.index.withLock { ix -> Bool in
            for var f in found where ix.entries[f.key] == nil {
                f.entry.lastUse = ix.tick()
                ix.entries[f.key] = f.entry
                ix.bytes += f.entry.bytes
            }
            guard ix.bytes > self.maxBytes, !ix.evicting else { return false }
            ix.evicting = true
            return true
        }
        if !found.isEmpty {
            self.logger.info("cache directory indexed", metadata: ["path": "\(self.directory)", "keys": "\(found.count)"])
        }
        if evict { self.evict() }
    }

    /// Deletes the least recently used files until the tier is at 90 % of its budget (a batch, so eviction does
    /// not run for every write). The sort is done on a snapshot, outside the lock.
    private func evict() {
        let snapshot = self.index.withLock { $0.entries }
        let target = self.maxBytes / 10 * 9
        var total = snapshot.values.reduce(0) { $0 + $1.bytes }
        var victims: [String] = []
        for (key, entry) in snapshot.sorted(by: { $0.value.lastUse < $1.value.lastUse }) {
            guard total > target else { break }
            total -= entry.bytes
            victims.append(key)
        }
        let removed = self.index.withLock { ix -> [String] in
            ix.evicting = false
            // A key used or rewritten since the snapshot stays.
            return victims.filter { key in
                guard let e = ix.entries[key], e.lastUse == snapshot[key]?.lastUse else { return false }
                _ = ix.remove(key)
                return true
            }
        }
        for key in removed { unlink(self.path(key)) }
    }

    private static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o700) != 0 && errno != EEXIST {
            throw CacheDiskError("cannot create \(path): \(String(cString: strerror(errno)))")
        }
    }

    private static func list(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

public struct CacheDiskError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
