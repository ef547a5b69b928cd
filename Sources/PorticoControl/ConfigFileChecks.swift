//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import PorticoAuth
public import PorticoCore
import PorticoEngine

/// The checks that read the files a config names (certificates and keys, htpasswd files, JWT keys), run with
/// `ConfigValidator` whenever a config is loaded (`portico check`, start, SIGHUP, the admin API), so every
/// problem is reported at once and a bad file keeps the running config in force.
public enum ConfigFileChecks {
    public static func errors(_ config: PorticoConfig) -> [ConfigError] {
        TLSConfigCheck.errors(config) + AuthConfigCheck.errors(config)
    }
}
