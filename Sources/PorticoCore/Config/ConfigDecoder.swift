//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Yams

/// Decodes a YAML (or JSON, which YAML 1.2 contains) document into the `Codable` config model, strictly and
/// completely:
///
/// - keys are written in snake_case and mapped to the model's camelCase properties;
/// - a key the model does not know is an error (Caddy's `StrictUnmarshalJSON`), with a suggestion when a known key
///   is close;
/// - decoding does not stop at the first error: a value that fails is recorded with its key path and source
///   position and replaced by a placeholder, so one run reports every problem (`nginx -t` reports one);
/// - every node's position is kept, so `ConfigValidator`'s errors can be placed on a line too.
///
/// Runs wherever config is loaded (the command line, `ConfigService`); it may allocate freely and never runs on
/// an EventLoop's hot path.
public struct ConfigDecoder {
    public init() {}

    /// The decoded value, or every error found. `file` names the source in error messages.
    public func decode<T: Decodable>(_ type: T.Type, from text: String, file: String?) -> Result<DecodedConfig<T>, ConfigErrors> {
        let partial = self.decodePartially(type, from: text, file: file)
        if let value = partial.value, partial.errors.isEmpty {
            return .success(DecodedConfig(value: value, positions: partial.positions))
        }
        return .failure(ConfigErrors(partial.errors))
    }

    /// Decodes as much as possible: the value with placeholders where values were wrong (nil when the
    /// document could not be parsed at all), and every error. Lets validation run on the rest of the document,
    /// so one run reports both kinds of error.
    public func decodePartially<T: Decodable>(_ type: T.Type, from text: String, file: String?) -> (value: T?, positions: ConfigPositions, errors: [ConfigError]) {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                return (nil, ConfigPositions(file: file), [ConfigError(file: file, line: 1, column: 1, path: "", message: "the document is empty")])
            }
            root = node
        } catch let error as YamlError {
            return (nil, ConfigPositions(file: file), [Self.syntaxError(error, file: file)])
        } catch {
            return (nil, ConfigPositions(file: file), [ConfigError(file: file, path: "", message: "cannot parse: \(error)")])
        }
        let context = DecodingContext(file: file)
        let value = try? context.decodeValue(T.self, node: root, path: [])
        return (value, ConfigPositions(file: file, marks: context.marks), context.errors.sorted(by: ConfigError.sourceOrder))
    }

    private static func syntaxError(_ error: YamlError, file: String?) -> ConfigError {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
            let what = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
            return ConfigError(file: file, line: mark.line, column: mark.column, path: "", message: "yaml syntax error: \(what)")
        case .composer(let context, let problem, let mark, _):
            let what = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
            return ConfigError(file: file, line: mark.line, column: mark.column, path: "", message: "yaml error: \(what)")
        default:
            return ConfigError(file: file, path: "", message: "yaml error: \(error)")
        }
    }
}

/// A decoded document and where each of its values came from.
public struct DecodedConfig<T: Sendable>: Sendable {
    public var value: T
    public var positions: ConfigPositions
}

/// Key path → source position, to place validation errors on a line.
public struct ConfigPositions: Sendable {
    public var file: String?
    var marks: [String: Position]

    struct Position: Sendable { var line: Int; var column: Int }

    public init(file: String?) {
        self.file = file
        self.marks = [:]
    }

    init(file: String?, marks: [String: Position]) {
        self.file = file
        self.marks = marks
    }

    /// Adds the file and the closest known position (the path itself, or its nearest parent) to `error`.
    public func locate(_ error: ConfigError) -> ConfigError {
        var e = error
        e.file = e.file ?? self.file
        guard e.line == nil else { return e }
        var path = Substring(error.path)
        while true {
            if let p = self.marks[String(path)] {
                e.line = p.line
                e.column = p.column
                return e
            }
            guard let cut = path.lastIndex(where: { $0 == "." || $0 == "[" }) else { return e }
            path = path[..<cut]
        }
    }
}

/// Values the decoder substitutes after recording an error, so decoding can go on and find the next one.
public protocol ConfigPlaceholder {
    static var configPlaceholder: Self { get }
}

extension String: ConfigPlaceholder { public static var configPlaceholder: String { "" } }
extension Int: ConfigPlaceholder { public static var configPlaceholder: Int { 0 } }
extension Bool: ConfigPlaceholder { public static var configPlaceholder: Bool { false } }
extension Double: ConfigPlaceholder { public static var configPlaceholder: Double { 0 } }
extension Array: ConfigPlaceholder { public static var configPlaceholder: Array { [] } }
extension Dictionary: ConfigPlaceholder { public static var configPlaceholder: Dictionary { [:] } }
extension Optional: ConfigPlaceholder { public static var configPlaceholder: Optional { nil } }
extension ConfigDuration: ConfigPlaceholder { public static var configPlaceholder: ConfigDuration { .init(nanoseconds: 0) } }
extension ByteSize: ConfigPlaceholder { public static var configPlaceholder: ByteSize { .init(bytes: 0) } }

extension ConfigError {
    static func sourceOrder(_ a: ConfigError, _ b: ConfigError) -> Bool {
        ((a.line ?? Int.max), (a.column ?? Int.max), a.path) < ((b.line ?? Int.max), (b.column ?? Int.max), b.path)
    }
}

// MARK: - Implementation

/// Thrown upward after an error was recorded, until a level that can substitute a placeholder.
private struct AlreadyRecorded: Error {}

/// Per-document decoding state. Reference type so every container of one run shares it.
private final class DecodingContext {
    let file: String?
    var errors: [ConfigError] = []
    var marks: [String: ConfigPositions.Position] = [:]

    init(file: String?) { self.file = file }

    func record(_ message: String, path: [any CodingKey], mark: Mark?) {
        self.errors.append(
            ConfigError(file: self.file, line: mark?.line, column: mark?.column, path: path.configPath, message: message)
        )
    }

    /// Decodes one node; on failure records the error and returns a placeholder if `T` has one.
    func decodeValue<T: Decodable>(_ type: T.Type, node: Node, path: [any CodingKey]) throws -> T {
        if let mark = node.mark {
            self.marks[path.configPath] = .init(line: mark.line, column: mark.column)
        }
        let tracker = KeyTracker()
        do {
            let value = try T(from: NodeDecoder(node: node, codingPath: path, context: self, tracker: tracker))
            if case .mapping(let mapping) = node, tracker.checked {
                self.reportUnknownKeys(mapping, known: tracker.accessed, path: path)
            }
            return value
        } catch is AlreadyRecorded {
            if let p = T.self as? any ConfigPlaceholder.Type { return p.configPlaceholder as! T }
            throw AlreadyRecorded()
        } catch let error as DecodingError {
            self.record(error.configMessage, path: error.configCodingPath(fallback: path), mark: node.mark)
        } catch {
            self.record("\(error)", path: path, mark: node.mark)
        }
        if let p = T.self as? any ConfigPlaceholder.Type { return p.configPlaceholder as! T }
        throw AlreadyRecorded()
    }

    private func reportUnknownKeys(_ mapping: Node.Mapping, known: Set<String>, path: [any CodingKey]) {
        for (key, _) in mapping {
            let name = key.string ?? ""
            if known.contains(name) { continue }
            var message = "unknown key \"\(name)\""
            if let suggestion = known.min(by: { editDistance($0, name) < editDistance($1, name) }),
                editDistance(suggestion, name) <= max(2, name.count / 3)
            {
                message += " (did you mean \"\(suggestion)\"?)"
            }
            self.record(message, path: path + [ConfigCodingKey(name)], mark: key.mark)
        }
    }
}

/// Which keys of one mapping the model asked about. Keys never asked about are unknown.
private final class KeyTracker {
    var accessed: Set<String> = []
    /// True once a keyed container was made: a model with a custom single-value decoding (an enum written as a
    /// mapping) does not use keys.
    var checked = false
}

private struct ConfigCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(_ s: String) {
        self.stringValue = s
        self.intValue = nil
    }
    init(index: Int) {
        self.stringValue = "\(index)"
        self.intValue = index
    }
    init?(stringValue: String) { self.init(stringValue) }
    init?(intValue: Int) { self.init(index: intValue) }
}

extension [any CodingKey] {
    /// `routes[3].match.hosts[0]`: the form error messages use.
    var configPath: String {
        var s = ""
        for key in self {
            if let i = key.intValue {
                s += "[\(i)]"
            } else {
                if !s.isEmpty { s += "." }
                // Model properties start lowercase; a user's map key (a header name) is shown as written.
                let k = key.stringValue
                s += k.first?.isLowercase == true ? snakeCase(k) : k
            }
        }
        return s
    }
}

/// `pathPrefix` → `path_prefix`. Keys in the model are camelCase Swift properties; documents are snake_case.
func snakeCase(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.utf8.count + 4)
    for ch in s {
        if ch.isUppercase {
            out.append("_")
            out.append(contentsOf: ch.lowercased())
        } else {
            out.append(ch)
        }
    }
    return out
}

private func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.utf8)
    let b = Array(b.utf8)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    var cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            cur[j] = Swift.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}

extension DecodingError {
    var configMessage: String {
        switch self {
        case .typeMismatch(let type, let ctx):
            return ctx.debugDescription.isEmpty ? "expected \(describe(type))" : ctx.debugDescription
        case .valueNotFound(let type, let ctx):
            return ctx.debugDescription.isEmpty ? "expected \(describe(type)), found null" : ctx.debugDescription
        case .keyNotFound(let key, _):
            return "missing required key \"\(snakeCase(key.stringValue))\""
        case .dataCorrupted(let ctx):
            return ctx.debugDescription
        @unknown default:
            return "\(self)"
        }
    }

    func configCodingPath(fallback: [any CodingKey]) -> [any CodingKey] {
        switch self {
        case .typeMismatch(_, let ctx), .valueNotFound(_, let ctx), .dataCorrupted(let ctx):
            return ctx.codingPath.count >= fallback.count ? ctx.codingPath : fallback
        case .keyNotFound(let key, let ctx):
            return (ctx.codingPath.count >= fallback.count ? ctx.codingPath : fallback) + [key]
        @unknown default:
            return fallback
        }
    }
}

private func describe(_ type: Any.Type) -> String {
    switch type {
    case is String.Type: return "a string"
    case is Int.Type, is Int64.Type, is UInt16.Type, is UInt32.Type, is Int32.Type, is UInt.Type: return "an integer"
    case is Bool.Type: return "true or false"
    case is Double.Type, is Float.Type: return "a number"
    default:
        let name = "\(type)"
        if name.hasPrefix("Array") { return "a list" }
        if name.hasPrefix("Dictionary") { return "a mapping" }
        return "a mapping (\(name))"
    }
}

private struct NodeDecoder: Decoder {
    let node: Node
    let codingPath: [any CodingKey]
    let context: DecodingContext
    let tracker: KeyTracker
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .mapping(let mapping) = self.node else {
            throw DecodingError.typeMismatch(
                [String: Any].self,
                .init(codingPath: self.codingPath, debugDescription: "expected a mapping, found \(self.node.kindName)")
            )
        }
        self.tracker.checked = true
        var entries: [String: (key: Node, value: Node)] = [:]
        for (k, v) in mapping {
            guard let name = k.string else { continue }
            if entries[name] != nil {
                self.context.record("duplicate key \"\(name)\"", path: self.codingPath + [ConfigCodingKey(name)], mark: k.mark)
            }
            entries[name] = (k, v)
        }
        // A `[String: V]` in the model is a map of the user's own keys (header names): keep them verbatim.
        let verbatim = "\(Key.self)".contains("DictionaryCodingKey")
        return KeyedDecodingContainer(
            KeyedContainer<Key>(entries: entries, decoder: self, verbatim: verbatim)
        )
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .sequence(let sequence) = self.node else {
            throw DecodingError.typeMismatch(
                [Any].self,
                .init(codingPath: self.codingPath, debugDescription: "expected a list, found \(self.node.kindName)")
            )
        }
        return UnkeyedContainer(items: Array(sequence), decoder: self)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        SingleValueContainer(decoder: self)
    }
}

extension Node {
    fileprivate var kindName: String {
        switch self {
        case .scalar(let s): return s.string.isEmpty || self.isNullScalar ? "null" : "\"\(s.string)\""
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    fileprivate var isNullScalar: Bool {
        guard case .scalar(let s) = self, s.style == .plain else { return false }
        return s.string == "" || s.string == "~" || s.string == "null" || s.string == "Null" || s.string == "NULL"
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let entries: [String: (key: Node, value: Node)]
    let decoder: NodeDecoder
    let verbatim: Bool
    var codingPath: [any CodingKey] { self.decoder.codingPath }

    var allKeys: [Key] {
        for name in self.entries.keys { self.decoder.tracker.accessed.insert(name) }
        return self.entries.keys.compactMap { Key(stringValue: $0) }
    }

    private func entry(_ key: Key) -> Node? {
        let name = self.verbatim ? key.stringValue : snakeCase(key.stringValue)
        self.decoder.tracker.accessed.insert(name)
        return self.entries[name]?.value
    }

    func contains(_ key: Key) -> Bool { self.entry(key) != nil }

    func decodeNil(forKey key: Key) throws -> Bool {
        guard let node = self.entry(key) else { return true }
        return node.isNullScalar
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        guard let node = self.entry(key) else {
            self.decoder.context.record(
                "missing required key \"\(snakeCase(key.stringValue))\"",
                path: self.codingPath + [key],
                mark: self.decoder.node.mark
            )
            if let p = T.self as? any ConfigPlaceholder.Type { return p.configPlaceholder as! T }
            throw AlreadyRecorded()
        }
        return try self.decoder.context.decodeValue(T.self, node: node, path: self.codingPath + [key])
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let node = self.entry(key), !node.isNullScalar else { return nil }
        return try self.decoder.context.decodeValue(T.self, node: node, path: self.codingPath + [key])
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        guard let node = self.entry(key) else {
            throw DecodingError.keyNotFound(key, .init(codingPath: self.codingPath, debugDescription: ""))
        }
        return try NodeDecoder(
            node: node,
            codingPath: self.codingPath + [key],
            context: self.decoder.context,
            tracker: KeyTracker()
        ).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        guard let node = self.entry(key) else {
            throw DecodingError.keyNotFound(key, .init(codingPath: self.codingPath, debugDescription: ""))
        }
        return try NodeDecoder(
            node: node,
            codingPath: self.codingPath + [key],
            context: self.decoder.context,
            tracker: KeyTracker()
        ).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder { self.decoder }
    func superDecoder(forKey key: Key) throws -> any Decoder { self.decoder }
}

private struct UnkeyedContainer: UnkeyedDecodingContainer {
    let items: [Node]
    let decoder: NodeDecoder
    var currentIndex = 0
    var codingPath: [any CodingKey] { self.decoder.codingPath }
    var count: Int? { self.items.count }
    var isAtEnd: Bool { self.currentIndex >= self.items.count }

    init(items: [Node], decoder: NodeDecoder) {
        self.items = items
        self.decoder = decoder
    }

    mutating func decodeNil() throws -> Bool {
        guard !self.isAtEnd else { return false }
        if self.items[self.currentIndex].isNullScalar {
            self.currentIndex += 1
            return true
        }
        return false
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        guard !self.isAtEnd else {
            throw DecodingError.valueNotFound(T.self, .init(codingPath: self.codingPath, debugDescription: "list ended"))
        }
        let index = self.currentIndex
        self.currentIndex += 1
        return try self.decoder.context.decodeValue(
            T.self,
            node: self.items[index],
            path: self.codingPath + [ConfigCodingKey(index: index)]
        )
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        let index = self.currentIndex
        self.currentIndex += 1
        return try NodeDecoder(
            node: self.items[index],
            codingPath: self.codingPath + [ConfigCodingKey(index: index)],
            context: self.decoder.context,
            tracker: KeyTracker()
        ).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let index = self.currentIndex
        self.currentIndex += 1
        return try NodeDecoder(
            node: self.items[index],
            codingPath: self.codingPath + [ConfigCodingKey(index: index)],
            context: self.decoder.context,
            tracker: KeyTracker()
        ).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder { self.decoder }
}

private struct SingleValueContainer: SingleValueDecodingContainer {
    let decoder: NodeDecoder
    var codingPath: [any CodingKey] { self.decoder.codingPath }

    func decodeNil() -> Bool { self.decoder.node.isNullScalar }

    private func scalar<T>(_ type: T.Type) throws -> Node.Scalar {
        guard case .scalar(let s) = self.decoder.node, !self.decoder.node.isNullScalar else {
            throw DecodingError.typeMismatch(
                T.self,
                .init(
                    codingPath: self.codingPath,
                    debugDescription: "expected \(describe(T.self)), found \(self.decoder.node.kindName)"
                )
            )
        }
        return s
    }

    private func mismatch<T>(_ type: T.Type, _ s: Node.Scalar) -> DecodingError {
        .typeMismatch(
            T.self,
            .init(codingPath: self.codingPath, debugDescription: "expected \(describe(T.self)), found \"\(s.string)\"")
        )
    }

    func decode(_ type: Bool.Type) throws -> Bool {
        let s = try self.scalar(Bool.self)
        switch s.string {
        case "true", "True", "TRUE", "yes", "on": return true
        case "false", "False", "FALSE", "no", "off": return false
        default: throw self.mismatch(Bool.self, s)
        }
    }

    func decode(_ type: String.Type) throws -> String { try self.scalar(String.self).string }

    func decode(_ type: Double.Type) throws -> Double {
        let s = try self.scalar(Double.self)
        guard s.style == .plain, let v = Double(s.string) else { throw self.mismatch(Double.self, s) }
        return v
    }

    func decode(_ type: Float.Type) throws -> Float { Float(try self.decode(Double.self)) }

    private func integer<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        let s = try self.scalar(T.self)
        guard s.style == .plain, let v = T(s.string.replacingUnderscores()) else { throw self.mismatch(T.self, s) }
        return v
    }

    func decode(_ type: Int.Type) throws -> Int { try self.integer(Int.self) }
    func decode(_ type: Int8.Type) throws -> Int8 { try self.integer(Int8.self) }
    func decode(_ type: Int16.Type) throws -> Int16 { try self.integer(Int16.self) }
    func decode(_ type: Int32.Type) throws -> Int32 { try self.integer(Int32.self) }
    func decode(_ type: Int64.Type) throws -> Int64 { try self.integer(Int64.self) }
    func decode(_ type: UInt.Type) throws -> UInt { try self.integer(UInt.self) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try self.integer(UInt8.self) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try self.integer(UInt16.self) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try self.integer(UInt32.self) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try self.integer(UInt64.self) }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try T(from: self.decoder)
    }
}

extension String {
    fileprivate func replacingUnderscores() -> String {
        self.contains("_") ? String(self.filter { $0 != "_" }) : self
    }
}
