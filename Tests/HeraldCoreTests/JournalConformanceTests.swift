import Foundation
import Synchronization
import Testing
@testable import HeraldCore
import HeraldPostgres

// MARK: - Fixtures

/// A clock the test moves by hand; starts on a whole second so dates round-trip exactly.
final class TestClock: Sendable {
    private let date = Mutex(Date(timeIntervalSince1970: 1_750_000_000))
    var now: Date { date.withLock { $0 } }
    func advance(_ seconds: TimeInterval) { date.withLock { $0 += seconds } }
    var function: @Sendable () -> Date { { self.now } }
}

/// A fresh directory under the temporary directory, removed with the object.
final class TempDirectory: Sendable {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("herald-journal-\(UUID().uuidString)").path
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// The implementations the conformance suite runs against. `postgres` needs the test server
/// (`scripts/test-postgres.sh`); without it, it is left out locally (the PostgreSQL suites say
/// they were skipped) and fails under CI.
enum JournalKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory, sqlite, sqliteWithoutGroupCommit, postgres
    var testDescription: String { rawValue }
    /// Several processes use it at once: a starting instance leaves other leases alone.
    var isShared: Bool { self == .postgres }

    static var allCases: [JournalKind] {
        [.memory, .sqlite, .sqliteWithoutGroupCommit] + (TestPostgres.enabled ? [.postgres] : [])
    }
}

/// A journal with its clock and, for SQLite, its directory (kept alive as long as the fixture).
struct Fixture {
    static let ttl: Duration = .seconds(60)
    let journal: any Journal
    let clock: TestClock
    let directory: TempDirectory
    /// For PostgreSQL: its own database on the test server, and the pool running.
    var database: TestPostgres.Database?

    /// A fixture for the journals that open synchronously (memory and SQLite).
    init(_ kind: JournalKind, clock: TestClock = TestClock(), directory: TempDirectory = TempDirectory(),
         outcomeWait: Duration = .milliseconds(10), gatherWait: Duration? = nil) throws {
        self.clock = clock
        self.directory = directory
        switch kind {
        case .memory:
            journal = MemoryJournal(dedupeTTL: Self.ttl, clock: clock.function)
        case .sqlite, .sqliteWithoutGroupCommit:
            journal = try SQLiteJournal(directory: directory.path, dedupeTTL: Self.ttl, groupCommit: kind == .sqlite,
                                        clock: clock.function, outcomeWait: outcomeWait, walBytes: .standard,
                                        gatherWait: gatherWait)
        case .postgres:
            throw TestPostgres.Missing()
        }
    }

    /// A fixture of any kind.
    static func make(_ kind: JournalKind, clock: TestClock = TestClock()) async throws -> Fixture {
        guard kind == .postgres else { return try Fixture(kind, clock: clock) }
        let database = try await TestPostgres.Database(clock: clock.function, ttl: ttl)
        return Fixture(journal: database.journal, clock: clock, directory: TempDirectory(), database: database)
    }

    private init(journal: any Journal, clock: TestClock, directory: TempDirectory, database: TestPostgres.Database) {
        self.journal = journal
        self.clock = clock
        self.directory = directory
        self.database = database
    }

    var sqlite: SQLiteJournal { journal as! SQLiteJournal }

    /// Appends an event received now (or `receivedAt`) and returns the result.
    @discardableResult
    func append(_ id: String, endpoint: String = "/hooks/a", key: String? = nil, notifiers: [String] = ["slack"],
                body: Data = Data("{}".utf8), receivedAt: Date? = nil, leased: [String] = [],
                owner: String = "me") async throws -> AppendResult {
        var entry = makeEntry(id, endpoint: endpoint, key: key, notifiers: notifiers, body: body,
                              receivedAt: receivedAt ?? clock.now)
        entry.lease = Lease(owner: owner, until: clock.now + 60)
        entry.leased = leased
        return try await journal.append(entry)
    }

    /// Leases due deliveries of `notifier` for `owner`, until `seconds` from now.
    func lease(_ notifier: String = "slack", owner: String = "me", limit: Int = 10, for seconds: TimeInterval = 60,
               deadAfter: Int = 3) async throws -> LeaseResult {
        try await journal.lease(LeaseRequest(notifier: notifier, owner: owner, now: clock.now,
                                             until: clock.now + seconds, limit: limit, deadAfter: deadAfter))
    }

    /// Records one outcome for `owner`; true if it was written.
    @discardableResult
    func record(_ outcome: DeliveryOutcome, owner: String = "me") async throws -> Bool {
        try await journal.record([outcome], owner: owner).isEmpty
    }

    func delivery(_ id: Int64) async throws -> DeliveryRecord? { try await journal.delivery(id: id) }

    /// The delivery ids of an accepted append, by notifier.
    func accept(_ id: String, notifiers: [String] = ["slack"], receivedAt: Date? = nil) async throws -> [String: Int64] {
        let result = try await append(id, notifiers: notifiers, receivedAt: receivedAt)
        guard case .accepted(let ids) = result else {
            Issue.record("\(id) was not accepted: \(result)")
            return [:]
        }
        return ids
    }
}

extension AppendResult {
    var isAccepted: Bool { if case .accepted = self { true } else { false } }
}

func makeEntry(_ id: String, endpoint: String = "/hooks/a", name: String = "guest_booked", key: String? = nil,
               notifiers: [String] = ["slack"], body: Data = Data("{}".utf8), receivedAt: Date) -> JournalEntry {
    let event = Event(id: id, endpoint: endpoint, source: "generic", name: name, receivedAt: receivedAt,
                      occurredAt: nil, booking: nil, payload: .null, body: body)
    return JournalEntry(event: event, dedupeKey: key, notifiers: notifiers)
}

// MARK: - The contract every journal keeps

/// One suite for every ``Journal``: the same calls must give the same answers, so the
/// dispatcher, pipeline and CLI can rely on the protocol alone.
@Suite("Journal conformance")
struct JournalConformanceTests {
    @Test(arguments: JournalKind.allCases)
    func appendStoresTheEventAndOneDeliveryPerNotifier(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        let ids = try await f.accept("evt_1", notifiers: ["slack", "mail", "slack"])
        #expect(ids.keys.sorted() == ["mail", "slack"])
        #expect(Set(ids.values).count == 2)

        let slackID = try #require(ids["slack"])
        let record = try #require(try await f.delivery(slackID))
        #expect(record == DeliveryRecord(id: ids["slack"]!, eventID: "evt_1", eventName: "guest_booked", notifier: "slack",
                                         state: .pending, attempts: 0, dueAt: f.clock.now, lastError: nil,
                                         receivedAt: f.clock.now, updatedAt: f.clock.now))
        let event = try #require(try await f.journal.event(id: "evt_1"))
        #expect(event == StoredEvent(id: "evt_1", endpoint: "/hooks/a", name: "guest_booked", receivedAt: f.clock.now,
                                     body: Data("{}".utf8)))
        #expect(try await f.journal.event(id: "evt_missing") == nil)
        #expect(try await f.journal.undeliveredCount() == 2)
    }

    /// The accepting instance stores the deliveries it will attempt at once already leased to
    /// itself, first attempt counted; nobody else can take them while the lease runs.
    @Test(arguments: JournalKind.allCases)
    func appendStoresLeasedDeliveriesForTheAcceptingInstance(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        let result = try await f.append("evt_1", notifiers: ["slack", "mail"], leased: ["slack"], owner: "a")
        guard case .accepted(let ids) = result else { Issue.record("not accepted"); return }
        let slack = try #require(try await f.delivery(ids["slack"]!))
        #expect(slack.state == .leased && slack.attempts == 1 && slack.owner == "a" && slack.leaseUntil == f.clock.now + 60)
        #expect(try await f.delivery(ids["mail"]!)?.state == .pending)
        #expect(try await f.lease("slack", owner: "b").deliveries.isEmpty)
        #expect(try await f.lease("mail", owner: "b").deliveries.map(\.record.id) == [ids["mail"]!])
        #expect(try await f.record(.delivered(ids["slack"]!), owner: "a"))
        #expect(try await f.delivery(ids["slack"]!)?.state == .delivered)
    }

    @Test(arguments: JournalKind.allCases)
    func dedupeKeysAreRememberedPerEndpointForTheTTL(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        #expect(try await f.append("evt_1", key: "k").isAccepted)
        #expect(try await f.append("evt_2", key: "k") == .duplicate(of: "evt_1"))
        #expect(try await f.journal.event(id: "evt_2") == nil)
        #expect(try await f.append("evt_3", endpoint: "/hooks/b", key: "k").isAccepted)
        #expect(try await f.append("evt_4").isAccepted)
        #expect(try await f.append("evt_5").isAccepted)
        f.clock.advance(59)
        #expect(try await f.append("evt_6", key: "k") == .duplicate(of: "evt_1"))
        f.clock.advance(1)
        #expect(try await f.append("evt_7", key: "k").isAccepted)
        #expect(try await f.append("evt_8", key: "k") == .duplicate(of: "evt_7"))
        #expect(try await f.journal.undeliveredCount() == 5)
    }

    @Test(arguments: JournalKind.allCases)
    func concurrentAppendsWithOneKeyAcceptExactlyOne(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        let results = try await withThrowingTaskGroup(of: AppendResult.self) { group in
            for i in 0..<50 { group.addTask { try await f.append("evt_\(i)", key: "same") } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.filter(\.isAccepted).count == 1)
        let events = try await f.journal.deliveries(DeliveryQuery(limit: 100))
        let winner = try #require(events.first?.eventID)
        #expect(events.count == 1)
        #expect(results.filter { $0 == .duplicate(of: winner) }.count == 49)
    }

    @Test(arguments: JournalKind.allCases)
    func aRepeatedEventIDIsRefused(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        _ = try await f.accept("evt_1")
        await #expect { try await f.append("evt_1") } throws: { error in
            (error as? JournalError)?.kind == .duplicateEventID
        }
        #expect(try await f.journal.undeliveredCount() == 1)
    }

    /// A refused repeated event id keeps nothing of its append: not its dedupe key, which the
    /// next webhook with that key may take, nor the key an earlier event holds.
    @Test(arguments: JournalKind.allCases)
    func aRepeatedEventIDLeavesNoDedupeKey(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        #expect(try await f.append("evt_1", key: "k1") != .duplicate(of: "evt_1"))
        await #expect { try await f.append("evt_1", key: "k2") } throws: { error in
            (error as? JournalError)?.kind == .duplicateEventID
        }
        guard case .accepted = try await f.append("evt_2", key: "k2") else {
            Issue.record("the refused append kept its key")
            return
        }
        #expect(try await f.append("evt_3", key: "k1") == .duplicate(of: "evt_1"))
        #expect(try await f.append("evt_4", key: "k2") == .duplicate(of: "evt_2"))
    }

    /// The sweep takes due work oldest first, per notifier, up to its room, with the bodies.
    @Test(arguments: JournalKind.allCases)
    func leaseTakesDueWorkOldestFirstWithItsEvents(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        var ids: [Int64] = []
        for i in 0..<5 {
            let result = try await f.append("evt_\(i)", notifiers: ["slack", "mail"], body: Data("{\"n\":\(i)}".utf8),
                                            receivedAt: f.clock.now + Double(i) - 5)
            guard case .accepted(let d) = result else { Issue.record("not accepted"); return }
            ids.append(try #require(d["slack"]))
        }
        _ = try await f.accept("evt_later", receivedAt: f.clock.now + 10)

        let first = try await f.lease(limit: 3)
        #expect(first.deliveries.map(\.record.id) == Array(ids[0...2]))
        #expect(first.takenOver == 0 && first.setAside.isEmpty)
        for (n, item) in first.deliveries.enumerated() {
            #expect(item.record.state == .leased && item.record.attempts == 1 && item.record.owner == "me")
            #expect(item.record.leaseUntil == f.clock.now + 60)
            #expect(item.event == StoredEvent(id: "evt_\(n)", endpoint: "/hooks/a", name: "guest_booked",
                                              receivedAt: f.clock.now + Double(n) - 5, body: Data("{\"n\":\(n)}".utf8)))
        }
        // Not due yet: the event received 10 s from now.
        #expect(try await f.lease().deliveries.map(\.record.id) == Array(ids[3...4]))
        #expect(try await f.lease().deliveries.isEmpty)
        f.clock.advance(10)
        #expect(try await f.lease().deliveries.map(\.record.eventID) == ["evt_later"])
        #expect(try await f.lease("mail", limit: 100).deliveries.allSatisfy { $0.record.notifier == "mail" })
        #expect(try await f.lease("sms").deliveries.isEmpty)
    }

    /// Callers in parallel (several dispatchers, several instances) never get the same delivery.
    @Test(arguments: JournalKind.allCases)
    func concurrentLeasesNeverShareADelivery(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        for i in 0..<40 { _ = try await f.accept("evt_\(i)") }
        let taken = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for owner in 0..<8 {
                group.addTask { try await f.lease(owner: "o\(owner)", limit: 7).deliveries.map(\.record.id) }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(taken.count == 40)
        #expect(Set(taken).count == 40)
    }

    /// An expired lease is taken over (its owner died or stalled): one more attempt and one
    /// more interruption; the old owner's late outcome is not written.
    @Test(arguments: JournalKind.allCases)
    func expiredLeasesAreTakenOverAndTheOldOwnerLosesThem(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        let id = try #require(try await f.accept("evt_1")["slack"])
        #expect(try await f.lease(owner: "a", for: 10).deliveries.count == 1)
        f.clock.advance(9)
        #expect(try await f.lease(owner: "b").deliveries.isEmpty)
        f.clock.advance(1)
        let taken = try await f.lease(owner: "b")
        #expect(taken.takenOver == 1)
        let record = try #require(taken.deliveries.first?.record)
        #expect(record.id == id && record.owner == "b" && record.attempts == 2 && record.interruptions == 1)
        #expect(try await f.record(.delivered(id), owner: "a") == false)
        #expect(try await f.delivery(id)?.state == .leased)
        #expect(try await f.record(.delivered(id), owner: "b"))
        #expect(try await f.delivery(id)?.state == .delivered)
    }

    /// A lease says when the notifier's next delivery it did not take comes due, or its lease
    /// expires: the dispatcher's sweep sleeps until then. Nothing waiting: never.
    @Test(arguments: JournalKind.allCases)
    func aLeaseSaysWhenTheNextDeliveryComesDue(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        #expect(try await f.lease().nextDue == .distantFuture)
        let ids = try await f.accept("evt_1", notifiers: ["slack", "chat"])
        let (slack, chat) = (try #require(ids["slack"]), try #require(ids["chat"]))
        #expect(try await f.lease().deliveries.map(\.record.id) == [slack])
        // Only its own lease is left: due again when that expires.
        #expect(try await f.lease().nextDue == f.clock.now + 60)
        #expect(try await f.record(.retry(slack, at: f.clock.now + 30, error: "busy")))
        #expect(try await f.lease().nextDue == f.clock.now + 30)
        // Another notifier's work is not this one's.
        #expect(try await f.lease("chat", for: 10).deliveries.map(\.record.id) == [chat])
        #expect(try await f.lease().nextDue == f.clock.now + 30)
        #expect(try await f.lease("chat").nextDue == f.clock.now + 10)
        f.clock.advance(30)
        let taken = try await f.lease()
        #expect(taken.deliveries.map(\.record.id) == [slack])
        #expect(taken.nextDue == f.clock.now + 60)
        #expect(try await f.record(.delivered(slack)))
        #expect(try await f.lease().nextDue == .distantFuture)
    }

    /// A delivery interrupted three times is set aside, so it cannot keep Herald down;
    /// another delivery interrupted once goes on.
    @Test(arguments: JournalKind.allCases)
    func deliveryInterruptedThreeTimesIsSetAside(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        let ids = try await f.accept("evt_1", notifiers: ["chat", "file"])
        let (chat, file) = (ids["chat"]!, ids["file"]!)
        for owner in ["a", "b", "c"] {
            #expect(try await f.lease("chat", owner: owner, for: 1).deliveries.map(\.record.id) == [chat])
            f.clock.advance(1)
        }
        _ = try await f.lease("file", owner: "c", for: 1)
        f.clock.advance(1)
        let chatTaken = try await f.lease("chat", owner: "d")
        #expect(chatTaken.deliveries.isEmpty && chatTaken.takenOver == 0)
        #expect(chatTaken.setAside.map(\.id) == [chat])
        let dead = try #require(try await f.delivery(chat))
        #expect(dead.state == .dead && dead.interruptions == 3 && dead.owner == nil)
        #expect(dead.lastError == "the process stopped during this delivery 3 times")
        let fileTaken = try await f.lease("file", owner: "d")
        #expect(fileTaken.deliveries.map(\.record.id) == [file] && fileTaken.takenOver == 1)
    }

    @Test(arguments: JournalKind.allCases)
    func renewExtendsOnlyLeasesTheOwnerHolds(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        let ids = try await f.accept("evt_1", notifiers: ["a", "b"])
        _ = try await f.lease("a", owner: "me", for: 10)
        _ = try await f.lease("b", owner: "me", for: 10)
        #expect(try await f.record(.delivered(ids["b"]!)))
        #expect(try await f.journal.renew([ids["a"]!, ids["b"]!, 9999], owner: "me", until: f.clock.now + 100).sorted()
                == [ids["b"]!, 9999])
        #expect(try await f.delivery(ids["a"]!)?.leaseUntil == f.clock.now + 100)
        #expect(try await f.journal.renew([ids["a"]!], owner: "other", until: f.clock.now + 200) == [ids["a"]!])
        f.clock.advance(50)
        #expect(try await f.lease("a", owner: "other").deliveries.isEmpty)
    }

    @Test(arguments: JournalKind.allCases)
    func outcomesMoveLeasedDeliveries(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        let ids = try await f.accept("evt_1", notifiers: ["a", "b", "c", "d", "e"])
        for n in ["a", "b", "c", "d", "e"] { _ = try await f.lease(n) }
        let start = f.clock.now
        f.clock.advance(1)

        #expect(try await f.record(.retry(ids["a"]!, at: start + 30, error: "HTTP 503")))
        var record = try #require(try await f.delivery(ids["a"]!))
        #expect(record.state == .pending && record.dueAt == start + 30 && record.lastError == "HTTP 503")
        #expect(record.owner == nil && record.leaseUntil == nil && record.updatedAt == f.clock.now)
        f.clock.advance(28)
        #expect(try await f.lease("a").deliveries.isEmpty)
        f.clock.advance(1)
        #expect(try await f.lease("a").deliveries.first?.record.attempts == 2)
        #expect(try await f.record(.delivered(ids["a"]!)))
        record = try #require(try await f.delivery(ids["a"]!))
        #expect(record.state == .delivered && record.attempts == 2 && record.dueAt == nil && record.lastError == "HTTP 503")

        #expect(try await f.record(.dead(ids["b"]!, error: "HTTP 400")))
        record = try #require(try await f.delivery(ids["b"]!))
        #expect(record.state == .dead && record.dueAt == nil && record.lastError == "HTTP 400")

        #expect(try await f.record(.skipped(ids["c"]!, reason: "quiet hours")))
        record = try #require(try await f.delivery(ids["c"]!))
        #expect(record.state == .skipped && record.lastError == "quiet hours")

        #expect(try await f.record(.released(ids["d"]!)))
        record = try #require(try await f.delivery(ids["d"]!))
        #expect(record.state == .pending && record.attempts == 0 && record.dueAt == f.clock.now && record.owner == nil)
        #expect(try await f.lease("d").deliveries.map(\.record.id) == [ids["d"]!])

        #expect(try await f.record(.postponed(ids["d"]!, until: f.clock.now + 600, reason: "held for quiet hours")))
        record = try #require(try await f.delivery(ids["d"]!))
        #expect(record.state == .pending && record.attempts == 0 && record.dueAt == f.clock.now + 600)
        #expect(record.lastError == "held for quiet hours" && record.owner == nil)
        #expect(try await f.lease("d").deliveries.isEmpty)

        // Only a held lease takes an outcome: not a final delivery, not an unknown id.
        #expect(try await f.record(.delivered(ids["b"]!)) == false)
        #expect(try await f.delivery(ids["b"]!)?.state == .dead)
        #expect(try await f.journal.record([.delivered(ids["e"]!), .delivered(9999)], owner: "me") == [9999])
        #expect(try await f.journal.undeliveredCount() == 1)
    }

    /// On SQLite and in memory a starting process is the journal's only user: whatever an
    /// earlier process held is due at once. A shared journal leaves live leases alone.
    @Test(arguments: JournalKind.allCases)
    func instanceStartExpiresLeasesLeftByEarlierProcesses(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        let ids = try await f.accept("evt_1", notifiers: ["a", "b"])
        _ = try await f.lease("a", owner: "old")
        #expect(try await f.journal.instanceStarted(owner: "new") == (kind.isShared ? 0 : 1))
        let taken = try await f.lease("a", owner: "new")
        #expect(taken.deliveries.map(\.record.id) == (kind.isShared ? [] : [ids["a"]!]))
        #expect(taken.takenOver == (kind.isShared ? 0 : 1))
    }

    @Test(arguments: JournalKind.allCases)
    func retryRevivesDeadSkippedAndPendingDeliveries(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        let ids = try await f.accept("evt_1", notifiers: ["a", "b", "c", "d", "e", "f"])
        let (a, b, c, d, e, g) = (ids["a"]!, ids["b"]!, ids["c"]!, ids["d"]!, ids["e"]!, ids["f"]!)
        for n in ["a", "b", "c", "d", "e", "f"] { _ = try await f.lease(n) }
        #expect(try await f.record(.dead(a, error: "gone")))
        #expect(try await f.record(.delivered(b)))
        #expect(try await f.record(.retry(c, at: f.clock.now + 600, error: "slow")))
        #expect(try await f.record(.dead(d, error: "gone")))
        #expect(try await f.record(.skipped(e, reason: "quiet hours")))
        // g stays leased.
        f.clock.advance(1)

        #expect(try await f.journal.retry(.ids([a, b, c, e, g, 9999])) == 3)
        #expect(try await f.delivery(a)?.state == .pending)
        #expect(try await f.delivery(a)?.dueAt == f.clock.now)
        #expect(try await f.delivery(b)?.state == .delivered)
        #expect(try await f.delivery(c)?.dueAt == f.clock.now)
        #expect(try await f.delivery(e)?.state == .pending)
        #expect(try await f.delivery(g)?.state == .leased)
        #expect(try await f.delivery(d)?.state == .dead)
        #expect(try await f.journal.retry(.ids([])) == 0)
        #expect(try await f.journal.retry(.allDead) == 1)
        #expect(try await f.delivery(d)?.state == .pending)
    }

    @Test(arguments: JournalKind.allCases)
    func pruneKeepsEventsWithUnfinishedDeliveries(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        let old = f.clock.now - 100
        let done = try #require(try await f.accept("evt_done", receivedAt: old)["slack"])
        let dead = try #require(try await f.accept("evt_dead", receivedAt: old)["slack"])
        let waiting = try await f.accept("evt_waiting", notifiers: ["slack", "mail"], receivedAt: old)
        let held = try #require(try await f.accept("evt_held", notifiers: ["sms"], receivedAt: old)["sms"])
        _ = try await f.accept("evt_nobody", notifiers: [], receivedAt: old)
        let recent = try #require(try await f.accept("evt_recent")["slack"])
        _ = try await f.lease("slack")
        _ = try await f.lease("sms")
        #expect(try await f.record(.delivered(done)))
        #expect(try await f.record(.dead(dead, error: "no")))
        #expect(try await f.record(.delivered(waiting["slack"]!)))
        #expect(try await f.record(.delivered(recent)))

        #expect(try await f.journal.prune(before: f.clock.now - 10) == 3)
        #expect(try await f.journal.event(id: "evt_done") == nil)
        #expect(try await f.delivery(done) == nil)
        #expect(try await f.delivery(dead) == nil)
        #expect(try await f.journal.event(id: "evt_waiting") != nil)
        #expect(try await f.delivery(waiting["slack"]!)?.state == .delivered)
        #expect(try await f.delivery(held)?.state == .leased)
        #expect(try await f.journal.event(id: "evt_recent") != nil)
        #expect(try await f.journal.prune(before: f.clock.now - 10) == 0)
    }

    @Test(arguments: JournalKind.allCases)
    func deliveriesAreListedNewestFirstAndCounted(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        let first = try await f.accept("evt_1", notifiers: ["slack", "mail"])
        let second = try await f.accept("evt_2", notifiers: ["slack"])
        _ = try await f.lease("mail")
        #expect(try await f.record(.dead(first["mail"]!, error: "bad address")))
        _ = try await f.lease("slack", limit: 1)

        let all = try await f.journal.deliveries(DeliveryQuery(limit: 10))
        #expect(all.map(\.id) == [second["slack"]!, first["mail"]!, first["slack"]!])
        #expect(try await f.journal.deliveries(DeliveryQuery(limit: 1)).map(\.id) == [second["slack"]!])
        #expect(try await f.journal.deliveries(DeliveryQuery(state: .dead)).map(\.id) == [first["mail"]!])
        #expect(try await f.journal.deliveries(DeliveryQuery(notifier: "slack")).count == 2)
        #expect(try await f.journal.deliveries(DeliveryQuery(state: .pending, notifier: "mail")).isEmpty)
        #expect(try await f.journal.deliveries(DeliveryQuery(id: first["mail"]!)).map(\.id) == [first["mail"]!])
        #expect(try await f.journal.deliveries(DeliveryQuery(id: 9999)).isEmpty)

        #expect(try await f.journal.counts() == [
            DeliveryCount(notifier: "mail", state: .dead, count: 1),
            DeliveryCount(notifier: "slack", state: .pending, count: 1),
            DeliveryCount(notifier: "slack", state: .leased, count: 1),
        ])
    }

    // MARK: Reminders

    /// Appends an event about booking `bk_1` with reminders at the given times.
    func remind(_ f: Fixture, _ id: String, at times: [(notifier: String, offset: Int, at: Date)] = [],
                skip: String? = nil, cancels: Bool = false) async throws {
        var entry = makeEntry(id, notifiers: [], receivedAt: f.clock.now)
        entry.bookingKey = "bk_1"
        entry.reminders = times.map { ScheduledReminder(notifier: $0.notifier, offset: $0.offset, remindAt: $0.at, skipReason: skip) }
        entry.cancelsReminders = cancels
        _ = try await f.journal.append(entry)
    }

    func reminders(_ f: Fixture) async throws -> [DeliveryRecord] {
        try await f.journal.deliveries(DeliveryQuery(limit: 100)).filter { $0.reminderOffset != nil }.sorted { $0.id < $1.id }
    }

    @Test(arguments: JournalKind.allCases)
    func remindersAreScheduledPerBookingNotifierAndOffset(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        let start = f.clock.now + 86400 * 2
        try await remind(f, "evt_booked", at: [("chat", 3600, start - 3600), ("chat", 86400, start - 86400)])
        var list = try await reminders(f)
        #expect(list.count == 2)
        #expect(list.map(\.state) == [.pending, .pending] && list.map(\.bookingKey) == ["bk_1", "bk_1"])
        #expect(list.map(\.dueAt) == [start - 3600, start - 86400] && list.map(\.remindAt) == [start - 3600, start - 86400])
        #expect(list.allSatisfy { $0.eventID == "evt_booked" && $0.attempts == 0 })
        #expect(try await f.lease("chat").deliveries.isEmpty)  // not due yet
        #expect(try await f.journal.undeliveredCount() == 2)

        // The same booking announced again (another event, same start): nothing new.
        try await remind(f, "evt_again", at: [("chat", 3600, start - 3600)])
        #expect(try await reminders(f).count == 2)

        // Rescheduled: the pending reminder moves, with the new event.
        let later = start + 7200
        try await remind(f, "evt_moved", at: [("chat", 3600, later - 3600)])
        list = try await reminders(f)
        #expect(list.count == 2)
        #expect(list[0].dueAt == later - 3600 && list[0].remindAt == later - 3600 && list[0].eventID == "evt_moved")
        #expect(list[0].eventName == "guest_booked")

        // Due: leased like any delivery.
        f.clock.advance(86400 * 2 - 86400)
        #expect(try await f.lease("chat").deliveries.map(\.record.id) == [list[1].id])
        #expect(try await f.record(.delivered(list[1].id)))
    }

    @Test(arguments: JournalKind.allCases)
    func aCancellationSkipsPendingRemindersOnly(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        let start = f.clock.now + 7200
        try await remind(f, "evt_booked", at: [("chat", 3600, start - 3600), ("mail", 7200, start - 7200)])
        let mail = try #require(try await reminders(f).first { $0.notifier == "mail" })
        _ = try await f.lease("mail")
        #expect(try await f.record(.delivered(mail.id)))
        f.clock.advance(60)
        try await remind(f, "evt_cancelled", cancels: true)
        let list = try await reminders(f)
        let chat = try #require(list.first { $0.notifier == "chat" })
        #expect(chat.state == .skipped && chat.lastError == ScheduledReminder.cancelledReason && chat.dueAt == nil)
        #expect(chat.remindAt == start - 3600)
        #expect(list.first { $0.notifier == "mail" }?.state == .delivered)
        f.clock.advance(7200)
        #expect(try await f.lease("chat").deliveries.isEmpty)

        // Booked again after the cancellation, for the same time: a new reminder, since the
        // cancelled one is final.
        // (Same time as a final reminder counts as already scheduled: nothing is sent twice.)
        try await remind(f, "evt_rebooked", at: [("chat", 3600, start - 3600)])
        #expect(try await reminders(f).count == 2)
        try await remind(f, "evt_rebooked_later", at: [("chat", 3600, start + 600)])
        #expect(try await reminders(f).count == 3)
    }

    @Test(arguments: JournalKind.allCases)
    func aReminderWhoseTimeHadPassedIsStoredSkipped(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        try await remind(f, "evt_late", at: [("chat", 3600, f.clock.now - 3600)], skip: "its time had passed")
        let list = try await reminders(f)
        #expect(list.count == 1)
        #expect(list[0].state == .skipped && list[0].lastError == "its time had passed" && list[0].dueAt == nil)
        #expect(try await f.journal.undeliveredCount() == 0)
    }

    // MARK: Bookings projection

    @Test(arguments: JournalKind.allCases)
    func theBookingsProjectionKeepsTheLatestStatePerUid(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        let day = f.clock.now
        func snapshot(_ uid: String, _ hour: Double, status: String = "open", event: String) -> BookingSnapshot {
            BookingSnapshot(uid: uid, status: status, eventTypeUid: "et_1", startedAt: day + hour * 3600,
                            endedAt: day + hour * 3600 + 1800, timeZone: "Asia/Tokyo", guestName: "山田 \(uid)",
                            guestEmail: "\(uid)@example.jp", eventID: event, eventName: "guest_booked")
        }
        for s in [snapshot("b", 5, event: "e1"), snapshot("a", 2, event: "e2"), snapshot("c", 30, event: "e3"),
                  snapshot("b", 1, status: "cancel", event: "e4")] {
            var entry = makeEntry(s.eventID, notifiers: [], receivedAt: f.clock.now)
            entry.booking = s
            _ = try await f.journal.append(entry)
        }
        let today = try await f.journal.bookings(startingFrom: day, before: day + 86400)
        #expect(today.map(\.uid) == ["b", "a"])
        #expect(today.first == snapshot("b", 1, status: "cancel", event: "e4"))
        #expect(today.first?.isCancelled == true && today.last?.isCancelled == false)
        #expect(try await f.journal.bookings(startingFrom: day + 86400, before: day + 2 * 86400).map(\.uid) == ["c"])
        #expect(try await f.journal.bookings(startingFrom: day + 2 * 3600, before: day + 2 * 3600).isEmpty)
    }

    /// A wait for other processes' work ends with its task's cancellation, whether that came
    /// during the wait or before it (a dispatcher cancels it on every sweep).
    @Test(.timeLimit(.minutes(1)), arguments: JournalKind.allCases)
    func waitingForWorkEndsWhenCancelled(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        let during = Task { await f.journal.waitForWork(notifier: "slack") }
        try await Task.sleep(for: .milliseconds(50))
        during.cancel()
        await during.value
        let before = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            await f.journal.waitForWork(notifier: "slack")
        }
        await before.value
    }

    /// Bookings go with the prune once they ended before its cutoff, and never within two days.
    @Test(arguments: JournalKind.allCases)
    func pruneForgetsBookingsThatEndedBeforeTheCutoff(kind: JournalKind) async throws {
        let f = try await Fixture.make(kind)
        let now = f.clock.now
        let day = 86400.0
        func append(_ uid: String, startsIn start: Double, endsIn end: Double?) async throws {
            var entry = makeEntry("evt_\(uid)", notifiers: [], receivedAt: now)
            entry.booking = BookingSnapshot(uid: uid, status: "open", eventTypeUid: nil, startedAt: now + start,
                                            endedAt: end.map { now + $0 }, timeZone: nil, guestName: nil, guestEmail: nil,
                                            eventID: entry.eventID, eventName: "guest_booked")
            _ = try await f.journal.append(entry)
        }
        try await append("ended_long_ago", startsIn: -40 * day, endsIn: -40 * day + 1800)
        try await append("no_end_long_ago", startsIn: -40 * day, endsIn: nil)
        try await append("ends_after_cutoff", startsIn: -40 * day, endsIn: -5 * day)
        try await append("ended_yesterday", startsIn: -day, endsIn: -day + 1800)
        try await append("upcoming", startsIn: day, endsIn: day + 1800)
        func uids() async throws -> [String] {
            try await f.journal.bookings(startingFrom: now - 100 * day, before: now + 100 * day).map(\.uid).sorted()
        }
        // A 30-day retention: what ended before then goes.
        _ = try await f.journal.prune(before: now - 30 * day)
        #expect(try await uids() == ["ended_yesterday", "ends_after_cutoff", "upcoming"])
        // A retention of minutes still keeps the last two days' bookings for agendas.
        _ = try await f.journal.prune(before: now - 60)
        #expect(try await uids() == ["ended_yesterday", "upcoming"])
    }
}
