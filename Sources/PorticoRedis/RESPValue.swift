//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

package import NIOCore

/// A RESP2 value (the Redis serialization protocol, as Redis speaks it to clients that do not ask for RESP3).
package enum RESPValue: Sendable, Equatable {
    case simpleString(String)
    case error(String)
    case integer(Int64)
    case bulkString(ByteBuffer?)
    case array([RESPValue]?)

    /// A command: an array of bulk strings.
    package static func writeCommand(_ arguments: [String], into buffer: inout ByteBuffer) {
        buffer.writeString("*\(arguments.count)\r\n")
        for argument in arguments {
            buffer.writeString("$\(argument.utf8.count)\r\n")
            buffer.writeString(argument)
            buffer.writeString("\r\n")
        }
    }

    package enum ParseError: Error, Equatable {
        case malformed(String)
    }

    /// Reads one value from `buffer`; nil (and nothing consumed) when it is not all there yet.
    package static func read(from buffer: inout ByteBuffer, depth: Int = 0) throws -> RESPValue? {
        guard depth < 16 else { throw ParseError.malformed("arrays nested too deep") }
        var copy = buffer
        guard let value = try Self.readValue(&copy, depth: depth) else { return nil }
        buffer = copy
        return value
    }

    private static func readLine(_ buffer: inout ByteBuffer) throws -> String? {
        let view = buffer.readableBytesView
        guard let cr = view.firstIndex(of: UInt8(ascii: "\r")) else {
            if view.count > 64 * 1024 { throw ParseError.malformed("line too long") }
            return nil
        }
        guard cr + 1 < view.endIndex else { return nil }
        guard view[cr + 1] == UInt8(ascii: "\n") else { throw ParseError.malformed("CR without LF") }
        let line = buffer.readString(length: cr - view.startIndex)!
        buffer.moveReaderIndex(forwardBy: 2)
        return line
    }

    private static func readValue(_ buffer: inout ByteBuffer, depth: Int) throws -> RESPValue? {
        guard let type = buffer.readInteger(as: UInt8.self) else { return nil }
        guard let line = try Self.readLine(&buffer) else { return nil }
        switch type {
        case UInt8(ascii: "+"): return .simpleString(line)
        case UInt8(ascii: "-"): return .error(line)
        case UInt8(ascii: ":"):
            guard let n = Int64(line) else { throw ParseError.malformed("bad integer") }
            return .integer(n)
        case UInt8(ascii: "$"):
            guard let n = Int(line), n >= -1, n <= 512 * 1024 * 1024 else { throw ParseError.malformed("bad bulk length") }
            if n == -1 { return .bulkString(nil) }
            guard buffer.readableBytes >= n + 2, let bytes = buffer.readSlice(length: n) else { return nil }
            guard buffer.readInteger(as: UInt16.self) == 0x0D0A else { throw ParseError.malformed("bulk string without CRLF") }
            return .bulkString(bytes)
        case UInt8(ascii: "*"):
            guard let n = Int(line), n >= -1, n <= 1 << 20 else { throw ParseError.malformed("bad array length") }
            if n == -1 { return .array(nil) }
            var items: [RESPValue] = []
            items.reserveCapacity(n)
            for _ in 0..<n {
                guard depth + 1 < 16 else { throw ParseError.malformed("arrays nested too deep") }
                guard let item = try Self.readValue(&buffer, depth: depth + 1) else { return nil }
                items.append(item)
            }
            return .array(items)
        default:
            throw ParseError.malformed("unknown type byte \(type)")
        }
    }
}
