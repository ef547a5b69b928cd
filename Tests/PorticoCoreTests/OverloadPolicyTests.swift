//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import PorticoCore
import Testing

/// Entering and leaving overload, with hysteresis, without sockets.
struct OverloadPolicyTests {
    func usage(files: Int, limit: Int = 1000, mib: Int = 100) -> OverloadPolicy.Usage {
        .init(openFiles: files, openFilesLimit: limit, residentBytes: mib << 20)
    }

    @Test func openFilesWithHysteresis() {
        var p = OverloadPolicy(OverloadConfig(openFilesPercent: 80))
        #expect(p.evaluate(usage(files: 799)) == nil)
        guard case .enter(let reason)? = p.evaluate(usage(files: 800)) else { Issue.record("not entered"); return }
        #expect(reason == "open files 800 of 1000")
        #expect(p.evaluate(usage(files: 900)) == nil)  // already in
        #expect(p.evaluate(usage(files: 730)) == nil)  // under the threshold but not under 90% of it (720)
        #expect(p.evaluate(usage(files: 719)) == .leave)
        #expect(p.evaluate(usage(files: 719)) == nil)
    }

    @Test func memoryAndDefaults() {
        var p = OverloadPolicy(OverloadConfig(openFilesPercent: 0, maxMemory: ByteSize(bytes: 200 << 20)))
        #expect(p.evaluate(usage(files: 1000, mib: 150)) == nil)  // open files off
        #expect(p.evaluate(usage(files: 0, mib: 200)) == .enter(reason: "resident memory 200 MiB of 200 MiB"))
        #expect(p.evaluate(usage(files: 0, mib: 185)) == nil)
        #expect(p.evaluate(usage(files: 0, mib: 170)) == .leave)
        // Default: on at 95% of the open files limit; an unlimited limit (0 here) is never neared.
        var d = OverloadPolicy(nil)
        #expect(d.isEnabled && d.evaluate(usage(files: 10_000, limit: 0)) == nil)
        #expect(d.evaluate(usage(files: 950)) != nil)
        #expect(!OverloadPolicy(OverloadConfig(openFilesPercent: 0)).isEnabled)
    }
}
