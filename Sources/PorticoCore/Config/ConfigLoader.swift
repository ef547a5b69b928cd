//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads, decodes and validates a config document: the one path every config takes (command line, `check`,
/// reload). Blocking file I/O: call it off the EventLoops.
public enum ConfigLoader {
    /// Decodes and validates `text`; every error carries `file`, line:column and key path.
    /// - Parameter extraChecks: further checks that need more than this module (TLS files are read and verified
    ///   by the engine); their errors are placed and reported with the rest.
    public static func load(text: String, file: String?, extraChecks: (PorticoConfig) -> [ConfigError] = { _ in [] }) -> Result<ValidatedConfig, ConfigErrors> {
        let partial = ConfigDecoder().decodePartially(PorticoConfig.self, from: text, file: file)
        guard let value = partial.value else { return .failure(ConfigErrors(partial.errors)) }
        var result = ConfigValidator.validate(value)
        if partial.errors.isEmpty {
            // The file checks too, so every problem is reported at once; not where the validator already
            // found one at the same key path (an empty file name is said once).
            switch result {
            case .success:
                let extra = extraChecks(value)
                if !extra.isEmpty { result = .failure(ConfigErrors(extra)) }
            case .failure(let semantic):
                let paths = Set(semantic.all.map(\.path))
                result = .failure(ConfigErrors(semantic.all + extraChecks(value).filter { !paths.contains($0.path) }))
            }
        }
        switch result {
        case .success(let valid) where partial.errors.isEmpty:
            return .success(valid)
        case .success:
            return .failure(ConfigErrors(partial.errors))
        case .failure(let semantic):
            // Validation ran on placeholders where decoding failed: drop what it says about those places.
            let decodePaths = partial.errors.map(\.path)
            let extra = semantic.all.filter { e in
                !decodePaths.contains { p in e.path == p || e.path.hasPrefix(p + ".") || e.path.hasPrefix(p + "[") }
            }
            let all = partial.errors + extra.map { partial.positions.locate($0) }
            return .failure(ConfigErrors(all.sorted(by: ConfigError.sourceOrder)))
        }
    }

    /// Reads `path` and loads it.
    public static func load(path: String, extraChecks: (PorticoConfig) -> [ConfigError] = { _ in [] }) -> Result<ValidatedConfig, ConfigErrors> {
        switch readFile(path) {
        case .success(let text): return self.load(text: text, file: path, extraChecks: extraChecks)
        case .failure(let e): return .failure(ConfigErrors([ConfigError(file: path, path: "", message: e.message)]))
        }
    }

    static func readFile(_ path: String) -> Result<String, ReadError> {
        guard let f = fopen(path, "rb") else {
            return .failure(ReadError(message: "cannot read the file: \(String(cString: strerror(errno)))"))
        }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&chunk, 1, chunk.count, f)
            if n > 0 { bytes.append(contentsOf: chunk[0..<n]) }
            if n < chunk.count {
                if ferror(f) != 0 { return .failure(ReadError(message: "cannot read the file: \(String(cString: strerror(errno)))")) }
                break
            }
            if bytes.count > 16 << 20 { return .failure(ReadError(message: "the file is larger than 16 MiB")) }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { return .failure(ReadError(message: "the file is not UTF-8 text")) }
        return .success(text)
    }

    struct ReadError: Error { var message: String }
}
