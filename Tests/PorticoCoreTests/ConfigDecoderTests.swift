//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import PorticoCore
import Testing

@Suite struct ConfigDecoderTests {
    static let issueShape = """
        listeners:
          - name: public
            address: 127.0.0.1:0
        routes:
          - match: { hosts: ["app.example.com", "*.example.org"], path_prefix: "/api/" }
            cluster: api
          - match: { path_prefix: "/" }
            cluster: web
        clusters:
          - name: api
            balancer: round_robin            # also: weighted_round_robin (nginx's smooth WRR)
            hosts:
              - address: api-1.internal:9001
              - address: api-2.internal:9002
                weight: 3
          - name: web
            hosts: [ { address: web-1.internal:9003 } ]
        """

    @Test func theIssuesShapeDecodesExactlyAsWritten() throws {
        let valid = try ConfigLoader.load(text: Self.issueShape, file: "p.yaml").get()
        let c = valid.config
        #expect(c.listeners == [ListenerConfig(name: "public", address: "127.0.0.1:0")])
        #expect(c.routes.count == 2)
        #expect(c.routes[0].match?.hosts == ["app.example.com", "*.example.org"])
        #expect(c.routes[0].match?.pathPrefix == "/api/")
        #expect(c.routes[0].cluster == "api")
        #expect(c.clusters?[0].balancer == .roundRobin)
        #expect(c.clusters?[0].hosts[1] == HostConfig(address: "api-2.internal:9002", weight: 3))
        #expect(c.clusters?[1].hosts == [HostConfig(address: "web-1.internal:9003")])
    }

    @Test func jsonIsAcceptedToo() throws {
        let json = """
            {
              "listeners": [ { "name": "public", "address": "127.0.0.1:0" } ],
              "routes": [ { "match": { "path_prefix": "/" }, "cluster": "web" } ],
              "clusters": [ { "name": "web", "hosts": [ { "address": "web-1.internal:9003", "weight": 2 } ] } ],
              "access_log": { "format": "json", "destination": "off" }
            }
            """
        let c = try ConfigLoader.load(text: json, file: "p.json").get().config
        #expect(c.clusters?[0].hosts[0].weight == 2)
        #expect(c.accessLog?.format == .json)
    }

    @Test func unknownKeyIsAnErrorWithPositionAndSuggestion() {
        let yaml = """
            listeners:
              - name: public
                adress: 127.0.0.1:0
            routes:
              - respond: { status: 200 }
            """
        let errors = (try? ConfigLoader.load(text: yaml, file: "p.yaml").get()) == nil
        #expect(errors)
        guard case .failure(let e) = ConfigLoader.load(text: yaml, file: "p.yaml") else { return }
        let descriptions = e.all.map(\.description)
        #expect(descriptions.contains("p.yaml:3:5: listeners[0].adress: unknown key \"adress\" (did you mean \"address\"?)"))
        #expect(descriptions.contains("p.yaml:2:5: listeners[0].address: missing required key \"address\""))
    }

    @Test func durationsAndSizes() {
        #expect(ConfigDuration(parsing: "250ms")?.nanoseconds == 250_000_000)
        #expect(ConfigDuration(parsing: "5s")?.nanoseconds == 5_000_000_000)
        #expect(ConfigDuration(parsing: "2m")?.nanoseconds == 120_000_000_000)
        #expect(ConfigDuration(parsing: "1m30s")?.nanoseconds == 90_000_000_000)
        #expect(ConfigDuration(parsing: "1.5s")?.nanoseconds == 1_500_000_000)
        #expect(ConfigDuration(parsing: "7")?.nanoseconds == 7_000_000_000)
        #expect(ConfigDuration(parsing: "5 parsecs") == nil)
        #expect(ConfigDuration(parsing: "-1s") == nil)
        #expect(ConfigDuration(parsing: "ms") == nil)
        #expect(ByteSize(parsing: "64KiB")?.bytes == 65536)
        #expect(ByteSize(parsing: "10MiB")?.bytes == 10 << 20)
        #expect(ByteSize(parsing: "1GiB")?.bytes == 1 << 30)
        #expect(ByteSize(parsing: "10KB")?.bytes == 10_000)
        #expect(ByteSize(parsing: "512")?.bytes == 512)
        #expect(ByteSize(parsing: "8k")?.bytes == 8192)
        #expect(ByteSize(parsing: "lots") == nil)
        #expect(ConfigDuration.milliseconds(250).description == "250ms")
        #expect(ByteSize.mebibytes(10).description == "10MiB")
    }

    @Test func workersAutoOrNumber() throws {
        let base = "listeners: [{name: a, address: \"127.0.0.1:1\"}]\nroutes: [{respond: {status: 200}}]\n"
        #expect(try ConfigLoader.load(text: "workers: auto\n" + base, file: nil).get().config.workers == .auto)
        #expect(try ConfigLoader.load(text: "workers: 3\n" + base, file: nil).get().config.workers == .count(3))
        guard case .failure(let e) = ConfigLoader.load(text: "workers: many\n" + base, file: "w.yaml") else {
            Issue.record("expected failure")
            return
        }
        #expect(e.all.map(\.description) == ["w.yaml:1:10: workers: expected \"auto\" or a number of workers, found \"many\""])
    }

    @Test func hostPortParsing() {
        #expect(HostPort(parsing: "192.0.2.1:8080") == HostPort(host: "192.0.2.1", port: 8080))  // parsing only; nothing connects
        #expect(HostPort(parsing: "[::1]:80") == HostPort(host: "::1", port: 80))
        #expect(HostPort(parsing: "origin.internal:9000")?.isIPLiteral == false)
        #expect(HostPort(parsing: "::1:80") == nil)
        #expect(HostPort(parsing: "127.0.0.1") == nil)
        #expect(HostPort(parsing: "192.0.2.1:70000") == nil)
        #expect(HostPort(host: "::1", port: 80).description == "[::1]:80")
    }

    @Test func cidrContains() throws {
        let v4 = try #require(CIDR(parsing: "10.0.0.0/8"))
        #expect(v4.contains(IPAddressBytes("10.1.2.3")!))
        #expect(!v4.contains(IPAddressBytes("11.0.0.1")!))
        #expect(v4.contains(IPAddressBytes("::ffff:10.9.9.9")!))
        let v6 = try #require(CIDR(parsing: "fd00::/8"))
        #expect(v6.contains(IPAddressBytes("fd12::1")!))
        #expect(!v6.contains(IPAddressBytes("fe80::1")!))
        #expect(CIDR(parsing: "::1")!.contains(IPAddressBytes("::1")!))
        #expect(CIDR(parsing: "10.0.0.0/33") == nil)
    }
}
