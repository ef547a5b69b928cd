//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Testing

@testable import PorticoCore

/// `portico check`'s warnings: routes that can never match, clusters no route uses, listeners without routes.
@Suite struct ConfigLintTests {
    @Test func warnings() throws {
        let yaml = """
            listeners:
              - { name: public, address: "127.0.0.1:0" }
              - { name: internal, address: "127.0.0.1:0" }
            routes:
              - { name: api, match: { path_prefix: /api/ }, cluster: a }
              - { name: api-v1, match: { path_prefix: /api/v1/, methods: [GET] }, cluster: a }
              - { name: api-again, match: { path_prefix: /api/ }, cluster: a }
              - { name: all, cluster: a }
              - { name: get-only, match: { methods: [GET] }, cluster: a }
              - { name: exact, match: { path: /api/x }, cluster: a }
              - { name: host, match: { hosts: [app.example], path_prefix: /api/ }, cluster: a }
              - { name: public-only, match: { listeners: [public] }, cluster: a }
              - { name: m1, match: { path_prefix: /m/, methods: [GET, POST] }, cluster: a }
              - { name: m2, match: { path_prefix: /m/x, methods: [GET] }, cluster: a }
              - { name: m3, match: { path_prefix: /m/, methods: [GET] }, cluster: a }
            clusters:
              - { name: a, hosts: [ { address: "127.0.0.1:1" } ] }
              - { name: spare, hosts: [ { address: "127.0.0.1:2" } ] }
            """
        let valid = try ConfigLoader.load(text: yaml, file: "t.yaml").get()
        let warnings = ConfigLint.warnings(valid, text: yaml, file: "t.yaml")
        let byPath = Dictionary(warnings.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        // An identical route later in the file never matches; nor does a catch-all narrower than one before it.
        #expect(byPath["routes[2]"]?.message.contains("routes[0] (api)") == true)
        #expect(byPath["routes[10]"]?.message.contains("routes[8] (m1)") == true)  // same specificity, fewer methods
        // More specific routes win whatever their place (a longer path, methods, a listener): not shadowed.
        for i in [0, 1, 3, 4, 5, 6, 7, 8, 9] { #expect(byPath["routes[\(i)]"] == nil, "routes[\(i)]: \(byPath["routes[\(i)]"]?.message ?? "")") }
        #expect(byPath["clusters[1]"]?.message.contains("\"spare\" is used by no route") == true)
        #expect(byPath["listeners[1]"] == nil)  // routes without a listener condition serve it
        #expect(warnings.allSatisfy { $0.line != nil && $0.file == "t.yaml" })

        let limited = """
            listeners: [ { name: public, address: "127.0.0.1:0" }, { name: internal, address: "127.0.0.1:0" } ]
            routes: [ { match: { listeners: [public] }, respond: {} } ]
            """
        let w2 = ConfigLint.warnings(try ConfigLoader.load(text: limited, file: nil).get())
        #expect(w2.map(\.path) == ["listeners[1]"])
    }
}
