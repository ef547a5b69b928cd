//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import PorticoCore
import Testing

@Suite struct UpstreamPoolStateMachineTests {
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func lifoReuseAndCap() {
        var m = UpstreamPoolStateMachine<Int>(maxIdle: 2, idleTimeout: .seconds(60), maxRequests: 0)
        #expect(m.lease() == .connect)
        #expect(m.release(1, reusable: true, requestsServed: 1, now: t0) == .park)
        #expect(m.release(2, reusable: true, requestsServed: 1, now: t0) == .park)
        #expect(m.release(3, reusable: true, requestsServed: 1, now: t0) == .close)  // over the cap
        #expect(m.lease() == .reuse(2))  // warmest first
        #expect(m.lease() == .reuse(1))
        #expect(m.lease() == .connect)
    }

    @Test func unusableConnectionsAreNotParked() {
        var m = UpstreamPoolStateMachine<Int>(maxIdle: 4, idleTimeout: .seconds(60), maxRequests: 3)
        #expect(m.release(1, reusable: false, requestsServed: 1, now: t0) == .close)
        #expect(m.release(2, reusable: true, requestsServed: 3, now: t0) == .close)  // max requests reached
        var off = UpstreamPoolStateMachine<Int>(maxIdle: 0, idleTimeout: .seconds(60), maxRequests: 0)
        #expect(off.release(3, reusable: true, requestsServed: 1, now: t0) == .close)
    }

    @Test func idleEventsEvictAndExpiryRemovesOldest() {
        var m = UpstreamPoolStateMachine<Int>(maxIdle: 4, idleTimeout: .seconds(10), maxRequests: 0)
        _ = m.release(1, reusable: true, requestsServed: 1, now: t0)
        _ = m.release(2, reusable: true, requestsServed: 1, now: t0 + .seconds(5))
        _ = m.release(3, reusable: true, requestsServed: 1, now: t0 + .seconds(8))
        let first = m.idleEvent(2)
        let second = m.idleEvent(2)
        #expect(first && !second)
        #expect(m.expired(now: t0 + .seconds(12)) == [1])
        #expect(m.idleCount == 1)
        #expect(m.lease() == .reuse(3))
        #expect(m.drainAll().isEmpty)
    }
}
