//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import CBrotli
import CZlib
import CZstd

/// Decodes a compressed body as a client would, with the reference C libraries, part by part: what a part
/// decodes to is available at once (to show a flushed stream is readable before it ends).
final class ContentDecoder {
    private enum State {
        case zlib(UnsafeMutablePointer<z_stream>)
        case brotli(OpaquePointer)
        case zstd(OpaquePointer)
    }
    private let state: State
    private(set) var failed = false
    /// The stream's end was decoded (zlib and brotli say so; zstd frames end when their last block does).
    private(set) var ended = false

    init(coding: String) {
        switch coding {
        case "gzip", "deflate":
            let s = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            s.initialize(to: z_stream())
            // 15 + 32: zlib or gzip, whichever header the stream has.
            _ = portico_inflateInit2(s, coding == "gzip" ? 15 + 16 : 15)
            self.state = .zlib(s)
        case "br":
            self.state = .brotli(BrotliDecoderCreateInstance(nil, nil, nil)!)
        default:
            self.state = .zstd(ZSTD_createDCtx()!)
        }
    }

    deinit {
        switch self.state {
        case .zlib(let s):
            inflateEnd(s)
            s.deallocate()
        case .brotli(let b): BrotliDecoderDestroyInstance(b)
        case .zstd(let z): ZSTD_freeDCtx(z)
        }
    }

    /// Everything `part` decodes to, with what earlier parts left pending.
    func feed(_ part: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        part.withUnsafeBufferPointer { input in
            switch self.state {
            case .zlib(let s):
                s.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
                s.pointee.avail_in = UInt32(input.count)
                repeat {
                    let (rc, n) = buffer.withUnsafeMutableBufferPointer { b -> (Int32, Int) in
                        s.pointee.next_out = b.baseAddress
                        s.pointee.avail_out = UInt32(b.count)
                        let rc = inflate(s, Z_SYNC_FLUSH)
                        return (rc, b.count - Int(s.pointee.avail_out))
                    }
                    out += buffer[..<n]
                    if rc == Z_STREAM_END { self.ended = true; break }
                    if rc != Z_OK && rc != Z_BUF_ERROR { self.failed = true; break }
                    if rc == Z_BUF_ERROR || (s.pointee.avail_in == 0 && s.pointee.avail_out != 0) { break }
                } while true
            case .brotli(let b):
                var nextIn = input.baseAddress
                var availIn = input.count
                while true {
                    let (rc, n) = buffer.withUnsafeMutableBufferPointer { buf -> (BrotliDecoderResult, Int) in
                        var nextOut = buf.baseAddress
                        var availOut = buf.count
                        let rc = BrotliDecoderDecompressStream(b, &availIn, &nextIn, &availOut, &nextOut, nil)
                        return (rc, buf.count - availOut)
                    }
                    out += buffer[..<n]
                    if rc == BROTLI_DECODER_RESULT_SUCCESS { self.ended = true; break }
                    if rc == BROTLI_DECODER_RESULT_ERROR { self.failed = true; break }
                    if rc == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT { break }
                }
            case .zstd(let z):
                var inBuf = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
                while true {
                    let (rc, n) = buffer.withUnsafeMutableBufferPointer { buf -> (Int, Int) in
                        var outBuf = ZSTD_outBuffer(dst: buf.baseAddress, size: buf.count, pos: 0)
                        let rc = ZSTD_decompressStream(z, &outBuf, &inBuf)
                        return (rc, outBuf.pos)
                    }
                    out += buffer[..<n]
                    if ZSTD_isError(rc) != 0 { self.failed = true; break }
                    if rc == 0 { self.ended = true }
                    if inBuf.pos == inBuf.size && n < buffer.count { break }
                }
            }
        }
        return out
    }

    /// A whole body, or nil when it does not decode or does not end.
    static func decode(_ body: [UInt8], coding: String) -> String? {
        let d = ContentDecoder(coding: coding)
        let out = d.feed(body)
        guard !d.failed, d.ended else { return nil }
        return String(decoding: out, as: UTF8.self)
    }
}
