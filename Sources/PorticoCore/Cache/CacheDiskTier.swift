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
    private let queue: DispatchQueue
    private let index: Mutex<Index>
    private let logger: Logger

    /// Bytes of writes waiting for the disk queue; beyond it a write is dropped (the response stays in memory
    /// only), so a slow disk cannot make memory grow without bound.
    static let maxPendingBytes = 64 << 20

    private struct Entry {
        var bytes: Int
        var tags: [String]
        var variants: Int
        var lastUse: UInt64
        /// Which write made it: a file operation that ends later changes the entry only if it is still its own.
        var generation: UInt64
    }

    private struct Index {
        var budget: Int
        var entries: [String: Entry] = [:]
        var bytes = 0
        var clock: UInt64 = 0
        var evicting = false
        /// Writes asked for and not yet done, by key: only the latest is written (one queued operation per key).
        var pending: [String: (variants: [CachedResponse], generation: UInt64, bytes: Int)] = [:]
        var pendingBytes = 0
        /// Reads in progress, by key: who waits for each (concurrent misses read a file once), and whether the key
        /// was removed meanwhile (then the read gives nothing, so a purge cannot be undone by a read in flight).
        var reads: [String: (waiters: [@Sendable ([CachedResponse]) -> Void], removed: Bool)] = [:]
        /// While the start-up scan runs: keys removed and tags purged meanwhile, which it must not index.
        var scanning = true
        var removedDuringScan: Set<String> = []
        var purgedDuringScan: Set<String> = []

        mutating func tick() -> UInt64 {
            self.clock &+= 1
            return self.clock
        }

        /// Forgets `key`: its entry, a pending write, and what a read in flight would give.
        mutating func remove(_ key: String) -> Entry? {
            if let p = self.pending.removeValue(forKey: key) { self.pendingBytes -= p.bytes }
            if self.reads[key] != nil { self.reads[key]!.removed = true }
            if self.scanning { self.removedDuringScan.insert(key) }
            guard let e = self.entries.removeValue(forKey: key) else { return nil }
            self.bytes -= e.bytes
            return e
        }

        /// Removes `key`'s entry only if `generation` made it (a later write's entry stays).
        mutating func remove(_ key: String, ifGeneration generation: UInt64) {
            guard self.entries[key]?.generation == generation else { return }
            _ = self.remove(key)
        }

        /// Starts an eviction if over budget and none runs.
        mutating func needsEviction() -> Bool {
            guard self.bytes > self.budget, !self.evicting else { return false }
            self.evicting = true
            return true
        }
    }

    /// Makes the directory (and its `tmp/`) if missing and starts indexing what it holds. Throws when the
    /// directory cannot be made or written; runs on the control plane (it does I/O).
    public convenience init(directory: String, maxBytes: Int, logger: Logger) throws {
        try self.init(directory: directory, maxBytes: maxBytes, logger: logger, queue: DispatchQueue(label: "portico.cache.disk"))
    }

    /// `queue`: where the file operations run (tests pass a suspended one to order operations around them).
    init(directory: String, maxBytes: Int, logger: Logger, queue: DispatchQueue) throws {
        self.queue = queue
        self.directory = Self.normalize(directory)
        self.index = Mutex(Index(budget: maxBytes))
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

    /// The byte budget; a reload may change it (the tier, its index and queue stay: one per directory).
    public var maxBytes: Int {
        get { self.index.withLock { $0.budget } }
        set {
            let evict = self.index.withLock { ix -> Bool in
                ix.budget = newValue
                return ix.needsEviction()
            }
            if evict { self.queue.async { self.evict() } }
        }
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
    /// Writes of one key not yet done are merged: only the latest reaches the disk.
    public func write(_ key: String, _ variants: [CachedResponse]) {
        guard !variants.isEmpty else {
            self.remove(key)
            return
        }
        let bytes = variants.reduce(0) { $0 + $1.cost }
        let (enqueue, dropped, evict) = self.index.withLock { ix -> (Bool, Bool, Bool) in
            let alreadyQueued = ix.pending[key] != nil
            if let p = ix.pending.removeValue(forKey: key) { ix.pendingBytes -= p.bytes }
            if let e = ix.entries.removeValue(forKey: key) { ix.bytes -= e.bytes }
            // The disk is behind: not written (the response stays in memory; the file, if any, is stale and goes).
            guard ix.pendingBytes + bytes <= Self.maxPendingBytes else { return (false, true, false) }
            let generation = ix.tick()
            ix.entries[key] = Entry(bytes: bytes, tags: Array(Set(variants.flatMap(\.tags))), variants: variants.count, lastUse: generation, generation: generation)
            ix.bytes += bytes
            ix.pending[key] = (variants, generation, bytes)
            ix.pendingBytes += bytes
            return (!alreadyQueued, false, ix.needsEviction())
        }
        if enqueue { self.queue.async { self.writePending(key) } }
        if dropped { self.queue.async { unlink(self.path(key)) } }
        if evict { self.queue.async { self.evict() } }
    }

    /// Removes the file of `key`; returns how many variants it held.
    @discardableResult
    public func remove(_ key: String) -> Int {
        let entry = self.index.withLock { $0.remove(key) }
        // Queued whether or not the key is indexed: the start-up scan may not have reached its file yet.
        self.queue.async { unlink(self.path(key)) }
        return entry?.variants ?? 0
    }

    /// Removes every file with a response tagged `tag`; returns how many variants they held.
    public func purge(tag: String) -> Int {
        let keys = self.index.withLock { ix -> [(String, Int)] in
            if ix.scanning { ix.purgedDuringScan.insert(tag) }
            let keys = ix.entries.filter { $0.value.tags.contains(tag) }.map { ($0.key, $0.value.variants) }
            for (key, _) in keys { _ = ix.remove(key) }
            return keys
        }
        guard !keys.isEmpty else { return 0 }
        self.queue.async { for (key, _) in keys { unlink(self.path(key)) } }
        return keys.reduce(0) { $0 + $1.1 }
    }

    /// Reads the variants of `key` (empty if the file is gone or damaged, or the key was removed meanwhile), on
    /// the disk queue; `done` is called there, under the index's lock, so a removal is either before it (and it
    /// gets nothing) or after it (and finds what `done` stored). Reads of one key in progress are shared.
    public func read(_ key: String, _ done: @escaping @Sendable ([CachedResponse]) -> Void) {
        let (first, generation) = self.index.withLock { ix -> (Bool, UInt64?) in
            if ix.reads[key] != nil {
                ix.reads[key]!.waiters.append(done)
                return (false, nil)
            }
            ix.reads[key] = ([done], false)
            return (true, ix.entries[key]?.generation)
        }
        guard first else { return }
        self.queue.async {
            var variants: [CachedResponse] = []
            if let file = self.readFile(self.path(key)) {
                if let decoded = CacheFile.decode(file), decoded.key == key {
                    variants = decoded.variants
                } else {
                    self.logger.warning("cache file damaged, removed", metadata: ["key": "\(key)"])
                    unlink(self.path(key))
                }
            }
            self.index.withLock { ix in
                if variants.isEmpty, let generation { ix.remove(key, ifGeneration: generation) }
                guard let read = ix.reads.removeValue(forKey: key) else { return }
                for w in read.waiters { w(read.removed ? [] : variants) }
            }
        }
    }

    /// Stored keys and the bytes their files hold.
    public var usage: (keys: Int, bytes: Int) {
        self.index.withLock { ($0.entries.count, $0.bytes) }
    }

    /// Returns once every operation asked for so far is done (the start-up scan included). Blocks: for tests.
    func sync() {
        self.queue.sync {}
    }

    /// Waits, without blocking a thread, for every operation asked for so far (a clean stop).
    public func flush() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in self.queue.async { done.resume() } }
    }

    // MARK: On the disk queue

    /// `DIR/ab/<sha256>`.
    private func path(_ key: String) -> String {
        let name = hexString(SHA256.hash(data: Array(key.utf8)))
        return "\(self.directory)/\(name.prefix(2))/\(name)"
    }

    /// Writes the latest pending variants of `key`, if any are still pending (a removal cancels them).
    private func writePending(_ key: String) {
        guard let (variants, generation, bytes) = self.index.withLock({ ix -> ([CachedResponse], UInt64, Int)? in
            guard let p = ix.pending.removeValue(forKey: key) else { return nil }
            ix.pendingBytes -= p.bytes
            return p
        }) else { return }
        let file = CacheFile.encode(key: key, variants)
        let final = self.path(key)
        let tmp = "\(self.directory)/tmp/\(final.suffix(64))"
        do {
            try Self.makeDirectory(String(final.dropLast(65)))
            let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw CacheDiskError("open \(tmp): errno \(errno)") }
            defer { close(fd) }
            try file.withUnsafeReadableBytes { raw in
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
            // Not fsynced (nginx does not either): after a power cut a file may be short, and is then read as
            // damaged, a miss, and removed.
            guard rename(tmp, final) == 0 else { throw CacheDiskError("rename to \(final): errno \(errno)") }
            let evict = self.index.withLock { ix -> Bool in
                // The budget counts what the file takes (the index counted an estimate until now).
                guard ix.entries[key]?.generation == generation else { return false }
                ix.bytes += file.readableBytes - bytes
                ix.entries[key]!.bytes = file.readableBytes
                return ix.needsEviction()
            }
            if evict { self.evict() }
        } catch {
            unlink(tmp)
            // Not on disk after all: memory may still have it, and the index must not promise it.
            self.index.withLock { $0.remove(key, ifGeneration: generation) }
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
    /// leaving alone keys written, removed or purged since the start. Leftovers in `tmp/` and files in the
    /// tier's subdirectories that are not its own are removed (the directory is Portico's).
    private func scan() {
        var found: [(key: String, entry: Entry, mtime: Int)] = []
        for name in Self.list(self.directory + "/tmp") { unlink("\(self.directory)/tmp/\(name)") }
        for sub in Self.list(self.directory) where sub.count == 2 && sub.allSatisfy(\.isHexDigit) {
            for name in Self.list("\(self.directory)/\(sub)") {
                let path = "\(self.directory)/\(sub)/\(name)"
                var st = stat()
                guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
                guard let header = self.readHeader(path, size: Int(st.st_size)), self.path(header.key) == path else {
                    unlink(path)
                    continue
                }
                let entry = Entry(bytes: Int(st.st_size), tags: header.tags, variants: header.variantCount, lastUse: 0, generation: 0)
                found.append((header.key, entry, Int(st.st_mtim.tv_sec)))
            }
        }
        found.sort { $0.mtime < $1.mtime }
        let (stale, evict) = self.index.withLock { ix -> ([String], Bool) in
            var stale: [String] = []
            for var f in found where ix.entries[f.key] == nil {
                if ix.removedDuringScan.contains(f.key) || f.entry.tags.contains(where: ix.purgedDuringScan.contains) {
                    stale.append(f.key)
                    continue
                }
                f.entry.lastUse = ix.tick()
                ix.entries[f.key] = f.entry
                ix.bytes += f.entry.bytes
            }
            ix.scanning = false
            ix.removedDuringScan = []
            ix.purgedDuringScan = []
            return (stale, ix.needsEviction())
        }
        for key in stale { unlink(self.path(key)) }
        if !found.isEmpty {
            self.logger.info("cache directory indexed", metadata: ["path": "\(self.directory)", "keys": "\(found.count - stale.count)"])
        }
        if evict { self.evict() }
    }

    /// A file's header, read with its prefix; nil when it is not a whole cache file header.
    private func readHeader(_ path: String, size: Int) -> CacheFile.Header? {
        guard let start = self.readFile(path, limit: min(size, 4096)), start.readableBytes >= CacheFile.prefixLength,
              let length = CacheFile.headerLength(start.getSlice(at: 0, length: CacheFile.prefixLength)!),
              CacheFile.prefixLength + length <= size
        else { return nil }
        let bytes = CacheFile.prefixLength + length <= start.readableBytes ? start : self.readFile(path, limit: CacheFile.prefixLength + length)
        guard let bytes, let header = bytes.getSlice(at: CacheFile.prefixLength, length: length) else { return nil }
        return CacheFile.decodeHeader(header)
    }

    /// Deletes the least recently used files until the tier is at 90 % of its budget (a batch, so eviction does
    /// not run for every write). The sort is done on a snapshot, outside the lock.
    private func evict() {
        let (snapshot, budget) = self.index.withLock { ($0.entries, $0.budget) }
        let target = budget / 10 * 9
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
                guard let e = ix.entries[key], e.lastUse == snapshot[key]?.lastUse, ix.pending[key] == nil else { return false }
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
