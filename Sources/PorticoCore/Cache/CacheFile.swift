//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore
import NIOHTTP1

/// The disk tier's file for one primary key: every stored variant of it, preceded by a header with what the
/// index needs (key, tags, size), so a restart rebuilds the index without reading bodies.
///
/// Layout, integers little-endian:
/// ```
/// "PCF1" u32:headerLength header variant*
/// header:  string:key u32:tagCount string* u32:variantCount
/// variant: u16:status i64:requestTime i64:responseTime i64:freshnessLifetime fields:headers fields:targeted
///          strings:varyFields strings:varyValues strings:tags u64:bodyLength body
/// string:  u32:length UTF-8   strings: u32:count string*   fields: u32:count (string:name string:value)*
/// ```
/// Pure: encoding and decoding only (`CacheDiskTier` does the I/O, off the EventLoops). A file that does not
/// decode (truncated, another version) is reported as nil and deleted by the tier.
public enum CacheFile {
    static let magic: UInt32 = 0x3146_4350  // "PCF1" read as a little-endian u32
    static let maxTime: Int64 = 1 << 40

    /// What the header says.
    public struct Header: Sendable, Equatable {
        public var key: String
        public var tags: [String]
        public var variantCount: Int
    }

    /// The whole file for `key`.
    public static func encode(key: String, _ variants: [CachedResponse]) -> ByteBuffer {
        var header = ByteBuffer()
        header.writeString32(key)
        let tags = Array(Set(variants.flatMap(\.tags))).sorted()
        header.writeStrings(tags)
        header.writeInteger(UInt32(variants.count), endianness: .little)

        var out = ByteBuffer()
        out.reserveCapacity(header.readableBytes + 8 + variants.reduce(0) { $0 + $1.cost })
        out.writeInteger(Self.magic, endianness: .little)
        out.writeInteger(UInt32(header.readableBytes), endianness: .little)
        out.writeImmutableBuffer(header)
        for v in variants {
            out.writeInteger(UInt16(clamping: v.status), endianness: .little)
            out.writeInteger(v.requestTime, endianness: .little)
            out.writeInteger(v.responseTime, endianness: .little)
            out.writeInteger(v.freshnessLifetime, endianness: .little)
            out.writeFields(v.headers)
            out.writeFields(v.targetedFields)
            out.writeStrings(v.varyFields)
            out.writeStrings(v.varyValues)
            out.writeStrings(v.tags)
            out.writeInteger(UInt64(v.body.readableBytes), endianness: .little)
            out.writeImmutableBuffer(v.body)
        }
        return out
    }

    /// Bytes to read from a file's start that hold its header's length.
    public static let prefixLength = 8

    /// The header's length from the file's first `prefixLength` bytes; nil if it is not a cache file.
    public static func headerLength(_ prefix: ByteBuffer) -> Int? {
        var b = prefix
        guard b.readInteger(endianness: .little, as: UInt32.self) == Self.magic,
              let n = b.readInteger(endianness: .little, as: UInt32.self), n < 1 << 20
        else { return nil }
        return Int(n)
    }

    /// The header, from the bytes that follow the prefix.
    public static func decodeHeader(_ bytes: ByteBuffer) -> Header? {
        var b = bytes
        guard let key = b.readString32(), let tags = b.readStrings(),
              let count = b.readInteger(endianness: .little, as: UInt32.self)
        else { return nil }
        return Header(key: key, tags: tags, variantCount: Int(count))
    }

    /// The whole file: its key and its variants, whose bodies are slices of `file` (no copy). The directives are
    /// derived again from the stored fields, as when the response was first stored.
    public static func decode(_ file: ByteBuffer) -> (key: String, variants: [CachedResponse])? {
        var b = file
        guard let prefix = b.readSlice(length: Self.prefixLength), let length = Self.headerLength(prefix),
              let headerBytes = b.readSlice(length: length), let header = Self.decodeHeader(headerBytes)
        else { return nil }
        var variants: [CachedResponse] = []
        for _ in 0..<header.variantCount {
            guard let status = b.readInteger(endianness: .little, as: UInt16.self),
                  let requestTime = b.readInteger(endianness: .little, as: Int64.self),
                  let responseTime = b.readInteger(endianness: .little, as: Int64.self),
                  let lifetime = b.readInteger(endianness: .little, as: Int64.self),
                  let headers = b.readFields(), let targeted = b.readFields(),
                  let varyFields = b.readStrings(), let varyValues = b.readStrings(), let tags = b.readStrings(),
                  let bodyLength = b.readInteger(endianness: .little, as: UInt64.self), bodyLength <= UInt64(b.readableBytes),
                  let body = b.readSlice(length: Int(bodyLength)),
                  // Times a cache could have written (seconds since 1970, before year 36812): ages stay in range.
                  [requestTime, responseTime, lifetime].allSatisfy({ (0...Self.maxTime).contains($0) })
            else { return nil }
            var all = headers
            all.add(contentsOf: targeted)
            variants.append(CachedResponse(
                status: Int(status), headers: headers, targetedFields: targeted, body: body, requestTime: requestTime,
                responseTime: responseTime, freshnessLifetime: lifetime, control: CachePolicy.effectiveControl(all).control,
                varyFields: varyFields, varyValues: varyValues, tags: tags))
        }
        guard b.readableBytes == 0 else { return nil }
        return (header.key, variants)
    }
}

extension ByteBuffer {
    fileprivate mutating func writeString32(_ s: String) {
        let at = self.writerIndex
        self.writeInteger(UInt32(0), endianness: .little)
        let n = self.writeString(s)
        self.setInteger(UInt32(n), at: at, endianness: .little)
    }

    fileprivate mutating func readString32() -> String? {
        guard let n = self.readInteger(endianness: .little, as: UInt32.self), Int(n) <= self.readableBytes else { return nil }
        return self.readString(length: Int(n))
    }

    fileprivate mutating func writeStrings(_ strings: [String]) {
        self.writeInteger(UInt32(strings.count), endianness: .little)
        for s in strings { self.writeString32(s) }
    }

    fileprivate mutating func readStrings() -> [String]? {
        guard let n = self.readInteger(endianness: .little, as: UInt32.self), Int(n) <= self.readableBytes / 4 else { return nil }
        var out: [String] = []
        out.reserveCapacity(Int(n))
        for _ in 0..<n {
            guard let s = self.readString32() else { return nil }
            out.append(s)
        }
        return out
    }

    fileprivate mutating func writeFields(_ fields: HTTPHeaders) {
        self.writeInteger(UInt32(fields.count), endianness: .little)
        for (name, value) in fields {
            self.writeString32(name)
            self.writeString32(value)
        }
    }

    fileprivate mutating func readFields() -> HTTPHeaders? {
        guard let n = self.readInteger(endianness: .little, as: UInt32.self), Int(n) <= self.readableBytes / 8 else { return nil }
        var fields = HTTPHeaders()
        fields.reserveCapacity(Int(n))
        for _ in 0..<n {
            guard let name = self.readString32(), let value = self.readString32() else { return nil }
            fields.add(name: name, value: value)
        }
        return fields
    }
}
