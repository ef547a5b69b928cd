//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import PorticoAuth
public import PorticoCore
import PorticoEngine

/// The checks that read the files a config names (certificates and keys, htpasswd files, JWT keys), run with
/// `ConfigValidator` whenever a config is loaded (`portico check`, start, SIGHUP, the admin API), so every
/// problem is reported at once and a bad file keeps the running config in force.
public enum ConfigFileChecks {
    public static func errors(_ config: PorticoConfig) -> [ConfigError] {
        TLSConfigCheck.errors(config) + AuthConfigCheck.errors(config) + Self.cacheDirectoryErrors(config)
    }

    /// `cache_storage.disk.path` is a writable directory, or can be made in a writable one (Portico makes it).
    static func cacheDirectoryErrors(_ config: PorticoConfig) -> [ConfigError] {
        guard let path = config.cacheStorage?.disk?.path, !path.isEmpty else { return [] }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            if !isDirectory.boolValue { return [ConfigError(path: "cache_storage.disk.path", message: "\(path) is not a directory")] }
            if !FileManager.default.isWritableFile(atPath: path) {
                return [ConfigError(path: "cache_storage.disk.path", message: "\(path) is not writable")]
            }
            return []
        }
        let parent = (path as NSString).deletingLastPathComponent
        let dir = parent.isEmpty ? "." : parent
        if !FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory) || !isDirectory.boolValue
            || !FileManager.default.isWritableFile(atPath: dir)
        {
            return [ConfigError(path: "cache_storage.disk.path", message: "\(path) does not exist and cannot be made in \(dir)")]
        }
        return []
    }
}
