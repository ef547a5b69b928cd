//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
@testable import PorticoCore
import Dispatch
import Synchronization
import Testing

/// The disk tier's file format and index, on a real directory (no sockets).
@Suite struct CacheDiskTierTests {
    static func response(_ body: String, tags: [String] = [], vary: [String] = [], values: [String] = []) -> CachedResponse {
        let headers: HTTPHeaders = ["Content-Type": "text/plain", "Cache-Control": "max-age=60", "ETag": "\"\(body.count)\""]
        let targeted: HTTPHeaders = ["CDN-Cache-Control": "max-age=30"]
        var all = headers
        all.add(contentsOf: targeted)
        // The targeted field governs (RFC 9213): what decoding must derive again.
        return CachedResponse(
            status: 200, headers: headers, targetedFields: targeted, body: ByteBuffer(string: body),
            requestTime: 1_000, responseTime: 1_001, freshnessLifetime: 30, control: CachePolicy.effectiveControl(all).control,
            varyFields: vary, varyValues: values, tags: tags)
    }

    static func tempDirectory() -> String {
        let path = NSTemporaryDirectory() + "portico-disk-\(UUID().uuidString)"
        return path
    }

    static let logger = Logger(label: "test")

    @Test func fileRoundTrip() throws {
        let a = Self.response("hello", tags: ["t1", "t2"], vary: ["accept-language"], values: ["de"])
        let b = Self.response("bonjour", tags: ["t2"], vary: ["accept-language"], values: ["fr"])
        let file = CacheFile.encode(key: "https://x/y", [a, b])
        let decoded = try #require(CacheFile.decode(file))
        #expect(decoded.key == "https://x/y")
        #expect(decoded.variants.count == 2)
        for (d, o) in zip(decoded.variants, [a, b]) {
            #expect(d.status == o.status && d.body == o.body && d.headers == o.headers && d.targetedFields == o.targetedFields)
            #expect(d.requestTime == o.requestTime && d.responseTime == o.responseTime && d.freshnessLifetime == o.freshnessLifetime)
            #expect(d.varyFields == o.varyFields && d.varyValues == o.varyValues && d.tags == o.tags && d.etag == o.etag)
            #expect(d.control == o.control)
        }
        // Truncated anywhere, or with a byte more: not a file.
        for cut in [1, 9, file.readableBytes / 2, file.readableBytes - 1] {
            #expect(CacheFile.decode(file.getSlice(at: 0, length: cut)!) == nil, "cut at \(cut)")
        }
        var longer = file
        longer.writeString("x")
        #expect(CacheFile.decode(longer) == nil)
    }

    @Test func writtenFilesAreIndexedAgainByANewTier() throws {
        let dir = Self.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try CacheDiskTier(directory: dir, maxBytes: 1 << 20, logger: Self.logger)
        first.write("k1", [Self.response("one", tags: ["red"])])
        first.write("k2", [Self.response("two")])
        first.sync()
        // Debris a crash could leave: a half-written temporary file and a file that is not Portico's.
        FileManager.default.createFile(atPath: dir + "/tmp/partial", contents: Data("x".utf8))
        try FileManager.default.createDirectory(atPath: dir + "/ab", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dir + "/ab/junk", contents: Data("not a cache file".utf8))

        let second = try CacheDiskTier(directory: dir, maxBytes: 1 << 20, logger: Self.logger)
        second.sync()
        #expect(second.usage.keys == 2)
        #expect(second.contains("k1") && second.contains("k2") && !second.contains("k3"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/tmp/partial"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/ab/junk"))
        let read = Self.read(second, "k1")
        #expect(read.map { String(buffer: $0.body) } == ["one"])
        #expect(second.purge(tag: "red") == 1)
        #expect(!second.contains("k1") && Self.read(second, "k1").isEmpty)
        #expect(second.remove("k2") == 1)
        second.sync()
        let third = try CacheDiskTier(directory: dir, maxBytes: 1 << 20, logger: Self.logger)
        third.sync()
        #expect(third.usage.keys == 0)
    }

    @Test func leastRecentlyUsedFilesGoBeyondTheBudget() throws {
        let dir = Self.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let body = String(repeating: "x", count: 10_000)
        let tier = try CacheDiskTier(directory: dir, maxBytes: 100_000, logger: Self.logger)
        for i in 0..<9 { tier.write("k\(i)", [Self.response(body)]) }
        tier.sync()
        _ = tier.contains("k0")  // used: now the most recent
        for i in 9..<12 { tier.write("k\(i)", [Self.response(body)]) }
        tier.sync()
        #expect(tier.usage.bytes <= 100_000)
        #expect(tier.contains("k0") && tier.contains("k11"))
        #expect(!tier.contains("k1"))
        // What the index dropped is gone from the directory too.
        let files = try FileManager.default.subpathsOfDirectory(atPath: dir).filter { $0.count > 60 && !$0.hasPrefix("tmp") }
        #expect(files.count == tier.usage.keys)
    }

    @Test func aDamagedFileIsAMissAndIsRemoved() throws {
        let dir = Self.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tier = try CacheDiskTier(directory: dir, maxBytes: 1 << 20, logger: Self.logger)
        tier.write("k", [Self.response("body")])
        tier.sync()
        let files = try FileManager.default.subpathsOfDirectory(atPath: dir).filter { $0.count > 60 && !$0.hasPrefix("tmp") }
        let path = dir + "/" + files[0]
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count - 3).write(to: URL(fileURLWithPath: path))
        #expect(Self.read(tier, "k").isEmpty)
        #expect(!tier.contains("k") && !FileManager.default.fileExists(atPath: path))
    }

    @Test func storeReadsBackWhatMemoryEvicted() throws {
        let dir = Self.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let tier = try CacheDiskTier(directory: dir, maxBytes: 8 << 20, logger: Self.logger)
        let store = CacheStore(maxBytes: 1 << 20, maxObjectBytes: 300_000, disk: tier)
        let body = String(repeating: "y", count: 200_000)
        for i in 0..<8 { store.insert("k\(i)", Self.response(body + "\(i)")) }
        #expect(store.lookup("k0").isEmpty)
        #expect(store.loadFromDisk("nothing", eventLoop: group.next()) == nil)
        let load = try #require(store.loadFromDisk("k0", eventLoop: group.next()))
        try load.wait()
        #expect(store.lookup("k0").map { String(buffer: $0.body) } == [body + "0"])
    }

    /// A removal or purge while the start-up scan has not reached a file yet, or while a read of it is queued,
    /// is not undone by the scan or the read (the queue is held so the order is certain).
    @Test func removalsWinOverScanAndReadsInFlight() throws {
        let dir = Self.tempDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try CacheDiskTier(directory: dir, maxBytes: 1 << 20, logger: Self.logger)
        first.write("removed", [Self.response("a")])
        first.write("purged", [Self.response("b", tags: ["blue"])])
        first.write("kept", [Self.response("c")])
        first.sync()

        let queue = DispatchQueue(label: "test")
        queue.suspend()
        let second = try CacheDiskTier(directory: dir, maxBytes: 1 << 20, logger: Self.logger, queue: queue)
        #expect(second.remove("removed") == 0)  // not indexed yet
        #expect(second.purge(tag: "blue") == 0)
        queue.resume()
        second.sync()
        #expect(second.contains("kept") && !second.contains("removed") && !second.contains("purged"))
        let files = try FileManager.default.subpathsOfDirectory(atPath: dir).filter { $0.count > 60 && !$0.hasPrefix("tmp") }
        #expect(files.count == 1)

        queue.suspend()
        let box = Mutex<[CachedResponse]?>(nil)
        second.read("kept") { variants in box.withLock { $0 = variants } }
        #expect(second.remove("kept") == 1)
        queue.resume()
        second.sync()
        #expect(box.withLock { $0 }?.isEmpty == true)
    }

    /// `read`'s answer, waited for.
    static func read(_ tier: CacheDiskTier, _ key: String) -> [CachedResponse] {
        let box = Mutex<[CachedResponse]>([])
        tier.read(key) { variants in box.withLock { $0 = variants } }
        tier.sync()
        return box.withLock { $0 }
    }
}
