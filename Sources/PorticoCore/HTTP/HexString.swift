//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import Crypto

/// Lower-case hex of some bytes, written straight into the String's storage (its one allocation, none for up to
/// 7 bytes): request IDs, digest keys.
package func hexString(_ bytes: UnsafeRawBufferPointer) -> String {
    hexString(bytes, count: bytes.count)
}

/// Lower-case hex of a digest (a cache's key, an auth check's, a Redis script's SHA).
package func hexString<D: Digest>(_ digest: D) -> String {
    hexString(digest, count: D.byteCount)
}

private func hexString(_ bytes: some Sequence<UInt8>, count: Int) -> String {
    String(unsafeUninitializedCapacity: count * 2) { out in
        var i = 0
        for byte in bytes where i < count * 2 {
            out[i] = hexDigit(byte >> 4)
            out[i + 1] = hexDigit(byte & 0x0F)
            i += 2
        }
        return i
    }
}

@inline(__always)
private func hexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x57 + v }
