//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import Foundation
import PorticoCore
import Testing

/// Config documents in `Golden/` and the exact errors `portico check` prints for them (Caddy's adapt goldens).
/// Set PORTICO_UPDATE_GOLDEN=1 to rewrite the expected files after a deliberate change.
@Suite struct ConfigGoldenTests {
    static let goldenDir = Bundle.module.resourceURL!.appendingPathComponent("Golden")

    static var cases: [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: goldenDir.path))?
            .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".json") }.sorted() ?? []
    }

    @Test(arguments: ConfigGoldenTests.cases)
    func golden(_ name: String) throws {
        let input = try String(contentsOf: Self.goldenDir.appendingPathComponent(name), encoding: .utf8)
        let expectedURL = Self.goldenDir.appendingPathComponent((name as NSString).deletingPathExtension + ".errors")
        let actual: String
        switch ConfigLoader.load(text: input, file: name) {
        case .success: actual = "ok\n"
        case .failure(let errors): actual = errors.all.map(\.description).joined(separator: "\n") + "\n"
        }
        if ProcessInfo.processInfo.environment["PORTICO_UPDATE_GOLDEN"] != nil {
            // Write next to the sources, not the bundle copy.
            let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                .appendingPathComponent("Golden").appendingPathComponent(expectedURL.lastPathComponent)
            try actual.write(to: source, atomically: true, encoding: .utf8)
        }
        let expected = try String(contentsOf: expectedURL, encoding: .utf8)
        #expect(actual == expected)
    }
}
