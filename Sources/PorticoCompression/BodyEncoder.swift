//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import CBrotli
import CZlib
import CZstd
public import NIOCore
public import PorticoCore

/// A streaming encoder for one response body: gzip and deflate through zlib, brotli and zstd through Debian's C
/// libraries. Each part is compressed as it comes (never the whole body held), a `flush` gives out everything
/// fed so far in a form the client can decode at once, `finish` ends the stream.
///
/// One per compressed response, used only on that response's EventLoop (hence `@unchecked Sendable`: it lives in
/// the request's `RequestContext`, which never leaves that loop). Its C state is freed on `deinit`.
public final class BodyEncoder: @unchecked Sendable {
    public enum Step: Sendable {
        /// Compress; the encoder may keep what it has not written yet.
        case process
        /// Write out everything fed so far, so the client can decode it now (zlib `Z_SYNC_FLUSH`, brotli
        /// `FLUSH`, zstd `ZSTD_e_flush`).
        case flush
        /// End the stream (trailer and checksum).
        case finish
    }

    private enum Backend {
        case zlib(UnsafeMutablePointer<z_stream>)
        case brotli(OpaquePointer)
        case zstd(OpaquePointer)
    }

    private let backend: Backend
    public let coding: ContentCoding
    private var finished = false

    /// `sizeHint`: the body's length when known; small bodies get a smaller window (less memory to set up, as
    /// nginx's `gzip_window` sizing).
    public init?(coding: ContentCoding, level: Int, sizeHint: Int? = nil) {
        self.coding = coding
        switch coding {
        case .gzip, .deflate:
            var windowBits: Int32 = 15
            var memLevel: Int32 = 8
            if let size = sizeHint {
                while windowBits > 9 && size < (1 << (windowBits - 1)) {
                    windowBits -= 1
                    if memLevel > 1 { memLevel -= 1 }
                }
            }
            let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
            stream.initialize(to: z_stream())
            // +16: a gzip wrapper (RFC 1952) instead of zlib's (RFC 1950).
            let bits = coding == .gzip ? windowBits + 16 : windowBits
            guard portico_deflateInit2(stream, Int32(level), bits, memLevel) == Z_OK else {
                stream.deallocate()
                return nil
            }
            self.backend = .zlib(stream)
        case .br:
            guard let state = BrotliEncoderCreateInstance(nil, nil, nil) else { return nil }
            BrotliEncoderSetParameter(state, BROTLI_PARAM_QUALITY, UInt32(level))
            var lgwin: UInt32 = 22
            if let size = sizeHint {
                while lgwin > 16 && size < (1 << (lgwin - 1)) { lgwin -= 1 }
                BrotliEncoderSetParameter(state, BROTLI_PARAM_SIZE_HINT, UInt32(clamping: size))
            }
            BrotliEncoderSetParameter(state, BROTLI_PARAM_LGWIN, lgwin)
            self.backend = .brotli(state)
        case .zstd:
            guard let cctx = ZSTD_createCCtx() else { return nil }
            ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, Int32(level))
            self.backend = .zstd(cctx)
        }
    }

    deinit {
        switch self.backend {
        case .zlib(let stream):
            deflateEnd(stream)
            stream.deinitialize(count: 1)
            stream.deallocate()
        case .brotli(let state):
            BrotliEncoderDestroyInstance(state)
        case .zstd(let cctx):
            ZSTD_freeCCtx(cctx)
        }
    }

    /// Compresses `input` and returns what the encoder gives out (often nothing for `.process` on small parts).
    /// After `.finish` it returns nothing.
    public func encode(_ input: ByteBuffer, _ step: Step) -> ByteBuffer {
        guard !self.finished else { return ByteBuffer() }
        if step == .finish { self.finished = true }
        var output = ByteBuffer()
        input.withUnsafeReadableBytes { inBytes in
            switch self.backend {
            case .zlib(let stream): Self.deflate(stream, inBytes, step, into: &output)
            case .brotli(let state): Self.brotli(state, inBytes, step, into: &output)
            case .zstd(let cctx): Self.zstd(cctx, inBytes, step, into: &output)
            }
        }
        return output
    }

    /// Room asked for on each round: about what the input could compress to, at least a page.
    private static func room(for input: Int) -> Int { max(1024, input / 2) }

    private static func deflate(_ stream: UnsafeMutablePointer<z_stream>, _ input: UnsafeRawBufferPointer, _ step: Step, into output: inout ByteBuffer) {
        stream.pointee.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
        stream.pointee.avail_in = UInt32(input.count)
        let flush: Int32
        switch step {
        case .process: flush = Z_NO_FLUSH
        case .flush: flush = Z_SYNC_FLUSH
        case .finish: flush = Z_FINISH
        }
        var done = false
        while !done {
            output.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.room(for: input.count)) { out in
                stream.pointee.next_out = out.bindMemory(to: Bytef.self).baseAddress
                stream.pointee.avail_out = UInt32(out.count)
                let rc = CZlib.deflate(stream, flush)
                let written = out.count - Int(stream.pointee.avail_out)
                // More output may be waiting while the buffer was filled; otherwise the step is complete (all input
                // taken; for a finish, the stream ended).
                done = rc == Z_STREAM_END || rc == Z_BUF_ERROR || (stream.pointee.avail_out != 0 && flush != Z_FINISH) || rc < 0
                return written
            }
        }
        stream.pointee.next_in = nil
        stream.pointee.avail_in = 0
    }

    private static func brotli(_ state: OpaquePointer, _ input: UnsafeRawBufferPointer, _ step: Step, into output: inout ByteBuffer) {
        var nextIn = input.bindMemory(to: UInt8.self).baseAddress
        var availIn = input.count
        let op: BrotliEncoderOperation
        switch step {
        case .process: op = BROTLI_OPERATION_PROCESS
        case .flush: op = BROTLI_OPERATION_FLUSH
        case .finish: op = BROTLI_OPERATION_FINISH
        }
        var done = false
        while !done {
            output.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.room(for: input.count)) { out in
                var nextOut: UnsafeMutablePointer<UInt8>? = out.bindMemory(to: UInt8.self).baseAddress
                var availOut = out.count
                let ok = BrotliEncoderCompressStream(state, op, &availIn, &nextIn, &availOut, &nextOut, nil)
                let more = BrotliEncoderHasMoreOutput(state) != 0
                switch step {
                case .process, .flush: done = ok == 0 || (availIn == 0 && !more)
                case .finish: done = ok == 0 || BrotliEncoderIsFinished(state) != 0
                }
                return out.count - availOut
            }
        }
    }

    private static func zstd(_ cctx: OpaquePointer, _ input: UnsafeRawBufferPointer, _ step: Step, into output: inout ByteBuffer) {
        var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: 0)
        let directive: ZSTD_EndDirective
        switch step {
        case .process: directive = ZSTD_e_continue
        case .flush: directive = ZSTD_e_flush
        case .finish: directive = ZSTD_e_end
        }
        var done = false
        while !done {
            output.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.room(for: input.count)) { out in
                var outBuffer = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
                let remaining = ZSTD_compressStream2(cctx, &outBuffer, &inBuffer, directive)
                if ZSTD_isError(remaining) != 0 {
                    done = true
                } else if directive == ZSTD_e_continue {
                    done = inBuffer.pos == inBuffer.size
                } else {
                    done = remaining == 0
                }
                return outBuffer.pos
            }
        }
    }
}
