//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore

/// A handle on one worker EventLoop's state that may be passed between threads; the state itself is only
/// reachable on its loop.
struct Worker: Sendable {
    let eventLoop: any EventLoop
    let state: NIOLoopBound<WorkerState>

    /// Runs `body` with the worker's state on its loop.
    func submit<T: Sendable>(_ body: @escaping @Sendable (WorkerState) -> T) -> EventLoopFuture<T> {
        self.eventLoop.submit { body(self.state.value) }
    }
}
