import Foundation
import Synchronization
import Testing
@testable import HeraldCore

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

/// The implementations every behavioural test runs against.
enum JournalKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory, sqlite, sqliteWithoutGroupCommit
    var testDescription: String { rawValue }
}

/// A journal with its clock and, for SQLite, its directory (kept alive as long as the fixture).
struct Fixture {
    static let ttl: Duration = .seconds(60)
    let journal: any Journal
    let clock: TestClock
    let directory: TempDirectory

    init(_ kind: JournalKind, clock: TestClock = TestClock(), directory: TempDirectory = TempDirectory()) throws {
        self.clock = clock
        self.directory = directory
        switch kind {
        case .memory:
            journal = MemoryJournal(dedupeTTL: Self.ttl, clock: clock.function)
        case .sqlite, .sqliteWithoutGroupCommit:
            journal = try SQLiteJournal(directory: directory.path, dedupeTTL: Self.ttl,
                                        groupCommit: kind == .sqlite, clock: clock.function)
        }
    }

    var sqlite: SQLiteJournal { journal as! SQLiteJournal }

    /// Appends an event received now (or `receivedAt`) and returns the result.
    @discardableResult
    func append(_ id: String, endpoint: String = "/hooks/a", key: String? = nil, notifiers: [String] = ["slack"],
                body: Data = Data("{}".utf8), receivedAt: Date? = nil) async throws -> AppendResult {
        try await journal.append(makeEntry(id, endpoint: endpoint, key: key, notifiers: notifiers, body: body,
                                           receivedAt: receivedAt ?? clock.now))
    }

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

// MARK: - Behaviour shared with MemoryJournal

@Suite("SQLiteJournal behaves as MemoryJournal")
struct SQLiteJournalBehaviourTests {
    @Test(arguments: JournalKind.allCases)
    func appendStoresTheEventAndOneDeliveryPerNotifier(kind: JournalKind) async throws {
        let f = try Fixture(kind)
        let ids = try await f.accept("evt_1", notifiers: ["slack", "mail", "slack"])
        #expect(ids.keys.sorted() == ["mail", "slack"])
        #expect(Set(ids.values).count == 2)

        let due = try await f.journal.due(notifier: "slack", now: f.clock.now, limit: 10)
        #expect(due == [DeliveryRecord(id: try #require(ids["slack"]), eventID: "evt_1", eventName: "guest_booked",
                                       notifier: "slack", state: .pending, attempts: 0, nextAttemptAt: f.clock.now,
                                       lastError: nil, receivedAt: f.clock.now, updatedAt: f.clock.now)])
        let event = try #require(try await f.journal.event(id: "evt_1"))
        #expect(event.endpoint == "/hooks/a" && event.name == "guest_booked" && event.receivedAt == f.clock.now)
        #expect(event.body == Data("{}".utf8))
        #expect(try await f.journal.event(id: "evt_missing") == nil)
        #expect(try await f.journal.undeliveredCount() == 2)
    }

    @Test(arguments: JournalKind.allCases)
    func dedupeKeysAreRememberedPerEndpointForTheTTL(kind: JournalKind) async throws {
        let f = try Fixture(kind)
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
        let f = try Fixture(kind)
        let results = try await withThrowingTaskGroup(of: AppendResult.self) { group in
            for i in 0..<50 { group.addTask { try await f.append("evt_\(i)", key: "same") } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(results.filter(\.isAccepted).count == 1)
        let events = try await f.journal.deliveries(state: nil, notifier: nil, limit: 100)
        let winner = try #require(events.first?.eventID)
        #expect(events.count == 1)
        #expect(results.filter { $0 == .duplicate(of: winner) }.count == 49)
    }

    /// Only a pending delivery can be claimed, so a stale copy of one that another attempt
    /// already took (or finished) is never delivered twice.
    @Test(arguments: JournalKind.allCases)
    func onlyPendingDeliveriesCanBeClaimed(kind: JournalKind) async throws {
        let f = try Fixture(kind)
        let id = try #require(try await f.accept("evt_1")["slack"])
        #expect(try await f.journal.claim(id))
        #expect(try await f.journal.claim(id) == false)
        try await f.journal.markDelivered(id)
        #expect(try await f.journal.claim(id) == false)
        #expect(try await f.journal.delivery(id: id)?.attempts == 1)
        #expect(try await f.journal.claim(999_999) == false)
    }

    /// A claim whose attempt never started (shutdown) is undone: pending again, attempts as before.
    @Test(arguments: JournalKind.allCases)
    func releaseUndoesAClaim(kind: JournalKind) async throws {
        let f = try Fixture(kind)
        let id = try #require(try await f.accept("evt_1")["slack"])
        #expect(try await f.journal.claim(id))
        try await f.journal.release(id)
        let record = try #require(try await f.journal.delivery(id: id))
        #expect(record.state == .pending && record.attempts == 0)
        #expect(try await f.journal.due(notifier: "slack", now: f.clock.now, limit: 10).map(\.id) == [id])
        // Only a delivery in flight is released; a finished one stays finished.
        #expect(try await f.journal.claim(id))
        try await f.journal.markDelivered(id)
        try await f.journal.release(id)
        #expect(try await f.journal.delivery(id: id)?.state == .delivered)
    }

    /// The sweep reads due deliveries with their bodies in one go.
    @Test(arguments: JournalKind.allCases)
    func dueWithEventsCarriesTheStoredBodies(kind: JournalKind) async throws {
        let f = try Fixture(kind)
        var ids: [Int64] = []
        for i in 0..<5 {
            let result = try await f.append("evt_\(i)", notifiers: ["slack", "mail"], body: Data("{\"n\":\(i)}".utf8))
            guard case .accepted(let d) = result else { Issue.record("not accepted"); return }
            ids.append(try #require(d["slack"]))
        }
        _ = try await f.journal.claim(ids[0])
        let due = try await f.journal.dueWithEvents(notifier: "slack", now: f.clock.now, limit: 3)
        #expect(due.map(\.record.id) == Array(ids[1...3]))
        #expect(due.map(\.record) == (try await f.journal.due(notifier: "slack", now: f.clock.now, limit: 3)))
        for (n, item) in zip(1..., due) {
            #expect(item.event?.id == "evt_\(n)" && item.event?.endpoint == "/hooks/a" && item.event?.name == "guest_booked")
            #expect(item.event?.body == Data("{\"n\":\(n)}".utf8))
            #expect(item.event?.receivedAt == f.clock.now)
        }
    }

    @Test(arguments: JournalKind.allCases)
    func stateTransitionsCountAttempts(kind: JournalKind) async throws {
        let f = try Fixture(kind)
        let id = try #require(try await f.accept("evt_1")["slack"])
        let other = try #require(try await f.accept("evt_2")["slack"])
        let start = f.clock.now

        f.clock.advance(1)
        _ = try await f.journal.claim(id)
        var record = try #require(try await f.journal.delivery(id: id))
        #expect(record.state == .delivering && record.attempts == 1 && record.updatedAt == f.clock.now)
        #expect(try await f.journal.due(notifier: "slack", now: f.clock.now, limit: 10).map(\.id) == [other])

        try await f.journal.markRetry(id, next: start + 30, error: "HTTP 503")
        record = try #require(try await f.journal.delivery(id: id))
        #expect(record.state == .pending && record.nextAttemptAt == start + 30 && record.lastError == "HTTP 503")
        #expect(try await f.journal.due(notifier: "slack", now: start + 29, limit: 10).map(\.id) == [other])
        #expect(try await f.journal.due(notifier: "slack", now: start + 30, limit: 10).map(\.id) == [id, other])

        _ = try await f.journal.claim(id)
        try await f.journal.markDelivered(id)
        record = try #require(try await f.journal.delivery(id: id))
        #expect(record.state == .delivered && record.attempts == 2 && record.nextAttemptAt == nil)
        #expect(record.lastError == "HTTP 503")

        _ = try await f.journal.claim(other)
        try await f.journal.markDead(other, error: "HTTP 400")
        record = try #require(try await f.journal.delivery(id: other))
        #expect(record.state == .dead && record.attempts == 1 && record.nextAttemptAt == nil && record.lastError == "HTTP 400")
        #expect(try await f.journal.undeliveredCount() == 0)

        try await f.journal.markDelivered(9999)  // unknown ids are ignored
        #expect(try await f.journal.delivery(id: 9999) == nil)
    }

    @Test(arguments: JournalKind.allCases)
    func dueIsOldestFirstPerNotifierUpToTheLimit(kind: JournalKind) async throws {
        let f = try Fixture(kind)
        var ids: [Int64] = []
        for i in 0..<5 { ids.append(try #require(try await f.accept("evt_\(i)", notifiers: ["mail", "slack"])["slack"])) }
        _ = try await f.accept("evt_later", receivedAt: f.clock.now + 10)

        #expect(try await f.journal.due(notifier: "slack", now: f.clock.now, limit: 3).map(\.id) == Array(ids.prefix(3)))
        #expect(try await f.journal.due(notifier: "slack", now: f.clock.now, limit: 10).map(\.id) == ids)
        #expect(try await f.journal.due(notifier: "slack", now: f.clock.now + 10, limit: 10).count == 6)
        #expect(try await f.journal.due(notifier: "mail", now: f.clock.now, limit: 10).allSatisfy { $0.notifier == "mail" })
        #expect(try await f.journal.due(notifier: "sms", now: f.clock.now, limit: 10).isEmpty)
    }

    @Test(arguments: JournalKind.allCases)
    func recoverInFlightMakesStartedDeliveriesDueNow(kind: JournalKind) async throws {
        let f = try Fixture(kind)
        let id = try #require(try await f.accept("evt_1")["slack"])
        _ = try await f.journal.claim(id)
        f.clock.advance(5)
        #expect(try await f.journal.recoverInFlight(deadAfter: 3) == Recovery(requeued: 1, setAside: []))
        let record = try #require(try await f.journal.delivery(id: id))
        #expect(record.state == .pending && record.nextAttemptAt == f.clock.now && record.attempts == 1)
        #expect(try await f.journal.recoverInFlight(deadAfter: 3) == Recovery(requeued: 0, setAside: []))
    }

    /// A delivery in flight at three crashes in a row is set aside, so it cannot keep Herald
    /// down; another delivery interrupted once goes on.
    @Test(arguments: JournalKind.allCases)
    func deliveryInterruptedByThreeCrashesIsSetAside(kind: JournalKind) async throws {
        let f = try Fixture(kind)
        let ids = try await f.accept("evt_1", notifiers: ["chat", "file"])
        let (chat, file) = (ids["chat"]!, ids["file"]!)
        for crash in 1...2 {
            #expect(try await f.journal.claim(chat))
            #expect(try await f.journal.recoverInFlight(deadAfter: 3) == Recovery(requeued: 1, setAside: []), "crash \(crash)")
        }
        #expect(try await f.journal.claim(chat))
        #expect(try await f.journal.claim(file))
        #expect(try await f.journal.recoverInFlight(deadAfter: 3) == Recovery(requeued: 1, setAside: [chat]))
        let dead = try #require(try await f.journal.delivery(id: chat))
        #expect(dead.state == .dead)
        #expect(dead.lastError == "the process stopped during this delivery 3 times")
        #expect(try await f.journal.delivery(id: file)?.state == .pending)
        #expect(try await f.journal.due(notifier: "file", now: f.clock.now, limit: 10).map(\.id) == [file])
    }

    @Test(arguments: JournalKind.allCases)
    func retryRevivesDeadAndPendingDeliveries(kind: JournalKind) async throws {
        let f = try Fixture(kind)
        let ids = try await f.accept("evt_1", notifiers: ["a", "b", "c", "d"])
        let (a, b, c, d) = (ids["a"]!, ids["b"]!, ids["c"]!, ids["d"]!)
        try await f.journal.markDead(a, error: "gone")
        try await f.journal.markDelivered(b)
        try await f.journal.markRetry(c, next: f.clock.now + 600, error: "slow")
        try await f.journal.markDead(d, error: "gone")
        f.clock.advance(1)

        #expect(try await f.journal.retry(ids: [a, b, c, 9999], allDead: false) == 2)
        #expect(try await f.journal.delivery(id: a)?.state == .pending)
        #expect(try await f.journal.delivery(id: a)?.nextAttemptAt == f.clock.now)
        #expect(try await f.journal.delivery(id: b)?.state == .delivered)
        #expect(try await f.journal.delivery(id: c)?.nextAttemptAt == f.clock.now)
        #expect(try await f.journal.delivery(id: d)?.state == .dead)
        #expect(try await f.journal.retry(ids: nil, allDead: false) == 0)
        #expect(try await f.journal.retry(ids: nil, allDead: true) == 1)
        #expect(try await f.journal.delivery(id: d)?.state == .pending)
    }

    @Test(arguments: JournalKind.allCases)
    func pruneKeepsEventsWithUndeliveredDeliveries(kind: JournalKind) async throws {
        let f = try Fixture(kind)
        let old = f.clock.now - 100
        let done = try #require(try await f.accept("evt_done", receivedAt: old)["slack"])
        let dead = try #require(try await f.accept("evt_dead", receivedAt: old)["slack"])
        let waiting = try await f.accept("evt_waiting", notifiers: ["slack", "mail"], receivedAt: old)
        _ = try await f.accept("evt_nobody", notifiers: [], receivedAt: old)
        let recent = try #require(try await f.accept("evt_recent")["slack"])
        try await f.journal.markDelivered(done)
        try await f.journal.markDead(dead, error: "no")
        try await f.journal.markDelivered(waiting["slack"]!)
        try await f.journal.markDelivered(recent)

        #expect(try await f.journal.prune(before: f.clock.now - 10) == 3)
        #expect(try await f.journal.event(id: "evt_done") == nil)
        #expect(try await f.journal.delivery(id: done) == nil)
        #expect(try await f.journal.delivery(id: dead) == nil)
        #expect(try await f.journal.event(id: "evt_waiting") != nil)
        #expect(try await f.journal.delivery(id: waiting["slack"]!)?.state == .delivered)
        #expect(try await f.journal.event(id: "evt_recent") != nil)
        #expect(try await f.journal.prune(before: f.clock.now - 10) == 0)
    }

    @Test(arguments: JournalKind.allCases)
    func deliveriesAreListedNewestFirstAndCounted(kind: JournalKind) async throws {
        let f = try Fixture(kind)
        let first = try await f.accept("evt_1", notifiers: ["slack", "mail"])
        let second = try await f.accept("evt_2", notifiers: ["slack"])
        try await f.journal.markDead(first["mail"]!, error: "bad address")
        _ = try await f.journal.claim(second["slack"]!)

        let all = try await f.journal.deliveries(state: nil, notifier: nil, limit: 10)
        #expect(all.map(\.id) == [second["slack"]!, first["mail"]!, first["slack"]!])
        #expect(try await f.journal.deliveries(state: nil, notifier: nil, limit: 1).map(\.id) == [second["slack"]!])
        #expect(try await f.journal.deliveries(state: .dead, notifier: nil, limit: 10).map(\.id) == [first["mail"]!])
        #expect(try await f.journal.deliveries(state: nil, notifier: "slack", limit: 10).count == 2)
        #expect(try await f.journal.deliveries(state: .pending, notifier: "mail", limit: 10).isEmpty)

        #expect(try await f.journal.counts() == [
            DeliveryCount(notifier: "mail", state: .dead, count: 1),
            DeliveryCount(notifier: "slack", state: .pending, count: 1),
            DeliveryCount(notifier: "slack", state: .delivering, count: 1),
        ])
    }
}

// MARK: - SQLite only: durability, group commit, errors

@Suite("SQLiteJournal")
struct SQLiteJournalTests {
    @Test func dataSurvivesReopenAndInFlightDeliveriesAreRecovered() async throws {
        let clock = TestClock()
        let directory = TempDirectory()
        let bodies: [String: Data] = [
            "evt_binary": Data([0xFF, 0xFE, 0x00, 0x80, 0xC3, 0x28, 0x00]),
            "evt_japanese": Data("{\"title\":\"予約が入りました 🎉\"}".utf8),
            "evt_empty": Data(),
        ]
        var delivering: Int64 = 0
        do {
            let f = try Fixture(.sqlite, clock: clock, directory: directory)
            for (id, body) in bodies { try await f.append(id, body: body) }
            delivering = try #require(try await f.journal.due(notifier: "slack", now: clock.now, limit: 1).first?.id)
            _ = try await f.journal.claim(delivering)
            try f.sqlite.close()
            await #expect(throws: JournalError.self) { try await f.journal.undeliveredCount() }
        }
        let reopened = try SQLiteJournal.openExisting(directory: directory.path, dedupeTTL: Fixture.ttl,
                                                      clock: clock.function)
        #expect(try await reopened.due(notifier: "slack", now: clock.now, limit: 10).count == 2)
        #expect(try await reopened.recoverInFlight(deadAfter: 3).requeued == 1)
        #expect(try await reopened.due(notifier: "slack", now: clock.now, limit: 10).map(\.id).contains(delivering))
        #expect(try await reopened.delivery(id: delivering)?.attempts == 1)
        for (id, body) in bodies { #expect(try await reopened.event(id: id)?.body == body) }
    }

    /// A journal whose file was truncated to a third while recent commits sat in its WAL opens
    /// (the schema is readable) but every append then fails: it is refused at open instead,
    /// with SQLite's finding and what to do.
    @Test func truncatedJournalIsRefusedAtOpen() async throws {
        let directory = TempDirectory()
        let copy = TempDirectory()
        do {
            let f = try Fixture(.sqlite, directory: directory)
            for i in 0..<400 { try await f.append("evt_\(i)", body: Data(String(repeating: "x", count: 500).utf8)) }
            try f.sqlite.close()
        }
        let f = try Fixture(.sqlite, directory: directory)
        for i in 400..<420 { try await f.append("evt_\(i)") }
        // What a crash leaves on disk: the main file and its WAL, the main file then damaged.
        try FileManager.default.createDirectory(atPath: copy.path, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: directory.path) {
            try FileManager.default.copyItem(atPath: directory.path + "/" + name, toPath: copy.path + "/" + name)
        }
        try f.sqlite.close()
        let file = copy.path + "/journal.sqlite"
        let size = try #require(try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int)
        #expect(size > 100_000)
        let handle = try #require(FileHandle(forWritingAtPath: file))
        try handle.truncate(atOffset: UInt64(size / 3))
        try handle.close()
        do {
            _ = try SQLiteJournal(directory: copy.path, dedupeTTL: Fixture.ttl)
            Issue.record("a truncated journal opened")
        } catch let error as JournalError {
            #expect(error.kind == .corrupted)
            #expect(error.message.contains("is damaged"))
            #expect(error.message.contains("restore it from a backup"))
        }
    }

    @Test func commitsAreFsyncedInWALMode() async throws {
        let f = try Fixture(.sqlite)
        #expect(try await f.sqlite.scalar("PRAGMA synchronous") == 2)  // FULL
        #expect(try await f.sqlite.scalar("PRAGMA busy_timeout") == Int(SQLiteJournal.busyTimeout * 1000))
        #expect(FileManager.default.fileExists(atPath: f.sqlite.path + "-wal"))
        #expect(f.sqlite.path == f.directory.path + "/journal.sqlite")
    }

    /// State changes skip their own fsync, but leave the connection at FULL for appends.
    @Test func stateChangesLeaveAppendsFullySynchronous() async throws {
        let f = try Fixture(.sqlite)
        let id = try #require(try await f.accept("evt_1")["slack"])
        #expect(try await f.journal.claim(id))
        #expect(try await f.sqlite.scalar("PRAGMA synchronous") == 2)  // FULL
        try await f.journal.markRetry(id, next: f.clock.now, error: "x")
        #expect(try await f.sqlite.scalar("PRAGMA synchronous") == 2)
        #expect(try await f.journal.claim(id))
        try await f.journal.markDelivered(id)
        #expect(try await f.sqlite.scalar("PRAGMA synchronous") == 2)
        #expect(try await f.journal.delivery(id: id)?.state == .delivered)
    }

    @Test func concurrentAppendsShareTransactions() async throws {
        let f = try Fixture(.sqlite)
        let results = try await withThrowingTaskGroup(of: AppendResult.self) { group in
            for i in 0..<500 { group.addTask { try await f.append("evt_\(i)", key: "key_\(i)") } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let ids = results.flatMap { result -> [Int64] in
            guard case .accepted(let ids) = result else { return [] }
            return Array(ids.values)
        }
        #expect(Set(ids).count == 500)
        #expect(try await f.journal.undeliveredCount() == 500)
        #expect(try await f.sqlite.scalar("SELECT COUNT(*) FROM events") == 500)
        let stats = f.sqlite.appendStatistics
        #expect(stats.appends == 500)
        #expect(stats.commits < 100, "500 concurrent appends took \(stats.commits) transactions")
        #expect(stats.largestBatch <= 512)
    }

    @Test func appendsQueuedBehindABusyWriterShareOneBatchAndDedupeInOrder() async throws {
        let f = try Fixture(.sqlite)
        // Keeps the writer busy for a moment so that every append below queues up meanwhile.
        async let busy = f.sqlite.scalar("""
            WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 2000000) SELECT COUNT(*) FROM n
            """)
        try await Task.sleep(for: .milliseconds(50))
        let results = try await withThrowingTaskGroup(of: AppendResult.self) { group in
            for i in 0..<50 { group.addTask { try await f.append("evt_\(i)", key: i.isMultiple(of: 2) ? "even" : "odd") } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        _ = try await busy
        // All 50 queued while the writer was busy; on a loaded machine a few may arrive after
        // the first batch started, so allow a second batch but not one commit each.
        let stats = f.sqlite.appendStatistics
        #expect(stats.appends == 50)
        #expect(stats.commits <= 3, "\(stats)")
        #expect(stats.largestBatch >= 25, "\(stats)")
        let winners = try await f.journal.deliveries(state: nil, notifier: nil, limit: 10).map(\.eventID)
        #expect(winners.count == 2)
        #expect(results.filter(\.isAccepted).count == 2)
        #expect(results.filter { winners.map(AppendResult.duplicate(of:)).contains($0) }.count == 48)
    }

    /// Delivery state changes queued with appends ride in the appends' transaction (no
    /// commit of their own); alone they commit without counting as append commits.
    @Test func stateChangesShareTheAppendsTransaction() async throws {
        let f = try Fixture(.sqlite)
        var ids: [Int64] = []
        for i in 0..<20 { ids.append(try #require(try await f.accept("old_\(i)")["slack"])) }
        let before = f.sqlite.appendStatistics
        #expect(try await f.journal.claim(ids[0]))
        try await f.journal.markDelivered(ids[0])
        #expect(f.sqlite.appendStatistics == before, "state changes alone are not append commits")

        async let busy = f.sqlite.scalar("""
            WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 2000000) SELECT COUNT(*) FROM n
            """)
        try await Task.sleep(for: .milliseconds(50))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<30 { group.addTask { try await f.append("new_\(i)") } }
            for id in ids.dropFirst() {
                group.addTask {
                    #expect(try await f.journal.claim(id))
                    try await f.journal.markDelivered(id)
                }
            }
            try await group.waitForAll()
        }
        _ = try await busy
        let stats = f.sqlite.appendStatistics
        #expect(stats.appends - before.appends == 30)
        #expect(stats.commits - before.commits <= 4, "\(stats)")
        let delivered = try await f.journal.deliveries(state: .delivered, notifier: nil, limit: 100)
        #expect(Set(delivered.map(\.id)) == Set(ids))
        #expect(try await f.journal.undeliveredCount() == 30)
    }

    @Test func withoutGroupCommitEveryAppendIsATransaction() async throws {
        let f = try Fixture(.sqliteWithoutGroupCommit)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<20 { group.addTask { try await f.append("evt_\(i)") } }
            try await group.waitForAll()
        }
        #expect(f.sqlite.appendStatistics == .init(commits: 20, appends: 20, largestBatch: 1))
    }

    @Test func aRepeatedEventIDFailsAloneInItsBatch() async throws {
        let f = try Fixture(.sqlite)
        let outcomes = await withTaskGroup(of: Result<AppendResult, any Error>.self) { group in
            for i in 0..<20 {
                group.addTask {
                    do { return .success(try await f.append(i == 19 ? "evt_0" : "evt_\(i)")) } catch { return .failure(error) }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let failures = outcomes.compactMap { if case .failure(let error) = $0 { error as? JournalError } else { nil } }
        #expect(failures.map(\.kind) == [.duplicateEventID])
        #expect(try await f.journal.undeliveredCount() == 19)
    }

    @Test func aSecondProcessSeesAndChangesTheSameJournal() async throws {
        let f = try Fixture(.sqlite)
        let id = try #require(try await f.accept("evt_1")["slack"])
        let cli = try SQLiteJournal.openExisting(directory: f.directory.path)
        #expect(try await cli.undeliveredCount() == 1)
        try await cli.markDead(id, error: "cancelled by hand")
        #expect(try await f.journal.delivery(id: id)?.state == .dead)
    }

    @Test func pruneForgetsExpiredDedupeKeys() async throws {
        let f = try Fixture(.sqlite)
        try await f.append("evt_1", key: "old")
        f.clock.advance(30)
        try await f.append("evt_2", key: "new")
        f.clock.advance(30)
        _ = try await f.journal.prune(before: f.clock.now - 3600)
        #expect(try await f.sqlite.scalar("SELECT COUNT(*) FROM dedupe") == 1)
        #expect(try await f.journal.event(id: "evt_1") != nil)
    }

    @Test func openExistingNamesTheMissingJournal() throws {
        let directory = TempDirectory()
        let error = #expect(throws: JournalError.self) { try SQLiteJournal.openExisting(directory: directory.path) }
        #expect(error?.kind == .notFound)
        #expect(error?.description.contains(directory.path + "/journal.sqlite") == true)
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }

    @Test func aFileThatIsNotAJournalIsReportedAsCorrupted() throws {
        let directory = TempDirectory()
        try FileManager.default.createDirectory(atPath: directory.path, withIntermediateDirectories: true)
        let file = directory.path + "/journal.sqlite"
        try Data(repeating: 0x2A, count: 4096).write(to: URL(fileURLWithPath: file))
        let error = #expect(throws: JournalError.self) { try SQLiteJournal.openExisting(directory: directory.path) }
        #expect(error?.kind == .corrupted)
        #expect(error?.description.contains(file) == true)
    }

    /// Not an assertion: prints throughput with group commit on and off.
    /// Run with `HERALD_JOURNAL_BENCH=1 swift test --filter SQLiteJournal`.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["HERALD_JOURNAL_BENCH"] != nil))
    func appendThroughput() async throws {
        let body = Data(repeating: UInt8(ascii: "x"), count: 1024)
        for kind in [JournalKind.sqlite, .sqliteWithoutGroupCommit] {
            let f = try Fixture(kind)
            let clock = ContinuousClock()
            let elapsed = try await clock.measure {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for i in 0..<2000 { group.addTask { try await f.append("evt_\(i)", key: "k\(i)", body: body) } }
                    try await group.waitForAll()
                }
            }
            let stats = f.sqlite.appendStatistics
            print("journal bench \(kind.rawValue): 2000 appends in \(elapsed), "
                + "\(Int(2000 / elapsed.seconds)) appends/s, \(stats.commits) commits, largest batch \(stats.largestBatch)")
        }
    }
}
