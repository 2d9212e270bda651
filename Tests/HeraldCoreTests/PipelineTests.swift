import Foundation
import HeraldTesting
import Logging
import ServiceLifecycle
import Synchronization
import Testing
@testable import HeraldCore

/// The pipeline with real parts (config, journal, bus, dispatchers) and recording notifiers.
struct Harness {
    let pipeline: Pipeline
    let log: DeliveryLog
    let secret = "test-secret"

    init(_ notifiers: String, routes: String = "  - { events: [\"*\"], notify: [fast, slow] }", extra: String = "",
         journal: (any Journal)? = nil, logger: Logger = Logger(label: "herald")) async throws {
        let shared = SharedResources()
        let yaml = """
            storage: { memory: true \(extra) }
            endpoints: [{ path: /hooks/jicoo, secrets: [\(secret)] }]
            notifiers:
            \(notifiers)
            routes:
            \(routes)
            """
        let config = try ConfigLoader.testing(shared: shared).load(yaml: yaml)
        log = shared.get(DeliveryLog.self) { DeliveryLog() }
        pipeline = try await Pipeline(config: config, journal: journal ?? MemoryJournal(), logger: logger, shutdownGrace: .seconds(2))
    }

    /// A signed request with the sample event `name`, its text changed by `edit`.
    func signed(_ name: String, now: Date = Date(), edit: (String) -> String = { $0 }) throws -> (Data, (String) -> String?) {
        let body = Data(edit(String(decoding: try Fixtures.eventBody(name), as: UTF8.self)).utf8)
        let h = JicooSignature(secrets: [Secret(secret)]).sign(body: body, timestamp: Int64(now.timeIntervalSince1970), id: "")
        return (body, headers([h[0].name: h[0].value]))
    }

    /// Runs the dispatchers while `body` runs, then shuts them down gracefully.
    func running(_ body: () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            let services = pipeline.dispatchers.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) }
            let serviceGroup = ServiceGroup(configuration: .init(services: services, logger: Logger(label: "test")))
            group.addTask { try await serviceGroup.run() }
            try await body()
            await serviceGroup.triggerGracefulShutdown()
            try await group.waitForAll()
        }
    }
}

/// Set once something has finished, read from another task.
final class StopFlag: Sendable {
    let value = Atomic<Bool>(false)
}

/// Whether `condition` holds within `timeout`, checked every 20 ms. The timeout only bounds
/// a failing test: a debug build on a loaded, shared machine has needed more than 10 s for
/// what takes 2 s alone.
func waitUntil(_ timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

@Suite("Pipeline, bus and dispatcher")
struct PipelineTests {
    @Test func acceptedEventReachesEveryRoutedNotifier() async throws {
        let h = try await Harness("""
              fast: { kind: recording, label: fast }
              slow: { kind: recording, label: slow }
            """)
        try await h.running { () async throws in
            let (body, hdr) = try h.signed("guest_booked")
            let outcome = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr)
            guard case .accepted(let id, 2) = outcome else { Issue.record("unexpected \(outcome)"); return }
            #expect(try await waitUntil { h.log.count("fast") == 1 && h.log.count("slow") == 1 })
            let n = try #require(h.log.entries.withLock { $0.first })
            #expect(n.notification.event.id == id)
            #expect(n.notification.deliveryKey == "\(id).\(n.notifier)")
            #expect(n.notification.title.hasPrefix("New booking"))
        }
        #expect(h.pipeline.undeliveredCount == 0)
    }

    @Test func rejectionsAndDuplicates() async throws {
        let h = try await Harness("  fast: { kind: recording, label: fast }\n  slow: { kind: recording, label: slow }")
        let (body, hdr) = try h.signed("guest_booked")
        #expect(await h.pipeline.receive(path: "/hooks/jicoo", body: body + Data(" ".utf8), header: hdr) == .rejected(.signatureMismatch))
        #expect(await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: headers([:])) == .rejected(.missingHeader))
        let old = try h.signed("guest_booked", now: Date().addingTimeInterval(-600))
        #expect(await h.pipeline.receive(path: "/hooks/jicoo", body: old.0, header: old.1) == .rejected(.timestampOutsideTolerance))
        #expect(await h.pipeline.receive(path: "/nope", body: body, header: hdr) == .unknownEndpoint)
        let junk = Data("{oops".utf8)
        let junkHeader = JicooSignature(secrets: [Secret(h.secret)]).sign(body: junk, timestamp: Int64(Date().timeIntervalSince1970), id: "")[0]
        guard case .malformed = await h.pipeline.receive(path: "/hooks/jicoo", body: junk, header: headers([junkHeader.name: junkHeader.value])) else {
            Issue.record("malformed JSON must be refused"); return
        }
        guard case .accepted(let first, _) = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr) else {
            Issue.record("expected accepted"); return
        }
        #expect(await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr) == .duplicate(eventID: first))
    }

    /// A booking in a zone that does not exist is accepted and shown in UTC; the log says so
    /// once per zone, however many events name it.
    @Test func unknownTimeZoneIsWarnedAboutOncePerZone() async throws {
        let lines = LogCapture()
        let h = try await Harness("  fast: { kind: recording, label: fast }\n  slow: { kind: recording, label: slow }",
                                  logger: Logger(label: "herald") { _ in lines })
        for (i, zone) in ["Mars/Base", "Mars/Base", "", "Mars/Base", "Asia/Tokyo"].enumerated() {
            let (body, hdr) = try h.signed("guest_booked") {
                $0.replacingOccurrences(of: "\"Asia/Tokyo\"", with: "\"\(zone)\"").replacingOccurrences(of: "bk_7Qx2mZp9", with: "bk_\(i)")
            }
            guard case .accepted = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr) else {
                Issue.record("an unknown zone must not cost the event"); return
            }
        }
        let warnings = lines.messages.filter { $0.contains("time zone") }
        #expect(warnings == [
            #"booking time zone "Mars/Base" is not a known IANA time zone; its times are shown in UTC"#,
            #"booking time zone "" is not a known IANA time zone; its times are shown in UTC"#,
        ])
    }

    /// A notifier that takes 30 s per delivery must not hold back one that is fast, and
    /// shutdown waits only the grace period (2 s here) for it.
    @Test func slowNotifierDoesNotDelayOthers() async throws {
        let h = try await Harness("""
              fast: { kind: recording, label: fast, concurrency: 1 }
              slow: { kind: recording, label: slow, concurrency: 1 }
            """)
        h.log.delays.withLock { $0["slow"] = .seconds(30) }
        let began = ContinuousClock.now
        try await h.running { () async throws in
            for name in ["guest_booked", "guest_cancelled", "guest_rescheduled", "host_cancelled", "host_rescheduled"] {
                let (body, hdr) = try h.signed(name)
                guard case .accepted = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr) else {
                    Issue.record("not accepted"); return
                }
            }
            #expect(try await waitUntil(.seconds(20)) { h.log.count("fast") == 5 })
            #expect(h.log.count("slow") == 0)
        }
        #expect(h.log.count("slow") == 0)
        #expect(ContinuousClock.now - began < .seconds(25), "shutdown must not wait for the 30 s delivery")
        // The one in the plugin was interrupted (one attempt); the four claimed but waiting for
        // its slot were released untouched. All five are pending for the next start.
        let slow = try await h.pipeline.journal.deliveries(DeliveryQuery(state: nil, notifier: "slow", limit: 10))
        #expect(slow.count == 5 && slow.allSatisfy { $0.state == .pending })
        #expect(slow.map(\.attempts).sorted() == [0, 0, 0, 0, 1])
    }

    /// A burst of deliveries runs at most `concurrency` at once, each slot going on with the
    /// deliveries queued behind it, and with `concurrency: 1` in the order they were accepted.
    @Test func aBurstRunsWithinConcurrencyAndInOrder() async throws {
        let h = try await Harness("""
              fast: { kind: recording, label: fast, concurrency: 1 }
              slow: { kind: recording, label: slow, concurrency: 2 }
            """)
        h.log.delays.withLock { $0["fast"] = .milliseconds(5); $0["slow"] = .milliseconds(40) }
        var accepted: [String] = []
        try await h.running { () async throws in
            for i in 0..<12 {
                let (body, hdr) = try h.signed("guest_booked") { $0.replacingOccurrences(of: "bk_7Qx2mZp9", with: "bk_burst\(i)") }
                guard case .accepted(let id, _) = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr) else {
                    Issue.record("not accepted"); return
                }
                accepted.append(id)
            }
            #expect(try await waitUntil { h.log.count("fast") == 12 && h.log.count("slow") == 12 })
        }
        let order = h.log.entries.withLock { $0.filter { $0.notifier == "fast" }.map(\.notification.deliveryKey) }
        #expect(order == accepted.map { HeraldNotification.deliveryKey(eventID: $0, notifier: "fast") })
        #expect(h.log.mostInFlight("fast") == 1)
        #expect(h.log.mostInFlight("slow") == 2)
    }

    /// An outcome the dispatcher waits for (a journal that does not call back) is written after
    /// its slot is given back: with `concurrency: 1` and the first outcome's write held up, the
    /// next delivery is attempted all the same.
    @Test func theNextAttemptDoesNotWaitForAnOutcomeWrite() async throws {
        let journal = GatedOutcomeJournal()
        let h = try await Harness("  fast: { kind: recording, label: fast, concurrency: 1 }",
                                  routes: "  - { events: [\"*\"], notify: [fast] }", journal: journal)
        try await h.running { () async throws in
            for i in 0..<2 {
                let (body, hdr) = try h.signed("guest_booked") { $0.replacingOccurrences(of: "bk_7Qx2mZp9", with: "bk_gate\(i)") }
                guard case .accepted = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr) else {
                    Issue.record("not accepted"); return
                }
            }
            #expect(try await waitUntil(.seconds(20)) { h.log.count("fast") == 2 })
            #expect(journal.waiting.withLock { $0 } >= 1, "the first outcome is still held at the gate")
            journal.open()
            #expect(try await waitUntil {
                try await journal.deliveries(DeliveryQuery(notifier: "fast")).filter { $0.state == .delivered }.count == 2
            })
        }
    }

    /// A fresh delivery is stored leased to the accepting instance, its first attempt counted,
    /// so the attempt costs one more write (its outcome) and no claim.
    @Test func acceptedDeliveriesAreLeasedToThisInstanceAndCostOneOutcomeWrite() async throws {
        let journal: any Journal = MemoryJournal()
        let h = try await Harness("  fast: { kind: recording, label: fast }", routes: "  - { events: [\"*\"], notify: [fast] }", journal: journal)
        let (body, hdr) = try h.signed("guest_booked")
        guard case .accepted = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr) else {
            Issue.record("not accepted"); return
        }
        let stored = try #require(try await journal.deliveries(DeliveryQuery(notifier: "fast")).first)
        #expect(stored.state == .leased && stored.owner == h.pipeline.owner && stored.attempts == 1)
        #expect(try await journal.lease(LeaseRequest(notifier: "fast", owner: "another", now: Date(), until: Date() + 60,
                                                     limit: 10, deadAfter: 3)).deliveries.isEmpty)
        try await h.running { () async throws in
            #expect(try await waitUntil { try await journal.delivery(id: stored.id)?.state == .delivered })
        }
        #expect(try await journal.delivery(id: stored.id)?.attempts == 1)
        #expect(h.log.count("fast") == 1)
    }

    /// The sweep looks in the journal when work comes due, not on a timer: idle, it leases
    /// once at start and then not again; a delivery stored for later (a retry) is leased
    /// when it is due; another process's `herald deliveries retry` wakes it at once.
    @Test func anIdleSweepLooksOnlyWhenWorkComesDue() async throws {
        let dir = Fixtures.tempDir()
        let journal = try SQLiteJournal(directory: dir, dedupeTTL: .seconds(3600))
        let h = try await Harness("""
              fast: { kind: recording, label: fast, retry: { initial: 100ms, factor: 2, max: 2s } }
            """, routes: "  - { events: [\"*\"], notify: [fast] }", journal: journal)
        h.log.failures.withLock { $0["fast"] = [.retryable("rate limited", after: .seconds(1))] }
        try await h.running { () async throws in
            // Each lease is a transaction of its own (a state commit) on an idle journal.
            #expect(try await waitUntil { journal.appendStatistics.stateCommits >= 1 })
            try await Task.sleep(for: .milliseconds(1500))
            let idle = journal.appendStatistics.stateCommits
            try await Task.sleep(for: .milliseconds(1500))
            #expect(journal.appendStatistics.stateCommits == idle)  // three sweeps before, at 500 ms
            let (body, hdr) = try h.signed("guest_booked")
            guard case .accepted = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr) else {
                Issue.record("not accepted"); return
            }
            // The first attempt fails; its retry is due a second later, and the sweep takes it
            // then, not at its safety net a lease time (60 s) later.
            #expect(try await waitUntil(.seconds(30)) { h.log.count("fast") == 1 })
            #expect(try await journal.deliveries(DeliveryQuery(notifier: "fast")).first?.attempts == 2)
        }
    }

    /// With SQLite, a delivered outcome is handed to the journal and the delivery's task ends;
    /// the journal's writer finishes the bookkeeping once it is committed. A dispatcher that
    /// stops still returns only after those outcomes are committed, so nothing delivered is
    /// left leased (and sent again after a restart).
    @Test func aStoppingDispatcherWaitsForTheOutcomesItHandedOver() async throws {
        let dir = Fixtures.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // An outcome waits for another write's transaction for up to an hour: here it waits
        // until the append below.
        let journal = try SQLiteJournal(directory: dir, dedupeTTL: .seconds(3600), outcomeWait: .seconds(3600))
        let h = try await Harness("  fast: { kind: recording, label: fast }", routes: "  - { events: [\"*\"], notify: [fast] }",
                                  journal: journal)
        let stopped = StopFlag()
        let id = try await withThrowingTaskGroup(of: Void.self) { group -> Int64 in
            let services = h.pipeline.dispatchers.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) }
            let serviceGroup = ServiceGroup(configuration: .init(services: services, logger: Logger(label: "test")))
            group.addTask {
                try await serviceGroup.run()
                stopped.value.store(true, ordering: .relaxed)
            }
            // The sweep's lease at start is a transaction that would carry a queued outcome
            // with it: the event comes once it is done (an idle sweep leases only then).
            #expect(try await waitUntil { journal.appendStatistics.stateCommits >= 1 }, "the sweep's first lease")
            let (body, hdr) = try h.signed("guest_booked")
            guard case .accepted = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr) else {
                Issue.record("not accepted"); return -1
            }
            let id = try #require(try await journal.deliveries(DeliveryQuery(notifier: "fast")).first?.id)
            #expect(try await waitUntil { h.log.count("fast") == 1 && journal.queuedWrites == 1 }, "delivered, its outcome queued")
            await serviceGroup.triggerGracefulShutdown()
            try await Task.sleep(for: .milliseconds(300))
            let stoppedEarly = stopped.value.load(ordering: .relaxed)
            #expect(!stoppedEarly, "the dispatcher stopped before its outcome was written")
            #expect(try await journal.delivery(id: id)?.state == .leased)
            // Another event's append: the outcome rides in its transaction.
            let (other, otherHeader) = try h.signed("guest_cancelled")
            guard case .accepted = await h.pipeline.receive(path: "/hooks/jicoo", body: other, header: otherHeader) else {
                Issue.record("not accepted"); return id
            }
            try await group.waitForAll()
            return id
        }
        let stoppedAtLast = stopped.value.load(ordering: .relaxed)
        #expect(stoppedAtLast)
        #expect(try await journal.delivery(id: id)?.state == .delivered)
        #expect(h.pipeline.undeliveredCount == 1, "the first is final, the second waits for the next start")
    }

    @Test func fullQueueIsReportedAndTheJournalCatchesUp() async throws {
        let journal: any Journal = MemoryJournal()
        let h = try await Harness("  fast: { kind: recording, label: fast }", routes: "  - { events: [\"*\"], notify: [fast] }", journal: journal)
        // Before the dispatcher runs, its queue (capacity 256) fills; the rest waits in the
        // journal, several times the queue's size, so the sweep has to come back for more.
        let event = try Fixtures.event("guest_booked")
        for i in 0..<1030 {
            let event = Event(id: "evt_\(i)", endpoint: event.endpoint, source: event.source, name: event.name,
                              receivedAt: event.receivedAt, occurredAt: event.occurredAt, booking: event.booking,
                              payload: event.payload, body: event.body)
            // As the pipeline does: a place in the queue first, then the append, leased if placed.
            let reserved = h.pipeline.bus.reserve(["fast"])
            #expect(reserved.notifiers == (i < 256 ? ["fast"] : []))
            let r = try await journal.append(JournalEntry(event: event, dedupeKey: "k\(i)", notifiers: ["fast"],
                                                          lease: Lease(owner: h.pipeline.owner, until: Date() + 60),
                                                          leased: reserved.notifiers))
            guard case .accepted(let ids) = r else { continue }
            h.pipeline.bus.publish(event, deliveries: ids, reserved: reserved)
        }
        try await h.running { () async throws in
            #expect(try await waitUntil { h.log.count("fast") == 1030 })
        }
        #expect(try await journal.undeliveredCount() == 0)
    }

    @Test func retryableFailuresAreRetriedAndRetryAfterWins() async throws {
        let journal: any Journal = MemoryJournal()
        let h = try await Harness("""
              fast: { kind: recording, label: fast, retry: { initial: 100ms, factor: 2, max: 1s } }
            """, routes: "  - { events: [\"*\"], notify: [fast] }", journal: journal)
        h.log.failures.withLock { $0["fast"] = [.retryable("busy"), .retryable("rate limited", after: .seconds(1))] }
        try await h.running { () async throws in
            let (body, hdr) = try h.signed("guest_booked")
            let started = ContinuousClock.now
            _ = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr)
            #expect(try await waitUntil { try await journal.deliveries(DeliveryQuery(state: .delivered, notifier: "fast", limit: 1)).count == 1 })
            #expect(h.log.count("fast") == 1)
            #expect(ContinuousClock.now - started >= .seconds(1))
            let record = try #require(try await journal.deliveries(DeliveryQuery(state: nil, notifier: "fast", limit: 1)).first)
            #expect(record.state == .delivered)
            #expect(record.attempts == 3)
            #expect(h.log.entries.withLock { $0.first?.notification.attempt } == 3)
        }
    }

    @Test func permanentFailureIsDeadAndCanBeRetried() async throws {
        let journal: any Journal = MemoryJournal()
        // The memory journal tells no dispatcher of a retry: the sweep finds it within a lease
        // time, here 2 s (60 s by default, which was most of the suite's run time).
        let h = try await Harness("  fast: { kind: recording, label: fast }", routes: "  - { events: [\"*\"], notify: [fast] }",
                                  extra: ", leaseTime: 2s", journal: journal)
        h.log.failures.withLock { $0["fast"] = [.permanent("400 bad request")] }
        try await h.running { () async throws in
            let (body, hdr) = try h.signed("guest_booked")
            _ = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr)
            #expect(try await waitUntil { try await journal.deliveries(DeliveryQuery(state: .dead, notifier: nil, limit: 5)).count == 1 })
            let dead = try await journal.deliveries(DeliveryQuery(state: .dead, notifier: nil, limit: 5))[0]
            #expect(dead.lastError == "permanent: 400 bad request")
            #expect(h.log.count("fast") == 0)
            #expect(try await journal.retry(.allDead) == 1)
            #expect(try await waitUntil { h.log.count("fast") == 1 })
        }
    }

    /// A retry that the sweep takes the moment it is written, before the failed attempt's task
    /// has finished, is attempted at once. (The queue used to hold the delivery until that task
    /// ended, so the sweep's offer was refused as queued already and the retry waited out the
    /// lease it had just been given (60 s by default): CI saw one of three mails wait.)
    @Test func aRetryTakenTheMomentItIsWrittenIsAttempted() async throws {
        let journal = RetryRacingJournal()
        // A lease far longer than the test waits: a retry left waiting for it cannot pass.
        let h = try await Harness("  fast: { kind: recording, label: fast, retry: { initial: 10ms } }",
                                  routes: "  - { events: [\"*\"], notify: [fast] }", extra: ", leaseTime: 600s",
                                  journal: journal)
        journal.bus.withLock { $0 = h.pipeline.bus }
        h.log.failures.withLock { $0["fast"] = [.retryable("down")] }
        try await h.running { () async throws in
            let (body, hdr) = try h.signed("guest_booked")
            _ = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr)
            #expect(try await waitUntil { h.log.count("fast") == 1 })
            // The race happened: the sweep leased the retry while its write had not returned.
            #expect(try await waitUntil { journal.takenWhileWriting.withLock { $0 } == 1 })
        }
    }

    @Test func timeoutCountsAsRetryable() async throws {
        let journal: any Journal = MemoryJournal()
        let h = try await Harness("  fast: { kind: recording, label: fast, timeout: 200ms, retry: { initial: 50ms } }",
                                  routes: "  - { events: [\"*\"], notify: [fast] }", journal: journal)
        h.log.delays.withLock { $0["fast"] = .seconds(30) }
        try await h.running { () async throws in
            let (body, hdr) = try h.signed("guest_booked")
            _ = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr)
            #expect(try await waitUntil {
                (try await journal.deliveries(DeliveryQuery(state: nil, notifier: "fast", limit: 1)).first?.lastError ?? "").contains("timed out")
            })
            h.log.delays.withLock { $0["fast"] = nil }
            #expect(try await waitUntil { h.log.count("fast") == 1 })
        }
    }

    /// A retryable failure past `giveUpAfter` is dead, with how many attempts were made.
    @Test func giveUpAfterMakesItDead() async throws {
        let journal: any Journal = MemoryJournal()
        let h = try await Harness("  fast: { kind: recording, label: fast, retry: { initial: 1s, giveUpAfter: 500ms } }",
                                  routes: "  - { events: [\"*\"], notify: [fast] }", journal: journal)
        h.log.failures.withLock { $0["fast"] = Array(repeating: .retryable("down", after: .seconds(3600)), count: 2) }
        try await h.running { () async throws in
            let (body, hdr) = try h.signed("guest_booked")
            _ = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr)
            #expect(try await waitUntil { try await journal.deliveries(DeliveryQuery(state: .dead, notifier: nil, limit: 1)).count == 1 })
            #expect(try await journal.deliveries(DeliveryQuery(state: .dead, notifier: nil, limit: 1))[0].lastError?.hasPrefix("gave up after") == true)
        }
    }

    /// When the next attempt is due, at fixed times: a `Retry-After` past the give-up time gets
    /// one last attempt at that time (not death after one answer); a backoff past it, or any
    /// failure at or after it, gives up.
    @Test func nextAttemptKeepsOneLastTryAtTheGiveUpTime() {
        let received = Date(timeIntervalSince1970: 1_800_000_000)
        let policy = RetryPolicy(initial: .seconds(10), giveUpAfter: .seconds(60), maxRetryAfter: .seconds(3600))
        let giveUpAt = received.addingTimeInterval(60)
        let soon = received.addingTimeInterval(5)
        #expect(policy.nextAttempt(afterFailure: 1, hint: .seconds(3600), now: soon, receivedAt: received) == giveUpAt)
        #expect(policy.nextAttempt(afterFailure: 2, hint: .seconds(3600), now: giveUpAt, receivedAt: received) == nil)
        #expect(policy.nextAttempt(afterFailure: 1, hint: .seconds(20), now: soon, receivedAt: received) == soon.addingTimeInterval(20))
        #expect(policy.nextAttempt(afterFailure: 1, hint: nil, now: soon, receivedAt: received, random: { $0.upperBound })
            == soon.addingTimeInterval(10))
        let late = received.addingTimeInterval(55)
        #expect(policy.nextAttempt(afterFailure: 3, hint: nil, now: late, receivedAt: received, random: { $0.upperBound }) == nil)
    }

    /// `Retry-After` is capped by `retry.maxRetryAfter` (1 h by default).
    @Test func retryAfterIsCappedByThePolicy() async throws {
        let journal: any Journal = MemoryJournal()
        let h = try await Harness("  fast: { kind: recording, label: fast, retry: { maxRetryAfter: 10m } }",
                                  routes: "  - { events: [\"*\"], notify: [fast] }", journal: journal)
        h.log.failures.withLock { $0["fast"] = [.retryable("busy", after: .longest)] }
        try await h.running { () async throws in
            let (body, hdr) = try h.signed("guest_booked")
            _ = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr)
            #expect(try await waitUntil { try await journal.deliveries(DeliveryQuery(state: .pending, notifier: nil, limit: 1)).first?.lastError != nil })
            let next = try #require(try await journal.deliveries(DeliveryQuery(state: .pending, notifier: nil, limit: 1)).first?.dueAt)
            #expect(next.timeIntervalSinceNow > 9 * 60 && next.timeIntervalSinceNow <= 10 * 60)
        }
        #expect(RetryPolicy().delay(forRetry: 1, hint: .longest) == .seconds(3600))
    }

    @Test func inFlightDeliveriesAreRecoveredOnStart() async throws {
        let journal: any Journal = MemoryJournal()
        let event = try Fixtures.event("guest_booked")
        guard case .accepted(let ids) = try await journal.append(JournalEntry(event: event, dedupeKey: nil, notifiers: ["fast"])) else {
            Issue.record("not accepted"); return
        }
        // An earlier process took it and died during the attempt.
        _ = try await journal.lease(LeaseRequest(notifier: "fast", owner: "dead-process", now: Date(), until: Date() + 60,
                                                 limit: 1, deadAfter: 3))
        let h = try await Harness("  fast: { kind: recording, label: fast }", routes: "  - { events: [\"*\"], notify: [fast] }", journal: journal)
        #expect(h.pipeline.undeliveredCount == 1)
        try await h.running { () async throws in
            #expect(try await waitUntil { h.log.count("fast") == 1 })
        }
        let record = try #require(try await journal.delivery(id: ids["fast"]!))
        #expect(record.state == .delivered)
        #expect(record.attempts == 2)
    }

    @Test func saturationAnswersUnavailable() async throws {
        let h = try await Harness("  fast: { kind: recording, label: fast }", routes: "  - { events: [\"*\"], notify: [fast] }",
                                  extra: ", maxPending: 2")
        for (i, name) in ["guest_booked", "guest_cancelled", "host_cancelled"].enumerated() {
            let (body, hdr) = try h.signed(name)
            let outcome = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr)
            if i < 2 {
                guard case .accepted = outcome else { Issue.record("expected accepted, got \(outcome)"); return }
            } else {
                guard case .unavailable(let after, _) = outcome else { Issue.record("expected 503, got \(outcome)"); return }
                #expect(after > 0)
            }
        }
    }

    @Test func retryScheduleIsFullJitterWithinTheCeiling() {
        let p = RetryPolicy()
        #expect(p.ceiling(forRetry: 1) == .seconds(5))
        #expect(p.ceiling(forRetry: 2) == .seconds(15))
        #expect(p.ceiling(forRetry: 3) == .seconds(45))
        #expect(p.ceiling(forRetry: 10) == .seconds(3600))
        #expect(p.delay(forRetry: 2, random: { $0.upperBound }) == .seconds(15))
        #expect(p.delay(forRetry: 2, random: { $0.lowerBound }) == .zero)
        #expect(p.delay(forRetry: 5, hint: .seconds(2)) == .seconds(2))
        for _ in 0..<100 { #expect(p.delay(forRetry: 3) <= .seconds(45)) }
    }
}

@Suite("Delivery slots")
struct DeliverySlotsTests {
    /// Many tasks contend for 3 slots: never more than 3 inside, and every one gets in.
    @Test func neverMoreThanTheLimitAndNobodyIsForgotten() async {
        final class Inside: Sendable { let counts = Mutex((now: 0, most: 0, done: 0)) }
        let slots = DeliverySlots(3)
        let inside = Inside()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<500 {
                group.addTask {
                    guard await slots.acquire() else { return }
                    inside.counts.withLock { $0.now += 1; $0.most = max($0.most, $0.now) }
                    await Task.yield()
                    inside.counts.withLock { $0.now -= 1; $0.done += 1 }
                    slots.release()
                }
            }
        }
        let result = inside.counts.withLock { $0 }
        #expect(result.done == 500)
        #expect(result.most <= 3 && result.most >= 1)
    }

    @Test func closeRefusesWaitersAndLaterCallers() async throws {
        let slots = DeliverySlots(1)
        #expect(await slots.acquire())
        let waiter = Task { await slots.acquire() }
        try await Task.sleep(for: .milliseconds(50))
        slots.close()
        #expect(await waiter.value == false)
        #expect(await slots.acquire() == false)
    }

    @Test func aCancelledWaiterLeavesAndTheSlotGoesToTheNext() async throws {
        let slots = DeliverySlots(1)
        #expect(await slots.acquire())
        let cancelled = Task { await slots.acquire() }
        let next = Task { await slots.acquire() }
        try await Task.sleep(for: .milliseconds(50))
        cancelled.cancel()
        #expect(await cancelled.value == false)
        slots.release()
        #expect(await next.value == true)
        #expect(slots.leftovers == 0, "an answered ticket leaves nothing behind")
    }
}

extension DeliverySlotsTests {
    /// A reload may change `concurrency`: raising it lets waiters in at once, lowering it
    /// holds new ones back until enough running deliveries have finished.
    @Test func resizingTakesEffectForWaitersAndLaterReleases() async throws {
        let slots = DeliverySlots(1)
        #expect(await slots.acquire())
        let a = Task { await slots.acquire() }
        let b = Task { await slots.acquire() }
        try await Task.sleep(for: .milliseconds(50))
        slots.resize(to: 3)
        let (gotA, gotB) = (await a.value, await b.value)
        #expect(gotA && gotB)
        // Three taken; down to one: two releases only pay back the excess.
        slots.resize(to: 1)
        let c = Task { await slots.acquire() }
        slots.release()
        slots.release()
        try await Task.sleep(for: .milliseconds(50))
        slots.close()
        #expect(await c.value == false, "no slot was free yet")
    }
}

@Suite("Attempt deadlines")
struct DeadlineClockTests {
    /// An attempt still running at its deadline is cancelled, not before, and says so.
    @Test func aDeadlineCancelsTheAttemptOnlyAfterItsTimeout() async throws {
        let deadlines = DeadlineClock()
        let clock = Task { await deadlines.run() }
        defer { clock.cancel() }
        let start = ContinuousClock.now
        async let attempt = deadlines.run(.milliseconds(120)) { () async -> Bool in
            try? await Task.sleep(for: .seconds(30))
            return Task.isCancelled
        }
        let (cancelled, timedOut) = await attempt
        #expect(cancelled && timedOut)
        #expect(ContinuousClock.now - start >= .milliseconds(120))
        #expect(ContinuousClock.now - start < .seconds(30))
        #expect(deadlines.outstanding == 0)
        #expect(!Task.isCancelled, "the cancellation stays with the attempt's own task")
    }

    /// An attempt that ends first is left alone and leaves nothing behind.
    @Test func anAttemptThatEndsFirstIsNotCancelled() async throws {
        let deadlines = DeadlineClock()
        let clock = Task { await deadlines.run() }
        defer { clock.cancel() }
        async let attempt = deadlines.run(.seconds(3600)) { () async -> Bool in
            try? await Task.sleep(for: .milliseconds(80))
            return Task.isCancelled
        }
        let (cancelled, timedOut) = await attempt
        #expect(!cancelled && !timedOut)
        deadlines.expire(now: .now + .seconds(7200))
        #expect(deadlines.outstanding == 0, "finished attempts leave no entry behind")
    }

    /// Once no attempt has run for `idleAfter` the clock waits instead of ticking, and the
    /// next attempt's deadline still fires; cancelling a waiting clock ends it.
    @Test func anIdleClockWakesForTheNextAttempt() async throws {
        let deadlines = DeadlineClock(idleAfter: .milliseconds(100))
        let clock = Task { await deadlines.run() }
        defer { clock.cancel() }
        try #require(try await waitUntil { deadlines.isIdle }, "the clock never went idle")
        async let attempt = deadlines.run(.milliseconds(50)) { () async -> Bool in
            try? await Task.sleep(for: .seconds(30))
            return Task.isCancelled
        }
        let (cancelled, timedOut) = await attempt
        #expect(cancelled && timedOut)
        try #require(try await waitUntil { deadlines.isIdle }, "the clock never went idle")
        clock.cancel()
        await clock.value
        #expect(!deadlines.isIdle)
    }
}

@Suite("Delivery queue")
struct DeliveryQueueTests {
    static func job(_ id: Int64) -> DeliveryJob { DeliveryJob(id: id, eventID: "evt_\(id)", event: nil, attempt: 1) }

    /// Four producers, one consumer that is often waiting: every delivery arrives once, each
    /// producer's in the order it offered them.
    @Test func everyDeliveryReachesTheConsumerOnceInOrder() async {
        let queue = DeliveryQueue(name: "a", capacity: 10_000)
        let consumer = Task {
            var seen: [Int64] = []
            for await job in queue.jobs {
                seen.append(job.id)
                if seen.count % 7 == 0 { await Task.yield() }
            }
            return seen
        }
        await withTaskGroup(of: Void.self) { group in
            for producer in 0..<4 {
                group.addTask {
                    for n in 0..<500 {
                        #expect(queue.offer(Self.job(Int64(producer * 1000 + n))) == .queued)
                        if n % 50 == 0 { await Task.yield() }
                    }
                }
            }
        }
        queue.finish()
        let seen = await consumer.value
        #expect(seen.count == 2000)
        #expect(Set(seen).count == 2000)
        for producer in 0..<4 {
            let mine = seen.filter { $0 / 1000 == Int64(producer) }
            #expect(mine == (0..<500).map { Int64(producer * 1000 + $0) })
        }
    }

    /// A reservation takes one place per notifier named (twice named, once taken; unknown or
    /// full, none), publishing fills the places of the notifiers that got a delivery id and
    /// gives the others back, and cancelling gives every place back.
    @Test func reservationsArePublishedOrGivenBackPlaceForPlace() async throws {
        let bus = EventBus()
        _ = bus.subscribe("a", capacity: 2)
        let b = bus.subscribe("b", capacity: 1)
        #expect(b.offer(Self.job(100)) == .queued)  // b is full
        let reserved = bus.reserve(["a", "b", "a", "nobody"])
        #expect(reserved.notifiers == ["a"])
        #expect(reserved.contains("a") && !reserved.contains("b"))
        #expect(bus.reserve(["a"]).notifiers == ["a"])
        #expect(bus.reserve(["a"]).notifiers.isEmpty, "a's two places are taken")
        bus.cancel(bus.reserve(["b"]))
        bus.cancel(reserved)
        #expect(bus.reserve(["a"]).notifiers == ["a"], "a cancelled place is free again")

        let event = try Fixtures.event("guest_booked")
        let both = EventBus()
        let c = both.subscribe("c", capacity: 1)
        let d = both.subscribe("d", capacity: 1)
        let places = both.reserve(["c", "d"])
        both.publish(event, deliveries: ["c": 7], reserved: places)
        #expect(c.depth == 1)
        #expect(d.depth == 0)
        #expect(both.reserve(["d"]).notifiers == ["d"], "d's unused place was given back")
        #expect(both.reserve(["c"]).notifiers.isEmpty, "c's place holds its delivery")
    }

    /// A job's place is its own: once given back, finishing that job again does not release
    /// the same delivery queued anew (its retry, which the sweep took at once).
    @Test func finishingAJobReleasesOnlyItsOwnPlace() async {
        let queue = DeliveryQueue(name: "a", capacity: 10)
        var jobs = queue.jobs.makeAsyncIterator()
        #expect(queue.offer(Self.job(1)) == .queued)
        guard let first = await jobs.next() else { Issue.record("no job"); return }
        #expect(queue.offer(Self.job(1)) == .alreadyQueued)
        queue.complete(first)
        #expect(queue.offer(Self.job(1)) == .queued)
        guard let again = await jobs.next() else { Issue.record("no job"); return }
        queue.complete(first)
        #expect(queue.depth == 1, "the delivery queued again keeps its place")
        #expect(queue.heldIDs == [1])
        queue.complete(again)
        #expect(queue.depth == 0)
    }

    /// Finishing lets the consumer drain what is queued, then ends its sequence; a delivery
    /// offered afterwards is released at once instead of being held.
    @Test func finishDrainsThenEndsAndLaterOffersAreReleased() async {
        let queue = DeliveryQueue(name: "a", capacity: 10)
        for id in 1...3 { #expect(queue.offer(Self.job(Int64(id))) == .queued) }
        queue.finish()
        #expect(queue.offer(Self.job(4)) == .queued)
        #expect(queue.depth == 3, "the late delivery is not held")
        var ids: [Int64] = []
        for await job in queue.jobs { ids.append(job.id) }
        #expect(ids == [1, 2, 3])
    }

    /// A consumer waiting on an empty queue ends when its task is cancelled, and what is
    /// offered afterwards is not held for a consumer that is gone.
    @Test func aCancelledConsumerEndsItsSequence() async throws {
        let queue = DeliveryQueue(name: "a", capacity: 10)
        let consumer = Task {
            var count = 0
            for await _ in queue.jobs { count += 1 }
            return count
        }
        #expect(queue.offer(Self.job(1)) == .queued)
        try await Task.sleep(for: .milliseconds(50))
        consumer.cancel()
        #expect(await consumer.value == 1)
        #expect(queue.offer(Self.job(2)) == .queued)
        queue.complete(1)
        #expect(queue.depth == 0)
    }
}
