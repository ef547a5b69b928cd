//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOHTTP1

extension HTTPHeaders {
    /// The value of the request cookie `name` (RFC 6265 §5.4: `Cookie: a=1; b=2`), the first one sent; nil when
    /// absent. Compares in place: no string is made per cookie.
    package func cookie(_ name: String) -> Substring? {
        for value in self["cookie"] {
            for pair in value.split(separator: ";") {
                let p = pair.trimmingOWS()
                guard p.utf8.count > name.utf8.count, p.utf8.starts(with: name.utf8) else { continue }
                let rest = p.utf8.dropFirst(name.utf8.count)
                if rest.first == UInt8(ascii: "=") { return Substring(rest.dropFirst()) }
            }
        }
        return nil
    }
}
