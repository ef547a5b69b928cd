//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import FoundationEssentials
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One htpasswd file as the routes that name it see it: its users, re-read when the file changes, and the checks
/// remembered for its users (forgotten whenever the file changes, so a removed user or a new password takes
/// effect within one watch interval).
///
/// Shared by every route naming the file and kept across config reloads. `reloadIfChanged` runs on the control
/// plane (a `stat`, and a read when it changed); `users` is read off the EventLoop, by the bcrypt checks.
package final class HTPasswdFile: Sendable {
    package let path: String
    private let state: Mutex<(users: HTPasswd, stamp: Stamp)>
    /// Bumped after each reload swapped the users in (an atomic: read on every remembered check, by every worker).
    private let currentGeneration = Atomic<UInt64>(0)
    /// Base64 credential's digest → the check's outcome, and the file's generation it was made against: an outcome
    /// from before a reload never counts, even if a slow check stored it after the reload cleared the rest.
    let remembered = AuthCache<Remembered>()

    struct Remembered: Sendable {
        /// The user (a good check) or nil (a bad one).
        var user: String?
        var generation: UInt64
    }

    struct Stamp: Equatable {
        var inode: UInt64
        var size: Int64
        var mtime: Int64
    }

    package enum LoadError: Error, CustomStringConvertible {
        case unreadable(String)
        case invalid([HTPasswd.ParseError])

        package var description: String {
            switch self {
            case .unreadable(let path): "cannot read \"\(path)\""
            case .invalid(let errors): errors.map(\.description).joined(separator: "; ")
            }
        }
    }

    package init(path: String) throws(LoadError) {
        self.path = path
        let (users, stamp) = try Self.read(path)
        self.state = Mutex((users, stamp))
    }

    package var users: HTPasswd { self.state.withLock { $0.users } }

    /// The users, and a generation they are at least as new as (read first: an outcome checked against newer users
    /// than its generation says is only ignored, never trusted wrongly).
    var snapshot: (users: HTPasswd, generation: UInt64) {
        let generation = self.generation
        return (self.users, generation)
    }

    var generation: UInt64 { self.currentGeneration.load(ordering: .acquiring) }

    package enum ReloadResult: Equatable {
        case unchanged
        case reloaded(users: Int)
    }

    /// Reads the file again if its inode, size or modification time changed. On an error the users stay as they
    /// were. Blocking file I/O: control plane only.
    package func reloadIfChanged() throws(LoadError) -> ReloadResult {
        guard let stamp = Self.stamp(self.path) else { throw .unreadable(self.path) }
        if self.state.withLock({ $0.stamp }) == stamp { return .unchanged }
        let (users, newStamp) = try Self.read(self.path)
        self.state.withLock { $0 = (users, newStamp) }
        self.currentGeneration.wrappingAdd(1, ordering: .releasing)
        self.remembered.removeAll()
        return .reloaded(users: users.users.count)
    }

    private static func read(_ path: String) throws(LoadError) -> (HTPasswd, Stamp) {
        guard let stamp = Self.stamp(path), let data = FileManager.default.contents(atPath: path) else { throw .unreadable(path) }
        switch HTPasswd.parse(String(decoding: data, as: UTF8.self)) {
        case .success(let users): return (users, stamp)
        case .failure(let errors): throw .invalid(errors.all)
        }
    }

    private static func stamp(_ path: String) -> Stamp? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Stamp(inode: UInt64(st.st_ino), size: Int64(st.st_size),
                     mtime: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
    }
}
