//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import Logging
import PorticoCore
import PorticoTestSupport
import Testing

/// `error_pages` (issue 10 §6): Portico's own answers (no route, upstream down) from files, per route first, then
/// global; unreadable files and non-error codes are config errors with their key paths.
@Suite(.serialized) struct ErrorPageTests {
    @Test func pagesFromFiles() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("portico-pages-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let notFound = dir.appendingPathComponent("404.html").path
        let global502 = dir.appendingPathComponent("502.html").path
        let route502 = dir.appendingPathComponent("api-502.json").path
        try "<h1>Nothing here</h1>".write(toFile: notFound, atomically: true, encoding: .utf8)
        try "<h1>Down for a moment</h1>".write(toFile: global502, atomically: true, encoding: .utf8)
        try "{\"error\": \"api down\"}".write(toFile: route502, atomically: true, encoding: .utf8)
        let yaml = """
            listeners: [ { name: main, address: "127.0.0.1:0" } ]
            access_log: { destination: "off" }
            error_pages: { "404": "\(notFound)", "502": "\(global502)" }
            routes:
              - { match: { path_prefix: /api/ }, cluster: down, error_pages: { "502": "\(route502)" } }
              - { match: { path_prefix: /site/ }, cluster: down }
            clusters: [ { name: down, hosts: [ { address: "127.0.0.1:1" } ] } ]
            """
        let proxy = try await ProxyHarness.start(yaml: yaml, workers: 1, logLevel: .critical)
        defer { Task { await proxy.shutdown() } }
        func get(_ path: String) throws -> RawResponse {
            let c = try RawHTTPClient(port: proxy.port())
            try c.send("GET \(path) HTTP/1.1\r\nHost: t\r\n\r\n")
            return try #require(c.readResponses(1).first)
        }
        let none = try get("/nowhere")
        #expect(none.status == 404 && none.body == "<h1>Nothing here</h1>" && none.header("content-type") == "text/html; charset=utf-8")
        let site = try get("/site/x")
        #expect(site.status == 502 && site.body == "<h1>Down for a moment</h1>")
        let api = try get("/api/x")
        #expect(api.status == 502 && api.body == "{\"error\": \"api down\"}" && api.header("content-type") == "application/json")

        let bad = "listeners: [ { name: l, address: \"127.0.0.1:0\" } ]\nerror_pages: { \"200\": \"\(notFound)\", \"503\": \"/nonexistent/x.html\" }\nroutes: [ { respond: {} } ]\n"
        guard case .failure(let errors) = ConfigLoader.load(text: bad, file: nil) else { Issue.record("accepted"); return }
        #expect(Set(errors.all.map(\.path)) == ["error_pages.200", "error_pages.503"])
    }
}
