//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// A route's `compression`: responses are compressed on the way to clients that accept it. `compression: {}`
/// turns it on with the defaults.
public struct CompressionConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// The codings Portico may use, in the order it prefers them when a client accepts several with the same
    /// weight. Default `[zstd, br, gzip, deflate]`.
    public var encodings: [ContentCoding]?
    /// Responses whose `Content-Length` is below this go as they are (compressing them gains nothing). Responses
    /// of unknown length are compressed. Default `512`.
    public var minLength: ByteSize?
    /// Media types to compress: exact (`application/json`), a whole type (`text/*`) or a structured-syntax suffix
    /// (`application/*+json`). Compared without case and parameters. Default: text, JSON, JavaScript, XML, SVG,
    /// WebAssembly and uncompressed font types (`CompressionPolicy.defaultTypes`).
    public var types: [String]?
    /// Compression levels. Defaults: gzip and deflate 6 (nginx's `gzip_comp_level 6`), br 4, zstd 3.
    public var levels: CompressionLevelsConfig?

    public init(encodings: [ContentCoding]? = nil, minLength: ByteSize? = nil, types: [String]? = nil, levels: CompressionLevelsConfig? = nil) {
        self.encodings = encodings
        self.minLength = minLength
        self.types = types
        self.levels = levels
    }

    public static var configPlaceholder: CompressionConfig { .init() }
}

/// Levels per coding: higher is smaller and slower.
public struct CompressionLevelsConfig: Codable, Sendable, Hashable, ConfigPlaceholder {
    /// gzip and deflate (zlib): 1 to 9.
    public var gzip: Int?
    /// Brotli quality: 0 to 11. Above 5 costs far more CPU than it saves bytes on dynamic responses.
    public var br: Int?
    /// zstd: 1 to 19.
    public var zstd: Int?

    public init(gzip: Int? = nil, br: Int? = nil, zstd: Int? = nil) {
        self.gzip = gzip
        self.br = br
        self.zstd = zstd
    }

    public static var configPlaceholder: CompressionLevelsConfig { .init() }
}

/// A content coding Portico can produce (RFC 9110 §8.4.1; `br` RFC 7932, `zstd` RFC 8878).
public enum ContentCoding: String, ConfigEnum, CaseIterable {
    case zstd
    case br
    case gzip
    /// The zlib format (RFC 1950), which is what `deflate` means in HTTP (RFC 9110 §8.4.1.2).
    case deflate
}
