//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import PorticoCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A listener's certificates, chosen per handshake by SNI, and reloaded when their files change.
///
/// `select` runs in the TLS handshake (on the connection's EventLoop, once per connection, not per request) and
/// takes a short lock; `reloadIfChanged` runs on the control plane and swaps the whole set at once, so a
/// handshake sees either the old certificates or the new ones.
public final class TLSCertificateStore: Sendable {
    private let configs: [CertificateConfig]
    private let entries: NIOLockedValueBox<[LoadedCertificate]>

    struct LoadedCertificate: @unchecked Sendable {
        // @unchecked: NIOSSLCertificate and NIOSSLPrivateKey are immutable wrappers of BoringSSL objects.
        var patterns: [HostPattern]
        var chain: [NIOSSLCertificate]
        var key: NIOSSLPrivateKey
        var stamp: String
    }

    /// Loads every certificate, or throws the first problem with the index of the certificate.
    public init(_ configs: [CertificateConfig]) throws {
        self.configs = configs
        var loaded: [LoadedCertificate] = []
        for (i, c) in configs.enumerated() {
            do {
                loaded.append(try Self.load(c))
            } catch let e as TLSMaterialError {
                throw TLSMaterialError(index: i, field: e.field, message: e.message)
            }
        }
        self.entries = NIOLockedValueBox(loaded)
    }

    /// The certificate for an SNI name: exact pattern, then the longest wildcard, then the first (default).
    func select(_ serverName: String?) -> LoadedCertificate {
        let all = self.entries.withLockedValue { $0 }
        guard let raw = serverName, !raw.isEmpty else { return all[0] }
        let name = normalizedRequestHost(Substring(raw))
        var best: (score: Int, entry: LoadedCertificate)?
        for e in all {
            for p in e.patterns where p.matchesName(name) {
                let score = p.score
                if best == nil || score > best!.score { best = (score, e) }
            }
        }
        return best?.entry ?? all[0]
    }

    var defaultCertificate: LoadedCertificate { self.entries.withLockedValue { $0[0] } }

    /// Reloads the files whose size or modification time changed. A file that fails to load keeps its old
    /// certificate, and the failure is logged.
    public func reloadIfChanged(logger: Logger) {
        var current = self.entries.withLockedValue { $0 }
        var changed = false
        for (i, c) in self.configs.enumerated() where Self.stamp(c) != current[i].stamp {
            do {
                current[i] = try Self.load(c)
                changed = true
                logger.notice("certificate reloaded", metadata: ["cert_file": "\(c.certFile)", "names": "\(current[i].patterns)"])
            } catch {
                logger.error("certificate reload failed, keeping the previous one", metadata: ["cert_file": "\(c.certFile)", "error": "\(error)"])
            }
        }
        if changed { self.entries.withLockedValue { $0 = current } }
    }

    static func stamp(_ c: CertificateConfig) -> String {
        func one(_ path: String) -> String {
            var st = stat()
            guard stat(path, &st) == 0 else { return "missing" }
            return "\(st.st_size)-\(st.st_mtim.tv_sec)-\(st.st_mtim.tv_nsec)"
        }
        return one(c.certFile) + "|" + one(c.keyFile)
    }

    /// Reads and checks one certificate: files readable and PEM, key matching the leaf, leaf not expired.
    static func load(_ c: CertificateConfig) throws -> LoadedCertificate {
        let stamp = self.stamp(c)
        try Self.requireReadable(c.certFile, field: "cert_file")
        try Self.requireReadable(c.keyFile, field: "key_file")
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(c.certFile)
        } catch {
            throw TLSMaterialError(field: "cert_file", message: "cannot load certificate \"\(c.certFile)\": \(Self.describe(error))")
        }
        guard let leaf = chain.first else {
            throw TLSMaterialError(field: "cert_file", message: "no certificate in \"\(c.certFile)\"")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: c.keyFile, format: .pem)
        } catch {
            throw TLSMaterialError(field: "key_file", message: "cannot load private key \"\(c.keyFile)\": \(Self.describe(error))")
        }
        do {
            // BoringSSL checks that the key belongs to the leaf when a context is made with both.
            _ = try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key)))
        } catch {
            throw TLSMaterialError(field: "key_file", message: "private key \"\(c.keyFile)\" does not match certificate \"\(c.certFile)\"")
        }
        var now = time_t()
        time(&now)
        if leaf.notValidAfter < now {
            throw TLSMaterialError(field: "cert_file", message: "certificate \"\(c.certFile)\" expired")
        }
        let names: [String]
        if let hosts = c.hosts {
            names = hosts
        } else {
            names = leaf._subjectAlternativeNames().compactMap { san -> String? in
                guard san.nameType == .dnsName else { return nil }
                return san.contents.withUnsafeBufferPointer { String(decoding: $0, as: UTF8.self) }
            }
        }
        return LoadedCertificate(patterns: names.compactMap(HostPattern.init(parsing:)), chain: chain, key: key, stamp: stamp)
    }

    /// Throws a clear "cannot read" error when `path` is not a readable file.
    static func requireReadable(_ path: String, field: String) throws {
        if access(path, R_OK) != 0 {
            throw TLSMaterialError(field: field, message: "cannot read \"\(path)\": \(String(cString: strerror(errno)).lowercased())")
        }
    }

    static func describe(_ error: any Error) -> String {
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)).lowercased() }
        return "\(error)"
    }
}

/// A certificate or key that cannot be used; `field` is `cert_file` or `key_file`.
public struct TLSMaterialError: Error, CustomStringConvertible {
    public var index: Int = 0
    public var field: String
    public var message: String
    public var description: String { self.message }
}

extension HostPattern {
    fileprivate func matchesName(_ name: String) -> Bool {
        switch self {
        case .exact(let n): return n == name
        case .wildcard(let suffix): return name.hasSuffix(suffix) && name.utf8.count > suffix.utf8.count
        }
    }

    fileprivate var score: Int {
        switch self {
        case .exact: return Int.max
        case .wildcard(let suffix): return suffix.utf8.count
        }
    }
}
