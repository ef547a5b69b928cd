//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOSSL
import PorticoCore

/// Reads and verifies every TLS file a config names (listener certificates and keys, client CA bundles,
/// upstream CA bundles and client certificates): the checks `portico check` and reloads add to validation, so a
/// bad certificate is reported with its key path and never replaces a good one. Blocking file I/O: control plane.
public enum TLSConfigCheck {
    /// Every problem with the TLS files of `config`, as config errors at their key paths (for `portico check` and
    /// reloads: a bad certificate never replaces a good one).
    public static func errors(_ config: PorticoConfig) -> [ConfigError] {
        var errors: [ConfigError] = []
        for (i, l) in config.listeners.enumerated() {
            guard let tls = l.tls else { continue }
            for (j, c) in tls.certificates.enumerated() {
                do {
                    _ = try TLSCertificateStore.load(c)
                } catch let e as TLSMaterialError {
                    errors.append(ConfigError(path: "listeners[\(i)].tls.certificates[\(j)].\(e.field)", message: e.message))
                } catch {
                    errors.append(ConfigError(path: "listeners[\(i)].tls.certificates[\(j)]", message: "\(error)"))
                }
            }
            if let auth = tls.clientAuth {
                do {
                    try TLSCertificateStore.requireReadable(auth.caFile, field: "ca_file")
                    _ = try NIOSSLCertificate.fromPEMFile(auth.caFile)
                } catch let e as TLSMaterialError {
                    errors.append(ConfigError(path: "listeners[\(i)].tls.client_auth.ca_file", message: e.message))
                } catch {
                    errors.append(ConfigError(path: "listeners[\(i)].tls.client_auth.ca_file", message: "cannot load CA bundle \"\(auth.caFile)\": \(TLSCertificateStore.describe(error))"))
                }
            }
        }
        for (i, cl) in (config.clusters ?? []).enumerated() {
            guard let tls = cl.tls else { continue }
            do {
                _ = try UpstreamTLS(tls)
            } catch let e as TLSMaterialError {
                errors.append(ConfigError(path: "clusters[\(i)].tls.\(e.field)", message: e.message))
            } catch {
                errors.append(ConfigError(path: "clusters[\(i)].tls", message: "\(error)"))
            }
        }
        return errors
    }
}
