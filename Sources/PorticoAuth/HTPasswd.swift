//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Crypto
import FoundationEssentials
import HummingbirdBcrypt

/// The users of an htpasswd file (Apache's format: `user:hash` per line, `#` comments, blank lines).
///
/// Hashes: bcrypt (`$2y$`, `$2b$`, `$2a$`, as `htpasswd -B` writes) and `{SHA}` (base64 SHA-1, `htpasswd -s`).
/// Others (`$apr1$` MD5, crypt, plain) are refused when the file is read, with their line, rather than never
/// matching: a user who adds one should know at once.
package struct HTPasswd: Sendable, Equatable {
    package enum Hash: Sendable, Equatable {
        case bcrypt(String)
        case sha1([UInt8])
    }

    package var users: [String: Hash]

    package struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        package var line: Int
        package var message: String
        package var description: String { "line \(self.line): \(self.message)" }
    }

    package struct ParseErrors: Error, Sendable, Equatable {
        package var all: [ParseError]
    }

    /// Every problem in the file, not only the first.
    package static func parse(_ text: String) -> Result<HTPasswd, ParseErrors> {
        var users: [String: Hash] = [:]
        var errors: [ParseError] = []
        // "\r\n" is one Character: split on both.
        for (i, line) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            if line.allSatisfy({ $0 == " " || $0 == "\t" }) || line.first == "#" { continue }
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex else {
                errors.append(ParseError(line: i + 1, message: "expected user:hash"))
                continue
            }
            let user = String(line[..<colon])
            let hash = line[line.index(after: colon)...]
            if users[user] != nil { errors.append(ParseError(line: i + 1, message: "user \"\(user)\" is listed twice")); continue }
            if hash.hasPrefix("$2y$") || hash.hasPrefix("$2b$") || hash.hasPrefix("$2a$") {
                guard hash.utf8.count == 60 else {
                    errors.append(ParseError(line: i + 1, message: "malformed bcrypt hash for \"\(user)\""))
                    continue
                }
                // `$2y$` (Apache's and PHP's name) is the same algorithm as `$2b$`, which is the only name the
                // OpenBSD bcrypt inside HummingbirdBcrypt knows.
                users[user] = .bcrypt(hash.hasPrefix("$2y$") ? "$2b$" + hash.dropFirst(4) : String(hash))
            } else if hash.hasPrefix("{SHA}") {
                guard let digest = Data(base64Encoded: String(hash.dropFirst(5))), digest.count == 20 else {
                    errors.append(ParseError(line: i + 1, message: "malformed {SHA} hash for \"\(user)\""))
                    continue
                }
                users[user] = .sha1(Array(digest))
            } else {
                let kind = hash.hasPrefix("$apr1$") ? "$apr1$ (MD5)" : hash.hasPrefix("$") ? "\(hash.prefix(4))" : "crypt or plain"
                errors.append(ParseError(line: i + 1, message: "unsupported hash \(kind) for \"\(user)\" (use bcrypt: htpasswd -B)"))
            }
        }
        return errors.isEmpty ? .success(HTPasswd(users: users)) : .failure(ParseErrors(all: errors))
    }

    /// Whether `password` is `user`'s. bcrypt takes tens of milliseconds by design: never on an EventLoop.
    package func verify(user: String, password: String) -> Bool {
        switch self.users[user] {
        case .bcrypt(let hash)?:
            return Bcrypt.verify(password, hash: hash)
        case .sha1(let digest)?:
            let computed = Array(Insecure.SHA1.hash(data: Array(password.utf8)))
            // Constant time: every byte compared.
            return zip(computed, digest).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
        case nil:
            // The same cost as a wrong password, so a missing user cannot be told from timing.
            _ = Bcrypt.verify(password, hash: Self.dummyHash)
            return false
        }
    }

    /// A bcrypt hash (cost 10) of a random password, made once.
    static let dummyHash = Bcrypt.hash(String(UInt64.random(in: .min ... .max), radix: 36), cost: 10)
}
