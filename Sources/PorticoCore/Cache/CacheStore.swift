//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore
import Synchronization

/// The in-memory cache: stored responses by primary key (each with its `Vary` variants), a byte budget with
/// least-recently-used eviction, tags for purging, and the per-key fills that collapse concurrent misses.
///
/// One per process, shared by every worker. It is split into shards, each behind its own `Mutex`, held only for
/// a dictionary lookup and a list splice (no I/O, no allocation beyond the entry itself), so workers rarely meet
/// on one; nginx's cache zone has one mutex for all. Bodies are never copied: a hit takes a reference to the
/// stored `ByteBuffer`.
///
/// With a disk tier (`CacheDiskTier`) every insert, removal and purge is applied to it too; a key memory no
/// longer holds is read back from it (`loadFromDisk`).
public final class CacheStore: Sendable {
    public let maxBytes: Int
    public let maxObjectBytes: Int
    public let disk: CacheDiskTier?
    private let shards: [ShardBox]

    /// Variants kept per primary key (a `Vary` on a field with many values cannot crowd out everything else).
    public static let maxVariants = 16

    public init(maxBytes: Int, maxObjectBytes: Int, disk: CacheDiskTier? = nil) {
        self.maxBytes = maxBytes
        self.disk = disk
        self.maxObjectBytes = min(maxObjectBytes, maxBytes)
        // Each shard's budget holds at least four of the largest objects.
        let count = max(1, min(16, maxBytes / max(1, 4 * self.maxObjectBytes)))
        self.shards = (0..<count).map { _ in ShardBox(budget: maxBytes / count) }
    }

    private func shard(_ key: String) -> ShardBox {
        self.shards[Int(UInt(bitPattern: key.hashValue) % UInt(self.shards.count))]
    }

    /// The stored variants of `key`, most recently stored first; counts as a use.
    public func lookup(_ key: String) -> [CachedResponse] {
        self.shard(key).mutex.withLock { $0.lookup(key) }
    }

    /// Stores `response` under `key`, replacing the variant with the same `Vary` values. Returns false when it
    /// is larger than `maxObjectBytes`.
    @discardableResult
    public func insert(_ key: String, _ response: CachedResponse) -> Bool {
        guard response.cost <= self.maxObjectBytes else { return false }
        let variants = self.shard(key).mutex.withLock { $0.insert(key, response) }
        self.disk?.write(key, variants)
        return true
    }

    /// Reads `key`'s variants back from the disk tier into memory, when memory has none and the disk has the key
    /// (nil otherwise). The read runs on the disk tier's queue; the future completes on `eventLoop` once they are
    /// in memory (or the file turned out gone).
    public func loadFromDisk(_ key: String, eventLoop: any EventLoop) -> EventLoopFuture<Void>? {
        guard let disk = self.disk, disk.contains(key) else { return nil }
        let promise = eventLoop.makePromise(of: Void.self)
        disk.read(key) { variants in
            // Under the disk index's lock (`CacheDiskTier.read`): a removal of the key is before or after this.
            self.shard(key).mutex.withLock { s in
                // Oldest first, so the most recently stored ends up first, as it was. A key stored meanwhile
                // (a request that went upstream) is newer than the file: kept.
                guard s.entries[key] == nil else { return }
                for v in variants.reversed() where v.cost <= self.maxObjectBytes { _ = s.insert(key, v) }
            }
            promise.succeed()
        }
        return promise.futureResult
    }

    /// Removes every variant of `key`; returns how many there were.
    @discardableResult
    public func remove(_ key: String) -> Int {
        // The disk first: a read of the key in flight then gives nothing, and one that finished already put its
        // variants in memory, where they are removed next.
        let d = self.disk?.remove(key) ?? 0
        return max(d, self.shard(key).mutex.withLock { $0.remove(key) })
    }

    /// Removes every response tagged `tag` (`Surrogate-Key`, `Cache-Tag`); returns how many.
    @discardableResult
    public func purge(tag: String) -> Int {
        // The disk first, as in `remove`. Its files hold all of a key's variants: those tagged go with the file,
        // the others are written again below.
        let d = self.disk?.purge(tag: tag) ?? 0
        var n = 0
        var rewritten: [(String, [CachedResponse])] = []
        for shard in self.shards {
            n += shard.mutex.withLock { s in
                let keys = s.entries.filter { $0.value.variants.contains { $0.tags.contains(tag) } }.map(\.key)
                var removed = 0
                for key in keys {
                    guard let node = s.entries[key] else { continue }
                    let kept = node.variants.filter { !$0.tags.contains(tag) }
                    removed += node.variants.count - kept.count
                    s.remove(key)
                    for v in kept.reversed() { _ = s.insert(key, v) }
                    if !kept.isEmpty { rewritten.append((key, kept)) }
                }
                return removed
            }
        }
        for (key, kept) in rewritten { self.disk?.write(key, kept) }
        return max(n, d)
    }

    /// Stored responses and the bytes they hold.
    public var usage: (responses: Int, bytes: Int) {
        var r = 0, b = 0
        for shard in self.shards {
            shard.mutex.withLock { s in
                r += s.entries.values.reduce(0) { $0 + $1.variants.count }
                b += s.bytes
            }
        }
        return (r, b)
    }

    // MARK: Collapsed misses

    public enum FillRole: Sendable {
        /// No request is fetching this key: this one does, and must call `finishFill` when it is done.
        case leader
        /// Another request is fetching it: `waiter` is told when its response streams in and when it is done.
        case waiting
        /// Another request is fetching it and its response is streaming in: this one may answer with it now (if
        /// it fits the request; otherwise it waits, and `waiter` is told when the fetch is done).
        case streaming(CacheFillStream)
    }

    /// What a collapsed request's waiter is told.
    public enum FillEvent: Sendable {
        /// The leader's response is storable and streaming in (`publishStream`).
        case streaming(CacheFillStream)
        /// The leader is done (stored, not storable, or failed): look again.
        case done
    }

    /// Joins the fetch of `key` in progress, or starts one. `waiter` is called (from the leader's thread) when
    /// the leader's response streams in and once the leader finished, whatever came of it.
    public func fillOrWait(_ key: String, waiter: @escaping @Sendable (FillEvent) -> Void) -> FillRole {
        self.shard(key).mutex.withLock { s in
            guard s.fills[key] != nil else {
                s.fills[key] = Shard.Fill()
                return .leader
            }
            s.fills[key]!.waiters.append(waiter)
            return s.fills[key]!.stream.map { .streaming($0) } ?? .waiting
        }
    }

    /// Starts a background refresh of `key` (RFC 5861 `stale-while-revalidate`) unless a fetch of it is already in
    /// progress; the refresh calls `finishFill` when done. Misses of the key meanwhile wait for it, as for any fetch.
    public func beginRefresh(_ key: String) -> Bool {
        self.shard(key).mutex.withLock { s in
            guard s.fills[key] == nil else { return false }
            s.fills[key] = Shard.Fill()
            return true
        }
    }

    /// The leader's response is storable and its body streams in: waiters may answer with it as it arrives
    /// instead of waiting for the end, and so may misses that come meanwhile.
    public func publishStream(_ key: String, _ stream: CacheFillStream) {
        let waiters = self.shard(key).mutex.withLock { s -> [@Sendable (FillEvent) -> Void] in
            guard s.fills[key] != nil else { return [] }
            s.fills[key]!.stream = stream
            return s.fills[key]!.waiters
        }
        for w in waiters { w(.streaming(stream)) }
    }

    /// The leader of `key`'s fetch is done (stored, not storable, or failed): its waiters go on.
    public func finishFill(_ key: String) {
        let waiters = self.shard(key).mutex.withLock { $0.fills.removeValue(forKey: key) }?.waiters ?? []
        for w in waiters { w(.done) }
    }
}

/// A response being stored while it streams in, for collapsed requests to answer with: its stored form without
/// the body (fields, freshness, `Vary` values) and the body as it arrives.
public struct CacheFillStream: Sendable {
    public let response: CachedResponse
    public let body: ResponseBodyStream

    public init(response: CachedResponse, body: ResponseBodyStream) {
        self.response = response
        self.body = body
    }
}

private final class ShardBox: Sendable {
    let mutex: Mutex<Shard>
    init(budget: Int) { self.mutex = Mutex(Shard(budget: budget)) }
}

/// One shard: a dictionary of entries threaded on a recency list (head: most recently used).
private struct Shard: ~Copyable {
    final class Node {
        let key: String
        var variants: [CachedResponse]
        var cost: Int
        /// Weak: the list's back links would otherwise make a cycle, and a replaced store would never be freed.
        weak var prev: Node?
        var next: Node?
        init(key: String, variants: [CachedResponse], cost: Int) {
            self.key = key
            self.variants = variants
            self.cost = cost
        }
    }

    let budget: Int
    var entries: [String: Node] = [:]
    var head: Node?
    var tail: Node?
    var bytes = 0
    var fills: [String: Fill] = [:]

    /// A fetch in progress: who waits for it, and its body once it streams.
    struct Fill {
        var waiters: [@Sendable (CacheStore.FillEvent) -> Void] = []
        var stream: CacheFillStream?
    }

    init(budget: Int) { self.budget = budget }

    mutating func lookup(_ key: String) -> [CachedResponse] {
        guard let node = self.entries[key] else { return [] }
        self.moveToFront(node)
        return node.variants
    }

    /// Returns the key's variants after the insert (what the disk tier writes).
    mutating func insert(_ key: String, _ response: CachedResponse) -> [CachedResponse] {
        let node: Node
        if let existing = self.entries[key] {
            node = existing
            node.variants.removeAll { $0.varyFields == response.varyFields && $0.varyValues == response.varyValues || $0.varyFields != response.varyFields }
            node.variants.insert(response, at: 0)
            if node.variants.count > CacheStore.maxVariants { node.variants.removeLast(node.variants.count - CacheStore.maxVariants) }
            self.bytes -= node.cost
            node.cost = node.variants.reduce(0) { $0 + $1.cost }
            self.bytes += node.cost
            self.moveToFront(node)
        } else {
            node = Node(key: key, variants: [response], cost: response.cost)
            self.entries[key] = node
            self.bytes += node.cost
            self.linkFront(node)
        }
        // Evict the least recently used until within budget (never the entry just stored), then, if one key's
        // variants alone are over it, that key's oldest variants.
        while self.bytes > self.budget, let victim = self.tail, victim !== node {
            self.remove(victim.key)
        }
        while self.bytes > self.budget, node.variants.count > 1 {
            let dropped = node.variants.removeLast()
            node.cost -= dropped.cost
            self.bytes -= dropped.cost
        }
        return node.variants
    }

    @discardableResult
    mutating func remove(_ key: String) -> Int {
        guard let node = self.entries.removeValue(forKey: key) else { return 0 }
        self.unlink(node)
        self.bytes -= node.cost
        return node.variants.count
    }

    private mutating func moveToFront(_ node: Node) {
        guard self.head !== node else { return }
        self.unlink(node)
        self.linkFront(node)
    }

    private mutating func linkFront(_ node: Node) {
        node.prev = nil
        node.next = self.head
        self.head?.prev = node
        self.head = node
        if self.tail == nil { self.tail = node }
    }

    private mutating func unlink(_ node: Node) {
        if let p = node.prev { p.next = node.next } else if self.head === node { self.head = node.next }
        if let n = node.next { n.prev = node.prev } else if self.tail === node { self.tail = node.prev }
        node.prev = nil
        node.next = nil
    }
}
