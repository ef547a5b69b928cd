//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOHTTP1

/// Reading request cookies (RFC 6265 §5.4: `name=value` pairs separated by `; `, possibly over several Cookie
/// fields).
public enum Cookies {
    public static func value(named name: String, in headers: HTTPHeaders) -> String? {
        for field in headers[canonicalForm: "cookie"] {
            for pair in field.split(separator: ";") {
                let trimmed = pair.drop(while: { $0 == " " })
                guard let eq = trimmed.firstIndex(of: "=") else { continue }
                if trimmed[..<eq] == name[...] {
                    var value = trimmed[trimmed.index(after: eq)...]
                    if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 { value = value.dropFirst().dropLast() }
                    return String(value)
                }
            }
        }
        return nil
    }
}
