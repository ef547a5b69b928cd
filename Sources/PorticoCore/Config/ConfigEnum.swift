//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// A config value chosen from a fixed list of words (`balancer: round_robin`). Decoding names the allowed words
/// when the value is not one of them.
public protocol ConfigEnum: Codable, CaseIterable, RawRepresentable, ConfigPlaceholder, Sendable, Hashable
where RawValue == String {}

extension ConfigEnum {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let word = try c.decode(String.self)
        guard let value = Self(rawValue: word) else {
            let allowed = Self.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "unknown value \"\(word)\" (expected one of \(allowed))")
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(self.rawValue)
    }

    public static var configPlaceholder: Self { Self.allCases.first! }
}
