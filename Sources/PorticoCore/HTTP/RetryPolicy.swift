//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

public import NIOCore
import Synchronization

/// A reason a try failed that `retry_on` can name.
public enum RetryCondition: String, Sendable, Hashable, CaseIterable {
    case connectFailure = "connect_failure"
    case reset
    case timeout
    case status502 = "502"
    case status503 = "503"
    case status504 = "504"

    public static func forStatus(_ status: Int) -> RetryCondition? {
        switch status {
        case 502: return .status502
        case 503: return .status503
        case 504: return .status504
        default: return nil
        }
    }
}

/// A cluster's compiled retry rules (pure decisions; the engine does the waiting and resending).
public struct RetryPolicy: Sendable {
    public var conditions: Set<RetryCondition>
    public var maxRetries: Int
    public var perTryTimeout: TimeAmount?
    public var backoffBase: TimeAmount
    public var backoffMax: TimeAmount
    public var budgetPercent: Int
    public var allMethods: Bool
    /// Whether any condition needs the retry budget (connect failures do not: nothing reached the host).
    public let usesBudget: Bool

    public init(_ c: RetryConfig?) {
        self.conditions = Set((c?.retryOn ?? ["connect_failure"]).compactMap(RetryCondition.init(rawValue:)))
        self.maxRetries = c?.maxRetries ?? 2
        self.perTryTimeout = c?.perTryTimeout.map { .nanoseconds($0.nanoseconds) }
        self.backoffBase = .nanoseconds(c?.backoffBase?.nanoseconds ?? 25_000_000)
        self.backoffMax = .nanoseconds(c?.backoffMax?.nanoseconds ?? 250_000_000)
        self.budgetPercent = c?.budgetPercent ?? 20
        self.allMethods = c?.methods == .all
        self.usesBudget = self.conditions.contains { $0 != .connectFailure }
    }

    /// Whether a failed try may be retried.
    ///
    /// - Parameters:
    ///   - retriesSoFar: retries already made for this request.
    ///   - idempotent: the method is safe to repeat (RFC 9110 §9.2.2).
    ///   - responseStarted: a response byte already went downstream (then never).
    ///   - replayable: the whole request body is still held, so it can be sent again.
    ///   - budgetAllows: the cluster's retry budget has room.
    public func shouldRetry(
        _ condition: RetryCondition,
        retriesSoFar: Int,
        idempotent: Bool,
        responseStarted: Bool,
        replayable: Bool,
        budgetAllows: Bool
    ) -> Bool {
        guard !responseStarted, replayable, retriesSoFar < self.maxRetries, self.conditions.contains(condition) else {
            return false
        }
        // Nothing reached the upstream after a connect failure, so any method may go elsewhere.
        guard condition == .connectFailure || idempotent || self.allMethods else { return false }
        return budgetAllows || condition == .connectFailure
    }

    /// Exponential backoff with full jitter: uniform in [0, min(max, base × 2^retry)).
    public func backoff<R: RandomNumberGenerator>(retry: Int, using rng: inout R) -> TimeAmount {
        let cap = min(self.backoffMax.nanoseconds, self.backoffBase.nanoseconds << min(retry, 20))
        guard cap > 0 else { return .zero }
        return .nanoseconds(Int64.random(in: 0..<cap, using: &rng))
    }
}

/// Requests and retries in flight for one cluster, across workers, for the retry budget (Envoy's
/// `retry_budget`): retries may be at most `percent` of active requests, with a floor of 3 so low traffic can
/// still retry.
public final class RetryBudget: Sendable {
    private let active = Atomic<Int>(0)
    private let retrying = Atomic<Int>(0)

    public init() {}

    public func requestStarted() { self.active.add(1, ordering: .relaxed) }
    public func requestFinished() { self.active.subtract(1, ordering: .relaxed) }

    /// Takes a retry slot if the budget has room; release it with `retryFinished`.
    public func tryStartRetry(percent: Int) -> Bool {
        let limit = max(3, self.active.load(ordering: .relaxed) * percent / 100)
        if self.retrying.add(1, ordering: .relaxed).newValue > limit {
            self.retrying.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    public func retryFinished() { self.retrying.subtract(1, ordering: .relaxed) }
}
