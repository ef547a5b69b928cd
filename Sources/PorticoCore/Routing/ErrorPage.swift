//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore

/// A page Portico answers with instead of its plain-text error (`error_pages`), loaded when the config is
/// compiled. Its media type comes from the file's extension.
public struct ErrorPage: Sendable {
    public let body: ByteBuffer
    public let contentType: String

    /// Status code → page, for the files `files` holds (read by the control plane; the engine reads no file).
    static func compile(_ pages: [String: String]?, files: [String: [UInt8]]) -> [Int: ErrorPage] {
        var out: [Int: ErrorPage] = [:]
        for (code, path) in pages ?? [:] {
            guard let status = Int(code), let bytes = files[path] else { continue }
            out[status] = ErrorPage(body: ByteBuffer(bytes: bytes), contentType: Self.contentType(path))
        }
        return out
    }

    static func contentType(_ path: String) -> String {
        switch path.split(separator: ".").last?.lowercased() ?? "" {
        case "html", "htm": return "text/html; charset=utf-8"
        case "json": return "application/json"
        case "xml": return "application/xml"
        default: return "text/plain; charset=utf-8"
        }
    }
}
