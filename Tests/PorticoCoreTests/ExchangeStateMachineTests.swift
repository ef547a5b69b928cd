//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

import NIOCore
import PorticoCore
import Testing

/// Every transition and deadline of `ExchangeStateMachine`, without sockets: the virtual clock is `t(_:)`.
@Suite struct ExchangeStateMachineTests {
    static let timeouts = ExchangeStateMachine.Timeouts(requestHead: .seconds(10), requestBody: .seconds(20), idle: .seconds(60), minBodyRate: 0)

    func t(_ seconds: Double) -> NIODeadline { .uptimeNanoseconds(1_000_000_000_000 + UInt64(seconds * 1e9)) }

    func machine(_ proto: ExchangeProtocol = .http1, minBodyRate: Int = 0) -> ExchangeStateMachine {
        var timeouts = Self.timeouts
        timeouts.minBodyRate = minBodyRate
        return ExchangeStateMachine(proto: proto, timeouts: timeouts, now: t(0))
    }

    /// A request whose head came at `at`, forwarded upstream at once (bodiless: ended).
    func forwarded(_ m: inout ExchangeStateMachine, at: Double = 0, ended: Bool = true) {
        m.requestStarted(now: t(at), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 0)
        if ended { #expect(m.requestEndReceived(now: t(at)) == .hold) }
        m.upstreamConnecting()
        m.upstreamAttached(now: t(at), responseHeadTimeout: .seconds(30), readTimeout: .seconds(40))
    }

    // MARK: Keep-alive life

    @Test func idleConnectionClosesAtTheIdleDeadline() {
        var m = machine()
        #expect(m.isIdle && m.stage == nil)
        #expect(m.tick(now: t(59.9), readsHeld: false) == .none)
        #expect(m.tick(now: t(60), readsHeld: false) == .close)
    }

    @Test func aPartialHeadStartsTheRequestHeadClock() {
        var m = machine()
        m.readBatchEnded(now: t(5), partialHead: true)
        #expect(m.tick(now: t(14.9), readsHeld: false) == .none)
        #expect(m.tick(now: t(15), readsHeld: false) == .requestHeadTimeout)
        #expect(m.parseErrorAction() == .respond)
    }

    @Test func aBatchThatOnlyFinishedTheLastExchangeLeavesTheConnectionIdle() {
        var m = machine()
        forwarded(&m)
        m.upstreamResponseStarted(now: t(1))
        m.upstreamResponseEnded()
        #expect(m.responseEnded(now: t(1)) == .keepAlive(complete: true))
        m.readBatchEnded(now: t(1), partialHead: false)
        #expect(m.tick(now: t(30), readsHeld: false) == .none)  // not the request-head timeout
        #expect(m.tick(now: t(61), readsHeld: false) == .close)  // the idle one, from the exchange's end
    }

    @Test func theNextRequestStopsTheIdleClock() {
        var m = machine()
        m.requestStarted(now: t(59), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 0)
        #expect(m.stage == .routing && !m.requestEnded && !m.responseStarted)
        #expect(m.tick(now: t(70), readsHeld: false) == .none)
    }

    @Test func aKeepAliveExchangeGoesBackToIdle() {
        var m = machine()
        forwarded(&m)
        #expect(m.stage == .forwarding)
        m.upstreamResponseStarted(now: t(1))
        #expect(m.stage == .relaying && m.responseStarted && !m.responseEnded)
        #expect(m.connectionField(http10: false, requestHasBody: false) == .none)
        #expect(m.connectionField(http10: true, requestHasBody: false) == .keepAlive)
        m.upstreamResponseEnded()
        #expect(m.responseEnded(now: t(2)) == .keepAlive(complete: true))
        #expect(m.isIdle && m.responseEnded && m.requestEnded)
        #expect(m.tick(now: t(62), readsHeld: false) == .close)
    }

    // MARK: Closing

    @Test func aClientThatAsksToCloseGetsClosedWithoutLingering() {
        var m = machine()
        m.requestStarted(now: t(0), clientKeepAlive: false, lastAllowed: false, maxBodyBytes: 0)
        #expect(m.requestEndReceived(now: t(0)) == .hold)
        m.localResponseStarted()
        #expect(m.connectionField(http10: false, requestHasBody: false) == .close)
        #expect(m.responseEnded(now: t(0)) == .closeAfterFlush)
        #expect(m.isEnding)
        #expect(m.lastResponseFlushed(now: t(0), success: true, bytesPending: false) == .close)
    }

    @Test func aCloseTheClientDidNotAskForLingersThenCloses() {
        var m = machine()
        m.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: true, maxBodyBytes: 0)  // request limit
        #expect(m.requestEndReceived(now: t(0)) == .hold)
        m.localResponseStarted()
        #expect(m.responseEnded(now: t(0)) == .closeAfterFlush)
        #expect(m.tick(now: t(29), readsHeld: false) == .none)
        #expect(m.lastResponseFlushed(now: t(1), success: true, bytesPending: false) == .linger)
        #expect(m.isLingering && m.parseErrorAction() == .ignore)
        #expect(m.mayRead(queueHasRoom: false, upstreamWritable: false, holdHasRoom: false))  // read and dropped
        #expect(m.tick(now: t(5.9), readsHeld: false) == .none)
        #expect(m.tick(now: t(6), readsHeld: false) == .close)
    }

    @Test func aLastResponseThatDoesNotDrainIsCutOff() {
        var m = machine()
        m.requestStarted(now: t(0), clientKeepAlive: false, lastAllowed: false, maxBodyBytes: 0)
        _ = m.requestEndReceived(now: t(0))
        m.localResponseStarted()
        #expect(m.responseEnded(now: t(0)) == .closeAfterFlush)
        #expect(m.tick(now: t(30), readsHeld: false) == .close)
    }

    @Test func anUnfinishedRequestOrPendingBytesMakeTheCloseLinger() {
        var m = machine()
        m.requestStarted(now: t(0), clientKeepAlive: false, lastAllowed: false, maxBodyBytes: 0)
        m.localResponseStarted()  // answered before the body ended
        #expect(m.responseEnded(now: t(0)) == .closeAfterFlush)
        #expect(!m.requestEnded)
        #expect(m.lastResponseFlushed(now: t(0), success: true, bytesPending: false) == .linger)

        var p = machine()
        p.requestStarted(now: t(0), clientKeepAlive: false, lastAllowed: false, maxBodyBytes: 0)
        _ = p.requestEndReceived(now: t(0))
        p.localResponseStarted()
        _ = p.responseEnded(now: t(0))
        #expect(p.lastResponseFlushed(now: t(0), success: true, bytesPending: true) == .linger)

        var failed = machine()
        failed.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: true, maxBodyBytes: 0)
        failed.localResponseStarted()
        _ = failed.responseEnded(now: t(0))
        #expect(failed.lastResponseFlushed(now: t(0), success: false, bytesPending: true) == .close)
    }

    @Test func aHalfClosedClientIsNotLingeredFor() {
        var m = machine()
        m.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 0)
        _ = m.requestEndReceived(now: t(0))
        #expect(m.inputClosed() == false)  // the exchange finishes first
        m.localResponseStarted()
        #expect(m.connectionField(http10: false, requestHasBody: false) == .close)
        #expect(m.responseEnded(now: t(0)) == .closeAfterFlush)
        #expect(m.lastResponseFlushed(now: t(0), success: true, bytesPending: true) == .close)

        var idle = machine()
        #expect(idle.inputClosed() == true)
    }

    @Test func quiesceClosesIdleConnectionsAndLetsExchangesFinish() {
        var idle = machine()
        #expect(idle.quiesce() == true)
        var busy = machine()
        forwarded(&busy)
        #expect(busy.quiesce() == false)
        busy.upstreamResponseStarted(now: t(0))
        #expect(busy.connectionField(http10: false, requestHasBody: false) == .close)
        busy.upstreamResponseEnded()
        #expect(busy.responseEnded(now: t(1)) == .closeAfterFlush)
    }

    @Test func anAnswerBeforeTheBodyEndedDropsTheBodyThenFinishes() {
        var m = machine()
        m.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 0)
        m.localResponseStarted()  // a filter answered
        #expect(m.responseEnded(now: t(0)) == .keepAlive(complete: false))
        #expect(m.stage == .answered && m.responseEnded && !m.requestEnded)
        #expect(m.mayRead(queueHasRoom: false, upstreamWritable: false, holdHasRoom: false))
        #expect(m.requestBodyReceived(100) == .discard)
        #expect(m.requestEndReceived(now: t(1)) == .finish)
        #expect(m.isIdle)
    }

    @Test func aDroppedBodyOnAClosingConnectionClosesAtItsEnd() {
        var m = machine()
        m.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 0)
        m.localResponseStarted()
        #expect(m.responseEnded(now: t(0)) == .keepAlive(complete: false))
        #expect(m.quiesce() == false)
        #expect(m.requestEndReceived(now: t(1)) == .finishAndClose)
        #expect(m.isEnding)
        #expect(m.lastResponseFlushed(now: t(1), success: true, bytesPending: false) == .linger)  // it did not ask
        var h2 = machine(.http2)
        h2.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 0)
        h2.localResponseStarted()
        #expect(h2.responseEnded(now: t(0)) == .endStreamThenReset)
        #expect(h2.quiesce() == false)
        #expect(h2.requestEndReceived(now: t(1)) == .finish)  // the stream's reset closes it
    }

    @Test func requestPartsBehindALastResponseAreDropped() {
        var m = machine()
        m.requestStarted(now: t(0), clientKeepAlive: false, lastAllowed: false, maxBodyBytes: 0)
        m.localResponseStarted()
        #expect(m.responseEnded(now: t(0)) == .closeAfterFlush)
        #expect(m.requestBodyReceived(10) == .discard)
        #expect(m.requestEndReceived(now: t(0)) == .discard)
    }

    @Test func anEarlyUpstreamAnswerClosesTheConnectionAfterIt() {
        var m = machine()
        forwarded(&m, ended: false)
        m.upstreamResponseStarted(now: t(1))  // a 413 before the body ended
        m.upstreamResponseEnded()
        #expect(m.closesAfterExchange)
        #expect(m.responseEnded(now: t(1)) == .closeAfterFlush)
        #expect(m.lastResponseFlushed(now: t(1), success: true, bytesPending: false) == .linger)
    }

    @Test func anUpstreamAnswerToABodilessRequestBeforeItsEndSaysClose() {
        var m = machine()
        forwarded(&m, ended: false)
        m.upstreamResponseStarted(now: t(0))
        #expect(m.connectionField(http10: false, requestHasBody: false) == .close)
        #expect(m.connectionField(http10: false, requestHasBody: true) == .none)
        // Portico's own answers come from the head, before the end is read: the connection stays.
        var local = machine()
        local.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 0)
        local.localResponseStarted()
        #expect(local.connectionField(http10: false, requestHasBody: false) == .none)
        #expect(local.connectionField(http10: true, requestHasBody: false) == .keepAlive)
    }

    @Test func aTunnelHasNoHTTPDeadlines() {
        var m = machine()
        forwarded(&m)
        m.upstreamResponseStarted(now: t(0))  // the 101
        m.tunnelStarted()
        #expect(m.tick(now: t(10_000), readsHeld: false) == .none)
        #expect(m.parseErrorAction() == .ignore)
    }

    // MARK: Request body

    @Test func bodyPartsAreHeldWhileRoutingAndForwardedOnceAttached() {
        var m = machine()
        m.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 0)
        #expect(m.requestBodyReceived(10) == .hold)
        #expect(m.mayRead(queueHasRoom: true, upstreamWritable: false, holdHasRoom: false) == false)
        #expect(m.mayRead(queueHasRoom: true, upstreamWritable: false, holdHasRoom: true))
        m.upstreamConnecting()
        #expect(m.requestBodyReceived(10) == .hold)
        m.upstreamAttached(now: t(1), responseHeadTimeout: .seconds(30), readTimeout: .seconds(40))
        #expect(m.requestBodyReceived(10) == .forward)
        #expect(m.mayRead(queueHasRoom: true, upstreamWritable: false, holdHasRoom: true) == false)  // backpressure
        #expect(m.mayRead(queueHasRoom: false, upstreamWritable: true, holdHasRoom: false))
        #expect(m.requestEndReceived(now: t(2)) == .forward)
        #expect(m.mayRead(queueHasRoom: false, upstreamWritable: true, holdHasRoom: true) == false)  // pipelining bound
    }

    @Test func theBodyLimitAnswers413OrClosesAnAnsweredConnection() {
        var m = machine()
        m.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 100)
        m.limitRequestBody(to: 50)
        #expect(m.requestBodyReceived(50) == .hold)
        #expect(m.requestBodyReceived(1) == .rejectTooLarge)

        var answered = machine()
        answered.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 10)
        answered.localResponseStarted()
        _ = answered.responseEnded(now: t(0))
        #expect(answered.requestBodyReceived(11) == .closeConnection)
        #expect(answered.requestBodyReceived(11) == .discard)  // already closing

        // An HTTP/2 stream answered early is reset once its answer is out: its body is dropped until then.
        var h2 = machine(.http2)
        h2.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 10)
        h2.localResponseStarted()
        #expect(h2.responseEnded(now: t(0)) == .endStreamThenReset)
        #expect(h2.requestBodyReceived(11) == .discard)
    }

    @Test func aSilentBodyTimesOutAndActivityPushesTheDeadline() {
        var m = machine()
        m.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 0)
        #expect(m.tick(now: t(19), readsHeld: false) == .none)
        _ = m.requestBodyReceived(1)
        #expect(m.tick(now: t(19.5), readsHeld: false) == .none)  // pushed to 39.5
        #expect(m.tick(now: t(39), readsHeld: false) == .none)
        #expect(m.tick(now: t(39.5), readsHeld: false) == .requestBodyTimeout(tooSlow: false, responseStarted: false))
        #expect(m.tick(now: t(100), readsHeld: false) == .none)  // fired once
    }

    @Test func heldReadsAreNotTheClientsSilence() {
        var m = machine()
        m.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 0)
        for s in stride(from: 1.0, through: 100, by: 1) {
            #expect(m.tick(now: t(s), readsHeld: true) == .none)
        }
        #expect(m.tick(now: t(120), readsHeld: false) == .requestBodyTimeout(tooSlow: false, responseStarted: false))
    }

    @Test func aBodyBelowTheMinimumRateIsCutOffAfterTheGrace() {
        var m = machine(minBodyRate: 1000)
        m.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 0)
        var now = 0.0
        var action = ExchangeStateMachine.TickAction.none
        while action == .none && now < 30 {
            now += 0.5
            _ = m.requestBodyReceived(100)  // 200 bytes/s
            action = m.tick(now: t(now), readsHeld: false)
        }
        #expect(action == .requestBodyTimeout(tooSlow: true, responseStarted: false))
        #expect(now > 5 && now < 6.5)  // just after the 5 s grace

        var fast = machine(minBodyRate: 1000)
        fast.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 0)
        for s in stride(from: 0.5, through: 30, by: 0.5) {
            _ = fast.requestBodyReceived(1000)
            #expect(fast.tick(now: t(s), readsHeld: false) == .none)
        }
    }

    @Test func aBodyStillOwedAfterALocalAnswerIsTimedButNotDuringARelayedResponse() {
        var m = machine()
        forwarded(&m, ended: false)
        m.upstreamResponseStarted(now: t(1))  // a bidirectional stream
        #expect(m.tick(now: t(25), readsHeld: false) == .none)
        var local = machine()
        local.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 0)
        local.localResponseStarted()
        #expect(local.tick(now: t(20), readsHeld: false) == .requestBodyTimeout(tooSlow: false, responseStarted: true))
    }

    // MARK: Upstream

    @Test func theResponseHeadIsDueFromTheEndOfTheRequestBody() {
        var m = machine()
        forwarded(&m, ended: false)
        _ = m.requestBodyReceived(1)
        #expect(m.tick(now: t(15), readsHeld: false) == .none)  // a slow upload is not the upstream's fault
        _ = m.requestBodyReceived(1)
        #expect(m.requestEndReceived(now: t(30)) == .forward)
        #expect(m.tick(now: t(59.9), readsHeld: false) == .none)
        #expect(m.tick(now: t(60), readsHeld: false) == .upstreamTimeout(responseStarted: false))
    }

    @Test func anUpstreamThatStopsTakingTheBodyHasTheResponseHeadTimeout() {
        var m = machine()
        forwarded(&m, ended: false)
        #expect(m.tick(now: t(1), readsHeld: true) == .none)  // the response-head clock starts: 31
        m.readsResumed()  // it took the body again: no response due
        _ = m.requestBodyReceived(1)
        #expect(m.tick(now: t(15), readsHeld: false) == .none)
        #expect(m.tick(now: t(16), readsHeld: true) == .none)  // stopped again: 46
        #expect(m.tick(now: t(45.9), readsHeld: true) == .none)
        #expect(m.tick(now: t(46), readsHeld: true) == .upstreamTimeout(responseStarted: false))
    }

    @Test func upstreamActivityPushesTheReadDeadline() {
        var m = machine()
        forwarded(&m)
        m.upstreamActivity()
        m.upstreamResponseStarted(now: t(1))  // read deadline 41
        #expect(m.tick(now: t(2), readsHeld: false) == .none)  // activity: pushed to 42
        #expect(m.tick(now: t(41.5), readsHeld: false) == .none)
        m.upstreamActivity()
        #expect(m.tick(now: t(41.9), readsHeld: false) == .none)  // pushed to 81.9
        #expect(m.tick(now: t(81.8), readsHeld: false) == .none)
        #expect(m.tick(now: t(81.9), readsHeld: false) == .upstreamTimeout(responseStarted: true))
    }

    @Test func aFailedTryCanBeRetriedAndAttachedAgain() {
        var m = machine()
        forwarded(&m)
        m.upstreamFailed()
        #expect(m.stage == .connecting)
        #expect(m.tick(now: t(100), readsHeld: false) == .none)  // no upstream clock while retrying
        m.retryStarted()
        #expect(m.stage == .routing)
        m.upstreamAttached(now: t(101), responseHeadTimeout: .seconds(5), readTimeout: .seconds(5))
        #expect(m.tick(now: t(106), readsHeld: false) == .upstreamTimeout(responseStarted: false))
    }

    @Test func aSlowClientIsNeverAnUpstreamTimeout() {
        var m = machine()
        forwarded(&m, ended: false)
        #expect(m.tick(now: t(1), readsHeld: true) == .none)  // response-head clock from the held reads: 31
        #expect(m.tick(now: t(2), readsHeld: false) == .none)
        #expect(m.tick(now: t(22), readsHeld: false) == .requestBodyTimeout(tooSlow: false, responseStarted: false))
        m.localResponseStarted()
        #expect(m.tick(now: t(40), readsHeld: false) == .none)
    }

    // MARK: Streamed answers

    @Test func aStreamedAnswerWhoseClientStopsReadingIsCutOff() {
        var m = machine()
        m.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 0)
        _ = m.requestEndReceived(now: t(0))
        m.localResponseStarted()
        m.answerStream(blocked: true, now: t(1))
        #expect(m.tick(now: t(30), readsHeld: false) == .none)
        m.answerStream(blocked: false, now: t(30))
        #expect(m.tick(now: t(100), readsHeld: false) == .none)
        m.answerStream(blocked: true, now: t(100))
        #expect(m.tick(now: t(131), readsHeld: false) == .sendTimeout)
    }

    // MARK: Parse errors and pipelining

    @Test func parseErrorsAbortTheRequestInFlightOrWaitBehindAnswers() {
        var m = machine()
        m.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 0)
        #expect(m.parseErrorAction() == .abort)  // a bad chunk mid-body
        _ = m.requestEndReceived(now: t(0))
        #expect(m.parseErrorAction() == .deferred)  // behind the request still being answered
        var answered = machine()
        answered.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 0)
        answered.localResponseStarted()
        _ = answered.responseEnded(now: t(0))
        #expect(answered.parseErrorAction() == .deferred)
    }

    // MARK: HTTP/2

    @Test func anHTTP2StreamEndsWithItsResponse() {
        var m = machine(.http2)
        forwarded(&m)
        m.upstreamResponseStarted(now: t(1))
        #expect(m.connectionField(http10: false, requestHasBody: false) == .none)
        m.upstreamResponseEnded()
        #expect(m.responseEnded(now: t(1)) == .endStream)
    }

    @Test func anHTTP2StreamAnsweredBeforeItsRequestEndedIsReset() {
        var m = machine(.http2)
        m.requestStarted(now: t(0), clientKeepAlive: true, lastAllowed: false, maxBodyBytes: 0)
        m.localResponseStarted()
        #expect(m.quiesce() == false)
        #expect(m.connectionField(http10: false, requestHasBody: true) == .none)  // even when closing
        #expect(m.responseEnded(now: t(0)) == .endStreamThenReset)
    }

    @Test func aHeldHTTP2RequestHasTheRequestHeadTimeout() {
        var m = machine(.http2)
        m.requestHeld(now: t(1))
        #expect(m.tick(now: t(11), readsHeld: false) == .requestHeadTimeout)
    }

    // MARK: Random walks

    /// Thousands of random event sequences, each event one the handler can send in the state it is in (the guards
    /// `ProxyHandler` has before each call), on a clock that moves at random: no assertion fires (a debug build
    /// would crash the run), and the answers stay consistent with each other after every step.
    @Test func randomWalksKeepTheInvariants() {
        var rng = SplitMix64(seed: 0x5eed)
        for walk in 0..<3000 {
            let proto: ExchangeProtocol = walk % 3 == 0 ? .http2 : .http1
            var m = machine(proto, minBodyRate: walk % 2 == 0 ? 0 : 500)
            var now = 0.0
            var closed = false
            for _ in 0..<60 where !closed {
                now += Double(rng.next() % 4000) / 1000  // 0 to 4 s
                let pick = Int(rng.next() % 100)
                closed = step(&m, pick: pick, now: t(now), rng: &rng)
                checkInvariants(m)
            }
        }
    }

    /// One event chosen by `pick` among those legal now; true when the connection closed.
    private func step(_ m: inout ExchangeStateMachine, pick: Int, now: NIODeadline, rng: inout SplitMix64) -> Bool {
        if pick < 15 {
            switch m.tick(now: now, readsHeld: rng.next() % 4 == 0) {
            case .close, .sendTimeout:
                m.connectionClosed()
                return true
            case .requestHeadTimeout:
                // Answered as a request of its own (`respondWithError(exchange: nil)`).
                m.requestStarted(now: now, clientKeepAlive: true, lastAllowed: true, maxBodyBytes: 0)
                m.localResponseStarted()
                return self.endResponse(&m, now: now, rng: &rng)
            case .requestBodyTimeout(_, let responseStarted), .upstreamTimeout(let responseStarted):
                if responseStarted {
                    m.connectionClosed()
                    return true
                }
                m.closeAfterExchange()
                m.localResponseStarted()
                return self.endResponse(&m, now: now, rng: &rng)
            case .none:
                return false
            }
        }
        if m.isEnding {
            if m.isLingering {
                if pick < 50, m.inputClosed() {
                    m.connectionClosed()
                    return true
                }
                return false
            }
            switch m.lastResponseFlushed(now: now, success: rng.next() % 8 != 0, bytesPending: rng.next() % 2 == 0) {
            case .close:
                m.connectionClosed()
                return true
            case .linger:
                return false
            }
        }
        guard let stage = m.stage else {
            // Between exchanges.
            switch pick {
            case 15..<25: m.readBatchEnded(now: now, partialHead: rng.next() % 2 == 0)
            case 25..<28:
                if m.quiesce() {
                    m.connectionClosed()
                    return true
                }
            case 28..<30:
                if m.inputClosed() {
                    m.connectionClosed()
                    return true
                }
            default:
                m.requestStarted(now: now, clientKeepAlive: rng.next() % 5 != 0, lastAllowed: rng.next() % 7 == 0, maxBodyBytes: rng.next() % 3 == 0 ? 1000 : 0)
            }
            return false
        }
        // An exchange in flight: request events while its request is arriving, response events by stage.
        if !m.requestEnded && pick < 45 {
            let action = pick < 35 ? m.requestBodyReceived(Int(rng.next() % 600)) : m.requestEndReceived(now: now)
            switch action {
            case .hold, .forward, .discard, .finish: return false
            case .finishAndClose, .closeConnection:
                m.connectionClosed()
                return true
            case .rejectTooLarge:
                if m.responseStarted {
                    m.connectionClosed()
                    return true
                }
                m.closeAfterExchange()
                m.localResponseStarted()
                return self.endResponse(&m, now: now, rng: &rng)
            }
        }
        switch stage {
        case .routing:
            if pick < 60 { m.upstreamConnecting() } else if pick < 80 {
                m.upstreamAttached(now: now, responseHeadTimeout: .seconds(Int64(1 + rng.next() % 30)), readTimeout: .seconds(Int64(1 + rng.next() % 30)))
            } else {
                m.localResponseStarted()
            }
        case .connecting:
            if pick < 50 {
                m.upstreamAttached(now: now, responseHeadTimeout: .seconds(Int64(1 + rng.next() % 30)), readTimeout: .seconds(Int64(1 + rng.next() % 30)))
            } else if pick < 70 {
                m.retryStarted()
            } else {
                m.localResponseStarted()  // no host, queue timeout, overflow
            }
        case .forwarding:
            if pick < 55 {
                m.upstreamActivity()
                m.upstreamResponseStarted(now: now)
            } else if pick < 70 {
                m.upstreamFailed()
            } else if pick < 80 {
                m.readsResumed()
            } else {
                m.localResponseStarted()  // a retry's answer after the upstream failed
            }
        case .relaying:
            if pick < 70 {
                m.upstreamActivity()
            } else {
                m.upstreamResponseEnded()
                return self.endResponse(&m, now: now, rng: &rng)
            }
        case .answering:
            if pick < 40 {
                m.answerStream(blocked: rng.next() % 2 == 0, now: now)
            } else {
                return self.endResponse(&m, now: now, rng: &rng)
            }
        case .answered:
            if pick < 60 {
                _ = m.quiesce()
            } else {
                _ = m.inputClosed()
            }
        }
        return false
    }

    private func endResponse(_ m: inout ExchangeStateMachine, now: NIODeadline, rng: inout SplitMix64) -> Bool {
        switch m.responseEnded(now: now) {
        case .keepAlive, .closeAfterFlush, .endStream:
            return false
        case .endStreamThenReset:
            if rng.next() % 2 == 0 {
                m.connectionClosed()  // the reset closed the stream
                return true
            }
            return false
        }
    }

    private func checkInvariants(_ m: ExchangeStateMachine) {
        #expect(!m.responseEnded || m.responseStarted)
        if m.isEnding {
            #expect(m.stage == nil)
            #expect(m.mayRead(queueHasRoom: false, upstreamWritable: false, holdHasRoom: false))
            #expect(m.parseErrorAction() == .ignore)
        }
        if m.isIdle {
            #expect(m.stage == nil && m.requestEnded && m.responseEnded)
            #expect(m.parseErrorAction() == .respond)
        }
        if let stage = m.stage {
            #expect(!m.isIdle && !m.isEnding)
            #expect(stage.responseStarted == m.responseStarted)
            #expect(m.responseEnded == (stage == .answered))
        }
        if m.proto == .http2 {
            #expect(m.connectionField(http10: true, requestHasBody: false) == .none)
            #expect(!m.isEnding)
        }
    }
}
