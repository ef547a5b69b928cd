//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What every worker knows about one upstream host: requests in flight, health, ejection, latency. Shared by all
/// workers through atomics (no locks on the request path) and kept in a `HostRegistry` by address, so it survives
/// config reloads (Caddy's `hosts` usage pool).
///
/// Times are `NIODeadline.uptimeNanoseconds` values, passed in by callers so the logic is testable.
public final class HostState: Sendable {
    public let address: HostPort
    private let _inFlight = Atomic<Int>(0)
    private let _activeHealthy = Atomic<Bool>(true)
    private let _ejectedUntil = Atomic<Int64>(0)
    private let _consecutiveFailures = Atomic<Int>(0)
    private let _ejections = Atomic<Int>(0)
    private let _lastEjectionEnd = Atomic<Int64>(0)
    private let _ewma = Atomic<Int64>(0)
    private let _ewmaStamp = Atomic<Int64>(0)
    /// When the host last became available (joined, turned healthy, or came back from ejection): slow start.
    private let _availableSince = Atomic<Int64>(0)
    /// Addresses of a host given by name, from the last successful resolution (empty: not resolved yet).
    private let _resolved = Mutex<[SocketAddress]>([])
    private let _nextAddress = Atomic<Int>(0)

    public init(address: HostPort, now: Int64 = 0) {
        self.address = address
        self._availableSince.store(now, ordering: .relaxed)
    }

    // MARK: Resolution

    /// The last good addresses of a host given by name. Read once per new upstream connection, not per request.
    public var resolvedAddresses: [SocketAddress] { self._resolved.withLock { $0 } }

    /// Stores a successful resolution; returns true when the set of addresses changed.
    @discardableResult
    public func setResolved(_ addresses: [SocketAddress]) -> Bool {
        self._resolved.withLock { current in
            let changed = Set(current.map(\.description)) != Set(addresses.map(\.description))
            current = addresses
            return changed
        }
    }

    /// The address for the next new connection: the resolved addresses in turn, or nil when there are none.
    public func nextResolvedAddress() -> SocketAddress? {
        let all = self.resolvedAddresses
        guard !all.isEmpty else { return nil }
        return all[self._nextAddress.add(1, ordering: .relaxed).newValue % all.count]
    }

    // MARK: Load

    public var inFlight: Int { self._inFlight.load(ordering: .relaxed) }
    public func requestStarted() { self._inFlight.add(1, ordering: .relaxed) }
    public func requestFinished() { self._inFlight.subtract(1, ordering: .relaxed) }

    // MARK: Health

    /// Healthy by active checks (true when there are none).
    public var isActiveHealthy: Bool { self._activeHealthy.load(ordering: .relaxed) }

    /// Returns true when the value changed.
    @discardableResult
    public func setActiveHealthy(_ healthy: Bool, now: Int64) -> Bool {
        let old = self._activeHealthy.exchange(healthy, ordering: .relaxed)
        if old != healthy && healthy { self._availableSince.store(now, ordering: .relaxed) }
        if old != healthy { self._healthChanges.add(1, ordering: .relaxed) }
        return old != healthy
    }

    private let _healthChanges = Atomic<Int>(0)
    /// How often active health checks changed this host's health (metrics; changes are rare, not per request).
    public var healthChanges: Int { self._healthChanges.load(ordering: .relaxed) }

    public func isEjected(now: Int64) -> Bool { self._ejectedUntil.load(ordering: .relaxed) > now }

    /// Usable for new requests: healthy and not ejected.
    public func isAvailable(now: Int64) -> Bool { self.isActiveHealthy && !self.isEjected(now: now) && !self.isDrained }

    private let _drained = Atomic<Bool>(false)
    /// Drained by an operator (admin API): no new requests; those in flight finish. Kept across reloads.
    public var isDrained: Bool { self._drained.load(ordering: .relaxed) }
    public func setDrained(_ drained: Bool) { self._drained.store(drained, ordering: .relaxed) }

    public var consecutiveFailures: Int { self._consecutiveFailures.load(ordering: .relaxed) }
    public var ejections: Int { self._ejections.load(ordering: .relaxed) }

    /// A request to this host failed in a way outlier detection counts. Returns the new consecutive count.
    public func recordFailure() -> Int { self._consecutiveFailures.add(1, ordering: .relaxed).newValue }

    /// A request succeeded: the failure streak ends. After a full base ejection time without a new ejection, the
    /// ejection multiplier decays (`OutlierDetector`).
    public func recordSuccess() {
        if self._consecutiveFailures.load(ordering: .relaxed) != 0 { self._consecutiveFailures.store(0, ordering: .relaxed) }
    }

    public func eject(until: Int64) {
        self._ejectedUntil.store(until, ordering: .relaxed)
        self._lastEjectionEnd.store(until, ordering: .relaxed)
        self._ejections.add(1, ordering: .relaxed)
        self._consecutiveFailures.store(0, ordering: .relaxed)
        self._availableSince.store(until, ordering: .relaxed)
    }

    /// Marks an ejection that has run out as over; true for exactly one caller (so it is logged once).
    public func clearExpiredEjection(now: Int64) -> Bool {
        let until = self._ejectedUntil.load(ordering: .relaxed)
        guard until != 0, until <= now else { return false }
        return self._ejectedUntil.compareExchange(expected: until, desired: 0, ordering: .relaxed).exchanged
    }

    public func resetEjections() { self._ejections.store(0, ordering: .relaxed) }

    /// Ejections in a row: the count starts over once the host has served for `quiet` nanoseconds since its last
    /// ejection ended (so a host that failed once a week is not ejected for 10× the base time).
    public func recentEjections(now: Int64, quiet: Int64) -> Int {
        let n = self.ejections
        if n > 0, now - self._lastEjectionEnd.load(ordering: .relaxed) > quiet {
            self.resetEjections()
            return 0
        }
        return n
    }
    public var ejectedUntil: Int64 { self._ejectedUntil.load(ordering: .relaxed) }

    // MARK: Slow start

    public var availableSince: Int64 { self._availableSince.load(ordering: .relaxed) }

    /// `weight` scaled by 100 and ramped linearly from 10% to 100% over `window` after the host became available.
    public func effectiveWeight(_ weight: Int, window: Int64, now: Int64) -> Int {
        let full = weight * 100
        guard window > 0 else { return full }
        let elapsed = now - self.availableSince
        if elapsed >= window { return full }
        let fraction = 0.1 + 0.9 * Double(max(0, elapsed)) / Double(window)
        return max(1, Int(Double(full) * fraction))
    }

    // MARK: Latency (peak EWMA)

    /// Peak-EWMA of response-header latency, in nanoseconds: jumps up to a slower sample at once, decays towards
    /// faster ones with a 10 s time constant (Finagle's `PeakEwma`).
    public var latency: Int64 { self._ewma.load(ordering: .relaxed) }

    public func recordLatency(_ nanos: Int64, now: Int64) {
        let old = self._ewma.load(ordering: .relaxed)
        let stamp = self._ewmaStamp.exchange(now, ordering: .relaxed)
        if old == 0 || nanos > old {
            self._ewma.store(nanos, ordering: .relaxed)
            return
        }
        let tau = 10_000_000_000.0
        let w = exp(-Double(max(0, now - stamp)) / tau)
        self._ewma.store(Int64(Double(old) * w + Double(nanos) * (1 - w)), ordering: .relaxed)
    }
}
