//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation

/// Real certificates for tests, made with the `openssl` command line tool in a fresh temporary directory: a CA
/// and leaf certificates (ECDSA P-256 or RSA) signed by it.
public final class TestCertificates: Sendable {
    public let directory: String

    public init() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("portico-certs-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        self.directory = dir
        try self.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                          "-keyout", self.path("ca.key"), "-out", self.path("ca.pem"), "-days", "2", "-subj", "/CN=Portico Test CA"])
    }

    public func path(_ name: String) -> String { self.directory + "/" + name }
    public var caFile: String { self.path("ca.pem") }

    /// Issues `name.pem` / `name.key` for the DNS names given, signed by the CA. Returns (certFile, keyFile).
    @discardableResult
    public func issue(_ name: String, dnsNames: [String], rsa: Bool = false, days: Int = 2, organization: String = "Portico", clientAuth: Bool = false) throws -> (String, String) {
        let key = self.path("\(name).key")
        let csr = self.path("\(name).csr")
        let ext = self.path("\(name).ext")
        let keyArgs = rsa ? ["-newkey", "rsa:2048"] : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        try self.openssl(["req"] + keyArgs + ["-nodes", "-keyout", key, "-out", csr, "-subj", "/O=\(organization)/CN=\(dnsNames.first ?? name)"])
        var extText = clientAuth ? "extendedKeyUsage=clientAuth\n" : "extendedKeyUsage=serverAuth\n"
        if !dnsNames.isEmpty { extText += "subjectAltName=" + dnsNames.map { "DNS:\($0)" }.joined(separator: ",") + "\n" }
        try extText.write(toFile: ext, atomically: true, encoding: .utf8)
        let tmp = self.path("\(name).pem.tmp")
        try self.openssl(["x509", "-req", "-in", csr, "-CA", self.caFile, "-CAkey", self.path("ca.key"), "-CAcreateserial",
                          "-out", tmp, "-days", String(days), "-extfile", ext])
        // Replace atomically, as a deployment tool would (the proxy may be watching the file).
        _ = rename(tmp, self.path("\(name).pem"))
        return (self.path("\(name).pem"), key)
    }

    private func openssl(_ args: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        let err = Pipe()
        p.standardError = err
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw RawClientError("openssl \(args.first ?? "") failed: \(text)")
        }
    }

    deinit {
        try? FileManager.default.removeItem(atPath: self.directory)
    }
}
