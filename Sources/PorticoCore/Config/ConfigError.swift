//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// One problem found in a configuration document.
///
/// Messages are lowercase with no trailing punctuation (Caddy, NIO style). `path` is the key path in the
/// document (`routes[3].cluster`); `file`, `line` and `column` say where it is when the source is known.
public struct ConfigError: Error, Sendable, Hashable, CustomStringConvertible {
    public var file: String?
    public var line: Int?
    public var column: Int?
    public var path: String
    public var message: String

    public init(file: String? = nil, line: Int? = nil, column: Int? = nil, path: String, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.path = path
        self.message = message
    }

    /// `file:line:column: path: message`, the format compilers and `nginx -t` users expect.
    public var description: String {
        var location = self.file ?? "<config>"
        if let line = self.line {
            location += ":\(line)"
            if let column = self.column { location += ":\(column)" }
        }
        let path = self.path.isEmpty ? "(root)" : self.path
        return "\(location): \(path): \(self.message)"
    }
}

/// Every error found in one pass over a document: decoding and validation never stop at the first.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    public var all: [ConfigError]

    public init(_ all: [ConfigError]) { self.all = all }

    public var description: String { self.all.map(\.description).joined(separator: "\n") }
}
