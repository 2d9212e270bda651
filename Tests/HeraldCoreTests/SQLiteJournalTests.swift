import CSQLiteWAL
import Foundation
import GRDB
import GRDBSQLite
import Synchronization
import Testing
@testable import HeraldCore

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
            delivering = try #require(try await f.lease(owner: "crashed", limit: 1).deliveries.first?.record.id)
            try f.sqlite.close()
            await #expect(throws: JournalError.self) { try await f.journal.undeliveredCount() }
        }
        let reopened = try SQLiteJournal.openExisting(directory: directory.path, dedupeTTL: Fixture.ttl,
                                                      clock: clock.function)
        #expect(try await reopened.undeliveredCount() == 3)
        #expect(try await reopened.instanceStarted(owner: "new") == 1)
        let taken = try await reopened.lease(LeaseRequest(notifier: "slack", owner: "new", now: clock.now,
                                                          until: clock.now + 60, limit: 10, deadAfter: 3))
        #expect(taken.deliveries.count == 3 && taken.takenOver == 1)
        #expect(try await reopened.delivery(id: delivering)?.attempts == 2)
        #expect(try await reopened.delivery(id: delivering)?.interruptions == 1)
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
        // Those 400 events into the main file (the journal copies its WAL only every few
        // thousand pages), so that truncating it below damages them.
        do {
            let queue = try DatabaseQueue(path: directory.path + "/journal.sqlite")
            try await queue.writeWithoutTransaction { try $0.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
            try queue.close()
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

    /// Leases and outcomes skip their own fsync, but leave the connection at FULL for appends.
    @Test func stateChangesLeaveAppendsFullySynchronous() async throws {
        let f = try Fixture(.sqlite)
        let id = try #require(try await f.accept("evt_1")["slack"])
        #expect(try await f.lease().deliveries.count == 1)
        #expect(try await f.sqlite.scalar("PRAGMA synchronous") == 2)  // FULL
        #expect(try await f.record(.retry(id, at: f.clock.now, error: "x")))
        #expect(try await f.sqlite.scalar("PRAGMA synchronous") == 2)
        #expect(try await f.lease().deliveries.count == 1)
        #expect(try await f.record(.delivered(id)))
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
        // Holds the writer until all 50 appends below have queued behind it, however slow the
        // machine: then they must make one batch.
        let holding = Mutex(false)
        let sqlite = f.sqlite
        async let held: Void = sqlite.holdWriter(holding: { holding.withLock { $0 = true } },
                                                 until: { sqlite.queuedWrites >= 50 }, timeout: .seconds(30))
        try #require(try await waitUntil { holding.withLock { $0 } }, "the writer was never held")
        let results = try await withThrowingTaskGroup(of: AppendResult.self) { group in
            for i in 0..<50 { group.addTask { try await f.append("evt_\(i)", key: i.isMultiple(of: 2) ? "even" : "odd") } }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        try await held
        let stats = f.sqlite.appendStatistics
        #expect(stats.appends == 50)
        #expect(stats.commits == 1, "\(stats)")
        #expect(stats.largestBatch == 50, "\(stats)")
        let winners = try await f.journal.deliveries(DeliveryQuery(state: nil, notifier: nil, limit: 10)).map(\.eventID)
        #expect(winners.count == 2)
        #expect(results.filter(\.isAccepted).count == 2)
        #expect(results.filter { winners.map(AppendResult.duplicate(of:)).contains($0) }.count == 48)
    }

    /// Eight appends queued behind a busy writer: one batch of eight. The writer then gathers
    /// the next batch until eight appends are queued again (here it would wait an hour), so
    /// one append and seven sent later share a transaction instead of taking two.
    @Test(.timeLimit(.minutes(1))) func underLoadABatchGathersTheAppendsAboutToArrive() async throws {
        let f = try Fixture(.sqlite, gatherWait: .seconds(3600))
        try await appendBehindHeldWriter(f, count: 8, prefix: "crowd")
        let before = f.sqlite.appendStatistics
        #expect(before.largestBatch == 8)
        async let first = f.append("first")
        try #require(try await waitUntil(.seconds(10)) { f.sqlite.queuedWrites == 1 }, "the first append waits in the queue")
        // Not yet committed: it waits for its batch.
        #expect(f.sqlite.appendStatistics.commits == before.commits)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<7 { group.addTask { try await f.append("later_\(i)") } }
            try await group.waitForAll()
        }
        #expect(try await first.isAccepted)
        let after = f.sqlite.appendStatistics
        #expect(after.commits == before.commits + 1, "\(after)")
        #expect(after.appends == before.appends + 8)
        #expect(try await f.journal.undeliveredCount() == 16)
    }

    /// A gathering batch does not wait idle: the appends that arrive meanwhile are stored in
    /// its open transaction as they come, a few at a time, and all are committed together.
    /// Until then no reader sees any of them.
    @Test(.timeLimit(.minutes(1))) func aGatheringBatchStoresWhatArrivesBeforeItCommits() async throws {
        let f = try Fixture(.sqlite, gatherWait: .seconds(3600))
        try await appendBehindHeldWriter(f, count: 8, prefix: "crowd")
        let before = f.sqlite.appendStatistics
        #expect(try await f.journal.undeliveredCount() == 8)
        async let first = f.append("first")
        try #require(try await waitUntil(.seconds(10)) { f.sqlite.writesInTransaction == 1 }, "the first append is stored at once")
        // Two more: the batch (waiting for eight) takes them as one part of two.
        async let second = f.append("second")
        async let third = f.append("third")
        try #require(try await waitUntil(.seconds(10)) { f.sqlite.writesInTransaction == 3 },
                     "the parts that arrive are stored while the batch gathers")
        #expect(f.sqlite.appendStatistics.commits == before.commits)
        #expect(try await f.journal.undeliveredCount() == 8, "nothing is committed before the batch is whole")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<5 { group.addTask { try await f.append("later_\(i)") } }
            try await group.waitForAll()
        }
        #expect(try await first.isAccepted)
        #expect(try await second.isAccepted)
        #expect(try await third.isAccepted)
        let after = f.sqlite.appendStatistics
        #expect(after.commits == before.commits + 1, "\(after)")
        #expect(after.largestBatch == 8)
        #expect(f.sqlite.writesInTransaction == 0)
        #expect(try await f.journal.undeliveredCount() == 16)
    }

    /// When fewer arrive than the last batch held, the gathering batch commits once its wait is over.
    @Test func aGatheringBatchCommitsWhatItHasWhenItsWaitIsOver() async throws {
        let f = try Fixture(.sqlite, gatherWait: .milliseconds(80))
        try await appendBehindHeldWriter(f, count: 8, prefix: "crowd")
        let before = f.sqlite.appendStatistics
        let start = ContinuousClock.now
        #expect(try await f.append("alone").isAccepted)
        #expect(ContinuousClock.now - start >= .milliseconds(80))
        #expect(f.sqlite.appendStatistics.commits == before.commits + 1)
        // A batch of one is no crowd: the next append does not wait.
        #expect(try await f.append("next").isAccepted)
        #expect(f.sqlite.appendStatistics.commits == before.commits + 2)
    }

    /// Appends `count` events while the writer is held, so that they make one batch.
    private func appendBehindHeldWriter(_ f: Fixture, count: Int, prefix: String) async throws {
        let holding = Mutex(false)
        let sqlite = f.sqlite
        async let held: Void = sqlite.holdWriter(holding: { holding.withLock { $0 = true } },
                                                 until: { sqlite.queuedWrites >= count }, timeout: .seconds(30))
        try #require(try await waitUntil { holding.withLock { $0 } }, "the writer was never held")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<count { group.addTask { try await f.append("\(prefix)_\(i)") } }
            try await group.waitForAll()
        }
        try await held
    }

    /// Delivery state changes queued with appends ride in the appends' transaction (no
    /// commit of their own); alone they commit without counting as append commits.
    @Test func stateChangesShareTheAppendsTransaction() async throws {
        let f = try Fixture(.sqlite)
        var ids: [Int64] = []
        for i in 0..<20 { ids.append(try #require(try await f.accept("old_\(i)")["slack"])) }
        let before = f.sqlite.appendStatistics
        #expect(try await f.lease(limit: 100).deliveries.count == 20)
        #expect(try await f.record(.delivered(ids[0])))
        #expect(f.sqlite.appendStatistics.commits == before.commits, "state changes alone are not append commits")
        #expect(f.sqlite.appendStatistics.stateCommits == before.stateCommits + 2)

        // The writer is held until the 30 appends and 19 outcomes below have all queued.
        let holding = Mutex(false)
        let sqlite = f.sqlite
        async let held: Void = sqlite.holdWriter(holding: { holding.withLock { $0 = true } },
                                                 until: { sqlite.queuedWrites >= 49 }, timeout: .seconds(30))
        try #require(try await waitUntil { holding.withLock { $0 } }, "the writer was never held")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<30 { group.addTask { try await f.append("new_\(i)") } }
            for id in ids.dropFirst() {
                group.addTask { let written = try await f.record(.delivered(id)); #expect(written) }
            }
            try await group.waitForAll()
        }
        try await held
        let stats = f.sqlite.appendStatistics
        #expect(stats.appends - before.appends == 30)
        #expect(stats.commits - before.commits == 1, "\(stats)")
        let delivered = try await f.journal.deliveries(DeliveryQuery(state: .delivered, notifier: nil, limit: 100))
        #expect(Set(delivered.map(\.id)) == Set(ids))
        #expect(try await f.journal.undeliveredCount() == 30)
    }

    /// A delivery's outcome waits for another write's transaction (here an append) instead
    /// of committing on its own.
    @Test func anOutcomeRidesInTheNextAppendsTransaction() async throws {
        let f = try Fixture(.sqlite, outcomeWait: .seconds(3600))
        let id = try #require(try await f.accept("first")["slack"])
        #expect(try await f.lease(limit: 10).deliveries.count == 1)
        let before = f.sqlite.appendStatistics
        async let written = f.record(.delivered(id))
        #expect(try await waitUntil { f.sqlite.queuedWrites == 1 }, "the outcome waits")
        try await f.append("second")
        #expect(try await written)
        let after = f.sqlite.appendStatistics
        #expect(after.commits == before.commits + 1)
        #expect(after.stateCommits == before.stateCommits, "no transaction of its own")
        #expect(try await f.delivery(id)?.state == .delivered)
    }

    /// Alone, an outcome commits once its wait is over.
    @Test func anOutcomeAloneCommitsAfterItsWait() async throws {
        let f = try Fixture(.sqlite, outcomeWait: .milliseconds(80))
        let id = try #require(try await f.accept("first")["slack"])
        #expect(try await f.lease(limit: 10).deliveries.count == 1)
        let before = f.sqlite.appendStatistics
        let start = ContinuousClock.now
        #expect(try await f.record(.delivered(id)))
        #expect(ContinuousClock.now - start >= .milliseconds(80))
        #expect(f.sqlite.appendStatistics.stateCommits == before.stateCommits + 1)
        #expect(try await f.delivery(id)?.state == .delivered)
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

    /// A batch's appends are stored in a few statements of many rows each: every answer and
    /// every row must be what storing them one by one gives, the unusual cases included.
    @Test func aBatchOfAppendsStoresWhatOneByOneWould() async throws {
        let f = try Fixture(.sqlite)
        try await f.append("taken", key: "k_taken")
        let day = f.clock.now
        // 37 appends: pieces of 32, 4 and 1 rows. Some without a key, some with two notifiers
        // (one leased), some with a booking, and one whose event id is already stored.
        let entries = (0..<37).map { i -> JournalEntry in
            let id = i == 20 ? "taken" : "evt_\(i)"
            var entry = makeEntry(id, key: i.isMultiple(of: 5) ? nil : "k_\(i)",
                                  notifiers: i.isMultiple(of: 3) ? ["slack", "mail"] : ["slack"],
                                  body: Data("{\"n\":\(i)}".utf8), receivedAt: day)
            entry.lease = Lease(owner: "me", until: day + 60)
            entry.leased = i.isMultiple(of: 3) ? ["mail"] : []
            if i.isMultiple(of: 2) {
                entry.booking = BookingSnapshot(uid: "b_\(i)", status: "open", eventTypeUid: "et", startedAt: day + Double(i) * 60,
                                                endedAt: nil, timeZone: "Asia/Tokyo", guestName: "客 \(i)", guestEmail: nil,
                                                eventID: id, eventName: "guest_booked")
            }
            return entry
        }
        let before = f.sqlite.appendStatistics
        let results = try await appendAsOneBatch(f, entries)
        #expect(f.sqlite.appendStatistics.commits == before.commits + 1)
        #expect(f.sqlite.appendStatistics.largestBatch == 37)

        var deliveryIDs: [Int64] = []
        for (i, result) in results.enumerated() {
            guard i != 20 else {
                #expect((try? result.get()) == nil && (result.error?.kind == .duplicateEventID), "\(result)")
                continue
            }
            guard case .success(.accepted(let ids)) = result else {
                Issue.record("evt_\(i): \(result)")
                continue
            }
            #expect(ids.keys.sorted() == (i.isMultiple(of: 3) ? ["mail", "slack"] : ["slack"]))
            for (notifier, id) in ids {
                let record = try #require(try await f.delivery(id))
                #expect(record.eventID == "evt_\(i)" && record.notifier == notifier)
                #expect(record.state == (notifier == "mail" ? .leased : .pending))
                deliveryIDs.append(id)
            }
            #expect(try await f.journal.event(id: "evt_\(i)")?.body == Data("{\"n\":\(i)}".utf8))
        }
        #expect(Set(deliveryIDs).count == deliveryIDs.count)
        #expect(try await f.sqlite.scalar("SELECT COUNT(*) FROM deliveries") == 1 + deliveryIDs.count)
        let booked = try await f.journal.bookings(startingFrom: day, before: day + 86400)
        #expect(booked.map(\.uid) == (0..<37).filter { $0.isMultiple(of: 2) && $0 != 20 }.map { "b_\($0)" })
        // The repeated id's key was given back: it is free for a new event.
        #expect(try await f.append("evt_k20", key: "k_20").isAccepted)
        #expect(try await f.append("evt_again", key: "k_taken") == .duplicate(of: "taken"))

        // A batch with redeliveries: of a key stored before, and of a key another append in
        // the same batch takes.
        let second = (0..<12).map { i -> JournalEntry in
            let key = switch i { case 0: "k_1"; case 1, 2: "k_shared"; default: "k2_\(i)" }
            return makeEntry("evt2_\(i)", key: key, receivedAt: day)
        }
        let answers = try await appendAsOneBatch(f, second).map { try $0.get() }
        #expect(answers[0] == .duplicate(of: "evt_1"))
        let shared = answers[1...2]
        #expect(shared.filter(\.isAccepted).count == 1)
        #expect(shared.contains(.duplicate(of: "evt2_1")) || shared.contains(.duplicate(of: "evt2_2")))
        #expect(answers[3...].allSatisfy { $0.isAccepted })

        // Bodies larger together than the binding arena: stored whole, one event per statement.
        let large = (0..<3).map { i in Data((0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* (i + 3)) }) }
        let third = (0..<3).map { i in makeEntry("evt3_\(i)", key: "k3_\(i)", body: large[i], receivedAt: day) }
        #expect(try await appendAsOneBatch(f, third).allSatisfy { (try? $0.get())?.isAccepted == true })
        for i in 0..<3 { #expect(try await f.journal.event(id: "evt3_\(i)")?.body == large[i]) }
    }

    /// Appends `entries` concurrently while the writer is held, so that they make one batch;
    /// the results in the order of `entries`.
    private func appendAsOneBatch(_ f: Fixture, _ entries: [JournalEntry]) async throws -> [Result<AppendResult, JournalError>] {
        let holding = Mutex(false)
        let sqlite = f.sqlite
        async let held: Void = sqlite.holdWriter(holding: { holding.withLock { $0 = true } },
                                                 until: { sqlite.queuedWrites >= entries.count }, timeout: .seconds(30))
        try #require(try await waitUntil { holding.withLock { $0 } }, "the writer was never held")
        let results = await withTaskGroup(of: (Int, Result<AppendResult, JournalError>).self) { group in
            for (index, entry) in entries.enumerated() {
                group.addTask {
                    do { return (index, .success(try await f.journal.append(entry))) } catch {
                        return (index, .failure(error as? JournalError ?? JournalError(.other, path: "", "\(error)")))
                    }
                }
            }
            return await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        try await held
        return entries.indices.map { results[$0]! }
    }

    @Test func aSecondProcessSeesAndChangesTheSameJournal() async throws {
        let f = try Fixture(.sqlite)
        let id = try #require(try await f.accept("evt_1")["slack"])
        let cli = try SQLiteJournal.openExisting(directory: f.directory.path)
        #expect(try await cli.undeliveredCount() == 1)
        _ = try await f.lease()
        #expect(try await cli.record([.dead(id, error: "cancelled by hand")], owner: "me").isEmpty)
        #expect(try await f.journal.delivery(id: id)?.state == .dead)
        #expect(try await f.journal.retry(.ids([id])) == 1)
        #expect(try await cli.delivery(id: id)?.state == .pending)
    }

    /// Without an index on `seen_at` (v9: each request paid for it, the prune alone used it),
    /// the prune still forgets the expired keys, and only them.
    @Test func pruneForgetsExpiredDedupeKeys() async throws {
        let f = try Fixture(.sqlite)
        #expect(try await f.sqlite.scalar("SELECT COUNT(*) FROM sqlite_schema WHERE name = 'dedupe_seen'") == 0)
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

    /// A commit's WAL frames reach the file together (CSQLiteWAL), and another connection sees
    /// each commit at once: an append (synchronous = FULL, which syncs the WAL) and an outcome
    /// committed alone (NORMAL, no sync: the frames must be in the file before SQLite's WAL
    /// index says so). The counts are the whole process's, so other tests' commits add to both;
    /// any commit of one or more frames writes at most half as often as it appends.
    @Test func aCommitsWALFramesAreWrittenTogetherAndSeenAtOnce() async throws {
        let directory = TempDirectory()
        let f = try Fixture(.sqlite, directory: directory)
        let other = try SQLiteJournal.openExisting(directory: directory.path, dedupeTTL: Fixture.ttl)
        var appends0: Int64 = 0, writes0: Int64 = 0, appends1: Int64 = 0, writes1: Int64 = 0
        herald_wal_buffer_counts(&appends0, &writes0)
        for i in 0..<40 {
            let result = try await f.append("evt_\(i)", key: "k\(i)", body: Data(String(repeating: "b", count: 900).utf8),
                                            leased: ["slack"])
            guard case .accepted(let ids) = result, let id = ids["slack"] else {
                Issue.record("evt_\(i) was not accepted: \(result)")
                return
            }
            #expect(try await other.event(id: "evt_\(i)")?.body.count == 900)
            #expect(try await f.record(.delivered(id)))
            #expect(try await other.delivery(id: id)?.state == .delivered)
        }
        herald_wal_buffer_counts(&appends1, &writes1)
        #expect(appends1 - appends0 >= 40 * 2 * 4, "each append is several frames of two writes")
        #expect(writes1 - writes0 <= (appends1 - appends0) / 2)
    }

    /// The WAL is copied into the database every `checkpointBytes` (64 MB), not every
    /// 1,000 pages as SQLite would: after some 1,200 pages of commits it holds them all (a
    /// checkpoint at 1,000 would have started it again from its beginning, where later
    /// commits reuse the same space). SQLite's own checkpoint on the writer is off: the WAL
    /// hook of `SQLiteCheckpoints` replaces it.
    @Test func theWALIsCheckpointedEveryFewThousandPages() async throws {
        let directory = TempDirectory()
        let f = try Fixture(.sqlite, directory: directory)
        let body = Data(String(repeating: "w", count: 3_000).utf8)
        for i in 0..<250 { try await f.append("evt_\(i)", key: "k\(i)", body: body) }
        let frame = SQLiteJournal.pageSize + 24
        let wal = try #require(try FileManager.default.attributesOfItem(atPath: f.sqlite.path + "-wal")[.size] as? Int)
        #expect(wal > 1_200 * frame, "the WAL is \(wal) bytes")
        #expect(wal < SQLiteJournal.WALBytes.standard.start + 1_000_000)
        #expect(f.sqlite.checkpointStatistics == SQLiteCheckpoints.Statistics())
        #expect(try await f.sqlite.scalar("PRAGMA wal_autocheckpoint") == 0)
    }

    /// A journal whose checkpoints start after `start` KiB of WAL.
    private func smallWAL(_ directory: TempDirectory, start: Int, limit: Int) throws -> SQLiteJournal {
        try SQLiteJournal(directory: directory.path, dedupeTTL: .seconds(60), clock: { Date() }, outcomeWait: .milliseconds(10),
                          walBytes: .init(start: start << 10, finish: 64 << 10, limit: limit << 10))
    }

    /// The bytes of the journal's WAL file.
    private func walSize(_ journal: SQLiteJournal) throws -> Int {
        try #require(try FileManager.default.attributesOfItem(atPath: journal.path + "-wal")[.size] as? Int)
    }

    /// Past `start`, the WAL is copied into the database file by the second connection while
    /// the writer goes on committing, and SQLite then starts the WAL over: 300 appends of
    /// about 8 pages each leave a WAL file far smaller than their 2,400 pages, the writer
    /// never had to copy everything itself, and every event is in the journal.
    @Test func theWALIsCopiedOnASecondConnectionAndStartsOver() async throws {
        let directory = TempDirectory()
        let journal = try smallWAL(directory, start: 400, limit: 100_000)
        let body = Data(String(repeating: "c", count: 3_000).utf8)
        for i in 0..<300 {
            _ = try await journal.append(makeEntry("evt_\(i)", key: "k\(i)", notifiers: ["slack"], body: body,
                                                   receivedAt: Date()))
        }
        #expect(try await waitUntil { journal.checkpointStatistics.passes >= 1 })
        let statistics = journal.checkpointStatistics
        #expect(statistics.forced == 0)
        #expect(statistics.failures == 0)
        let frame = SQLiteJournal.pageSize + 24
        let wal = try walSize(journal)
        #expect(wal < 1_200 * frame, "the WAL is \(wal) bytes")
        let database = try #require(try FileManager.default.attributesOfItem(atPath: journal.path)[.size] as? Int)
        #expect(database > 100 * 3_000, "the database file holds copied events (\(database) bytes)")
        for i in [0, 150, 299] { #expect(try await journal.event(id: "evt_\(i)")?.body == body) }
    }

    /// A reader holding an old snapshot keeps every frame after it in the WAL: no pass can
    /// copy them, so the WAL grows to `limit`, where the writer tries itself after each
    /// commit. Once the reader is gone, the writer's copy succeeds, SQLite starts the WAL
    /// over, and the file stops growing.
    @Test func aReaderPinningTheWALMakesTheWriterCopyAtTheLimit() async throws {
        let directory = TempDirectory()
        let journal = try smallWAL(directory, start: 200, limit: 600)
        let body = Data(String(repeating: "r", count: 3_000).utf8)
        var next = 0
        func append(_ count: Int) async throws {
            for _ in 0..<count {
                _ = try await journal.append(makeEntry("evt_\(next)", key: "k\(next)", notifiers: ["slack"], body: body,
                                                       receivedAt: Date()))
                next += 1
            }
        }
        try await append(5)
        var reader: OpaquePointer?
        #expect(sqlite3_open_v2(journal.path, &reader, SQLITE_OPEN_READONLY, nil) == SQLITE_OK)
        defer { sqlite3_close_v2(reader) }
        #expect(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM events;", nil, nil, nil) == SQLITE_OK)
        try await append(150)
        let frame = SQLiteJournal.pageSize + 24
        let pinned = try walSize(journal)
        #expect(pinned > 600 * 1024, "the WAL grew past the limit while pinned (\(pinned) bytes)")
        #expect(journal.checkpointStatistics.forced >= 1)

        #expect(sqlite3_exec(reader, "COMMIT", nil, nil, nil) == SQLITE_OK)
        try await append(20)
        let settled = try walSize(journal)
        try await append(20)
        let after = try walSize(journal)
        #expect(after == settled, "the WAL started over instead of growing (\(settled) then \(after) bytes)")
        #expect(settled < pinned + 40 * 8 * frame)
        for i in [0, 100, next - 1] { #expect(try await journal.event(id: "evt_\(i)")?.body == body) }
    }

    /// A checkpoint announced as a copy (what the journal's second connection does) syncs the
    /// database file every 256 KiB, keeps to its pace, and writes its consecutive pages
    /// together, not one write(2) each; the same checkpoint on a thread that
    /// announced nothing (the writer's own copies) is made as SQLite makes it. Each copies
    /// about 3 MB from the WAL, in one call here, not by the journal's connections, whose
    /// passes depend on timing; the file holds every row afterwards. Chunks are counted per
    /// thread, so other tests' copies do not add to them.
    @Test func aCopyIntoTheDatabaseFileIsSyncedInPacedChunks() throws {
        #expect(herald_wal_buffer_install() == SQLITE_OK)
        let directory = TempDirectory()
        try FileManager.default.createDirectory(atPath: directory.path, withIntermediateDirectories: true)
        let path = directory.path + "/copy.sqlite"
        func run(_ db: OpaquePointer?, _ sql: String) -> Int32 { sqlite3_exec(db, sql, nil, nil, nil) }
        var db: OpaquePointer?
        #expect(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK)
        #expect(run(db, "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (i INTEGER, b BLOB)") == SQLITE_OK)
        /// 1,000 rows of 3,000 bytes, then the WAL copied; the chunks synced meanwhile.
        var pages: Int32 = 0
        func insertAndCopy(_ from: Int) -> Int64 {
            #expect(run(db, """
                WITH RECURSIVE n(i) AS (SELECT \(from) UNION ALL SELECT i + 1 FROM n WHERE i < \(from + 999))
                INSERT INTO t SELECT i, randomblob(3000) FROM n
                """) == SQLITE_OK)
            let before = herald_database_copy_chunks()
            var wal: Int32 = 0, copied: Int32 = 0
            #expect(sqlite3_wal_checkpoint_v2(db, "main", SQLITE_CHECKPOINT_PASSIVE, &wal, &copied) == SQLITE_OK)
            #expect(copied == wal && copied > 700, "the whole WAL was copied (\(copied) of \(wal) frames)")
            pages = copied
            return herald_database_copy_chunks() - before
        }

        #expect(insertAndCopy(1) == 0, "a copy nobody announced is not synced in chunks")

        // 10 MB a second: the 3 MB copy's chunks after the first 256 KiB wait, 0.26 s at least.
        let rate = 10_000_000
        let began = ContinuousClock.now
        let writesBefore = herald_database_copy_writes()
        herald_database_copy_begin(Int64(rate))
        let chunks = insertAndCopy(1_001)
        herald_database_copy_end()
        let took = ContinuousClock.now - began
        // About 3 MB in writes of up to 124 KiB: 25 or so, against one per page (over 700).
        let writes = herald_database_copy_writes() - writesBefore
        #expect(writes > 0 && writes < Int64(pages) / 10, "\(writes) writes for \(pages) pages")
        #expect(chunks >= 10, "about 3 MB copied in chunks of 256 KiB (\(chunks) chunks)")
        let paced = Double((chunks - 1) * 256 * 1024) / Double(rate)
        #expect(took >= .seconds(paced), "the copy kept to its pace: \(took) for \(chunks) chunks")
        #expect(insertAndCopy(2_001) == 0, "after the copy ended, nothing on this thread is chunked")
        sqlite3_close_v2(db)

        var reopened: OpaquePointer?
        #expect(sqlite3_open_v2(path, &reopened, SQLITE_OPEN_READONLY, nil) == SQLITE_OK)
        defer { sqlite3_close_v2(reopened) }
        var statement: OpaquePointer?
        #expect(sqlite3_prepare_v2(reopened, "SELECT count(*), sum(length(b)), sum(i) FROM t", -1, &statement, nil) == SQLITE_OK)
        defer { sqlite3_finalize(statement) }
        #expect(sqlite3_step(statement) == SQLITE_ROW)
        #expect(sqlite3_column_int64(statement, 0) == 3_000)
        #expect(sqlite3_column_int64(statement, 1) == 9_000_000)
        #expect(sqlite3_column_int64(statement, 2) == 3_000 * 3_001 / 2)
        var check: OpaquePointer?
        #expect(sqlite3_prepare_v2(reopened, "PRAGMA integrity_check", -1, &check, nil) == SQLITE_OK)
        defer { sqlite3_finalize(check) }
        #expect(sqlite3_step(check) == SQLITE_ROW)
        #expect(sqlite3_column_text(check, 0).map { String(cString: $0) } == "ok")
    }

    /// A new journal takes 2 KiB pages; one made with SQLite's 4 KiB keeps them, and its WAL
    /// is checkpointed after as many bytes.
    @Test func aNewJournalHasSmallPagesAndAnOldOneKeepsItsOwn() async throws {
        let fresh = try Fixture(.sqlite)
        #expect(try await fresh.sqlite.scalar("PRAGMA page_size") == SQLiteJournal.pageSize)
        #expect(SQLiteJournal.pageSize == 2048)

        let directory = Fixtures.tempDir()
        let old = try DatabaseQueue(path: directory + "/journal.sqlite")
        try await old.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA page_size = 4096")
            try db.execute(sql: "PRAGMA journal_mode = WAL")
        }
        try old.close()
        let journal = try SQLiteJournal(directory: directory, dedupeTTL: .seconds(60))
        #expect(try await journal.scalar("PRAGMA page_size") == 4096)
        #expect(journal.checkpointStartPages == SQLiteJournal.WALBytes.standard.start / 4096)
        #expect(try await journal.scalar("PRAGMA journal_size_limit") == SQLiteJournal.WALBytes.standard.limit)
        let event = try Fixtures.event("guest_booked")
        let accepted = try await journal.append(JournalEntry(event: event, dedupeKey: nil, notifiers: ["slack"]))
        guard case .accepted(let deliveries) = accepted else { Issue.record("not accepted: \(accepted)"); return }
        #expect(deliveries.count == 1)
        #expect(try await journal.event(id: event.id)?.body == event.body)
    }

    /// The writer's own BEGIN and COMMIT: a batch that throws, or whose commit fails, leaves
    /// nothing behind and the connection out of any transaction, ready for the next batch.
    @Test func aFailedBatchIsRolledBackWhole() throws {
        let pool = try DatabasePool(path: Fixtures.tempDir() + "/t.sqlite")
        let statements = SQLiteStatements()
        defer { pool.writeWithoutTransaction { _ in statements.finalize() } }
        struct Refused: Error {}
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "CREATE TABLE t (x INTEGER PRIMARY KEY)")
            #expect(throws: Refused.self) {
                try statements.transaction(db) {
                    try db.execute(sql: "INSERT INTO t VALUES (1)")
                    throw Refused()
                }
            }
            #expect(!db.isInsideTransaction)
            // A deferred foreign key fails the COMMIT itself, which leaves the transaction open.
            try db.execute(sql: "PRAGMA foreign_keys = ON")
            try db.execute(sql: "CREATE TABLE c (p INTEGER REFERENCES t(x) DEFERRABLE INITIALLY DEFERRED)")
            #expect(throws: DatabaseError.self) {
                try statements.transaction(db) { try db.execute(sql: "INSERT INTO c VALUES (7)") }
            }
            #expect(!db.isInsideTransaction)
            try statements.transaction(db) { try db.execute(sql: "INSERT INTO t VALUES (2)") }
            #expect(try Int.fetchAll(db, sql: "SELECT x FROM t") == [2])
            #expect(try Int.fetchOne(db, sql: "SELECT count(*) FROM c") == 0)
        }
    }

    /// Values are bound from a 256 KiB arena; a body larger than what is left of it is bound
    /// for SQLite to copy. Both come back byte for byte, next to small values.
    @Test func bodiesLargerThanTheBindingArenaAreStoredWhole() async throws {
        let f = try Fixture(.sqlite)
        let large = Data((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let small = Data("{\"a\":1}".utf8)
        try await f.append("evt_large", key: String(repeating: "k", count: 200), body: large)
        try await f.append("evt_small", key: "k2", body: small)
        #expect(try await f.journal.event(id: "evt_large")?.body == large)
        #expect(try await f.journal.event(id: "evt_small")?.body == small)
        #expect(try await f.append("evt_again", key: String(repeating: "k", count: 200)) == .duplicate(of: "evt_large"))
    }

    /// A journal directory whose journal stops at migration `last`, with `fill`'s rows: what
    /// an older Herald left, for the upgrade tests.
    private static func journal(upTo last: String, _ fill: @escaping @Sendable (Database) throws -> Void) async throws
        -> TempDirectory {
        let directory = TempDirectory()
        try FileManager.default.createDirectory(atPath: directory.path, withIntermediateDirectories: true)
        let old = try DatabaseQueue(path: directory.path + "/journal.sqlite")
        try SQLiteJournal.migrator.migrate(old, upTo: last)
        try await old.write(fill)
        try old.close()
        return directory
    }

    /// A journal from before v7, whose state rule was an `IN` list, is rebuilt with the same
    /// rows and ids, and its indexes; the rule still refuses an unknown state, and no delivery
    /// write builds a temporary b-tree for it any more.
    @Test func upgradingToV7KeepsDeliveriesAndTheirIDs() async throws {
        let directory = try await Self.journal(upTo: "v6: no index on state alone") { db in
            try db.execute(sql: "INSERT INTO events (id, endpoint, name, received_at) VALUES ('evt_1', '/h', 'guest_booked', 1)")
            for state in ["pending", "leased", "delivered", "dead", "skipped"] {
                try db.execute(sql: """
                    INSERT INTO deliveries (event_id, notifier, state, attempts, updated_at, booking_key, reminder_offset)
                    VALUES ('evt_1', 'slack', ?, 2, 1, 'bk_1', 3600)
                    """, arguments: [state])
            }
            // Pruned (the newest delivery stays from v11 on; see the v11 test for a pruned newest).
            try db.execute(sql: "DELETE FROM deliveries WHERE id = 3")
        }
        let journal = try SQLiteJournal(directory: directory.path, dedupeTTL: Fixture.ttl)
        #expect(try await journal.scalar("SELECT COUNT(*) FROM deliveries WHERE attempts = 2 AND booking_key = 'bk_1'") == 4)
        #expect(try await journal.delivery(id: 4)?.state == .dead)
        #expect(try await journal.delivery(id: 3) == nil)
        #expect(try await journal.undeliveredCount() == 2)
        #expect(try await journal.scalar("""
            SELECT COUNT(*) FROM sqlite_schema WHERE tbl_name = 'deliveries' AND type = 'index'
            AND name IN ('deliveries_due', 'deliveries_lease', 'deliveries_event', 'deliveries_reminders')
            """) == 4)
        let entry = makeEntry("evt_2", endpoint: "/h", key: nil, notifiers: ["slack"], body: Data("{}".utf8), receivedAt: Date())
        guard case .accepted(let ids) = try await journal.append(entry) else { Issue.record("not accepted"); return }
        #expect(ids["slack"] == 6)
        await #expect(throws: (any Error).self) { try await journal.scalar("UPDATE deliveries SET state = 'bogus' WHERE id = 1") }
        let reader = try DatabaseQueue(path: directory.path + "/journal.sqlite")
        for sql in [SQLiteJournal.OutcomeSQL.final, SQLiteJournal.OutcomeSQL.retry, SQLiteJournal.OutcomeSQL.release,
                    SQLiteJournal.OutcomeSQL.postpone,
                    "INSERT INTO deliveries (event_id, notifier, state, updated_at) VALUES ('evt_1', 'slack', ?, 1)"] {
            let program = try reader.read { db in
                let explain = try db.makeStatement(sql: "EXPLAIN " + sql)
                explain.setUncheckedArguments([])  // parameters stay NULL: only the program is read
                return try Row.fetchAll(explain)
            }
            #expect(!program.contains { ($0["opcode"] as String?) == "OpenEphemeral" }, "\(sql)")
        }
    }

    /// A v7 journal's dedupe keys and bookings are carried into their v8 tables, keyed by
    /// their primary key alone (no rowid table beside it): a redelivery seen before the
    /// upgrade is still a duplicate, the day's bookings still list, and a new event replaces
    /// its booking as before.
    @Test func upgradingToV8KeepsDedupeKeysAndBookings() async throws {
        let now = Date().timeIntervalSince1970
        let directory = try await Self.journal(upTo: "v7: deliveries' state rule and indexes") { db in
            try db.execute(sql: "INSERT INTO events (id, endpoint, name, received_at) VALUES ('evt_1', '/h', 'guest_booked', ?)",
                           arguments: [now])
            try db.execute(sql: "INSERT INTO dedupe (endpoint, key, event_id, seen_at) VALUES ('/h', 'k1', 'evt_1', ?)",
                           arguments: [now])
            for (uid, start) in [("bk_a", 7200.0), ("bk_b", 3600.0)] {
                try db.execute(sql: """
                    INSERT INTO bookings (uid, status, event_type_uid, started_at, ended_at, time_zone, guest_name,
                                          guest_email, event_id, event_name)
                    VALUES (?, 'open', 'et_1', ?, NULL, 'Asia/Tokyo', 'Guest', 'g@example.com', 'evt_1', 'guest_booked')
                    """, arguments: [uid, start])
            }
        }
        let journal = try SQLiteJournal(directory: directory.path, dedupeTTL: Fixture.ttl)
        #expect(try await journal.scalar("""
            SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('dedupe', 'bookings')
            AND sql LIKE '%WITHOUT ROWID'
            """) == 2)
        // Neither time index is left: dedupe_seen went with v9, bookings_start with v10; the
        // listing below still comes in start order.
        #expect(try await journal.scalar("""
            SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND name IN ('dedupe_seen', 'bookings_start')
            """) == 0)
        let again = makeEntry("evt_2", endpoint: "/h", key: "k1", notifiers: [], receivedAt: Date())
        #expect(try await journal.append(again) == .duplicate(of: "evt_1"))
        let listed = try await journal.bookings(startingFrom: Date(timeIntervalSince1970: 0), before: Date(timeIntervalSince1970: 86400))
        #expect(listed.map(\.uid) == ["bk_b", "bk_a"])
        #expect(listed.first?.guestEmail == "g@example.com")
        let event = try EventSource.jicoo.decode(body: Data(#"{"event":"guest_cancelled","object":{"uid":"bk_a","status":"cancel","startedAt":"1970-01-01T02:00:00Z"}}"#.utf8),
                                                 endpoint: "/h")
        var entry = JournalEntry(event: event, dedupeKey: nil, notifiers: [])
        entry.booking = BookingSnapshot(event)
        guard case .accepted = try await journal.append(entry) else { Issue.record("not accepted"); return }
        let after = try await journal.bookings(startingFrom: Date(timeIntervalSince1970: 0), before: Date(timeIntervalSince1970: 86400))
        #expect(after.map(\.uid) == ["bk_b", "bk_a"])
        #expect(after.last?.status == "cancel")
        #expect(after.last?.eventID == event.id)
    }

    /// A v10 journal's deliveries are rebuilt without AUTOINCREMENT and without the foreign key
    /// to their event (v11), with the same rows and ids and their four indexes. A new delivery
    /// takes the id after the largest. An id pruned before the upgrade comes back only when it
    /// was the newest, which the prune no longer removes (next test).
    @Test func upgradingToV11KeepsDeliveriesAndTheirIDs() async throws {
        let directory = try await Self.journal(upTo: "v10: no index on bookings' start times") { db in
            try db.execute(sql: "INSERT INTO events (id, endpoint, name, received_at) VALUES ('evt_1', '/h', 'guest_booked', 1)")
            for state in ["pending", "leased", "delivered", "dead", "skipped"] {
                try db.execute(sql: """
                    INSERT INTO deliveries (event_id, notifier, state, attempts, updated_at, owner, booking_key,
                                            reminder_offset, remind_at)
                    VALUES ('evt_1', 'slack', ?, 2, 1, 'me', 'bk_1', 3600, 7)
                    """, arguments: [state])
            }
            try db.execute(sql: "DELETE FROM deliveries WHERE id = 2")
        }
        let journal = try SQLiteJournal(directory: directory.path, dedupeTTL: Fixture.ttl)
        #expect(try await journal.scalar("""
            SELECT COUNT(*) FROM sqlite_schema WHERE name = 'deliveries'
            AND sql NOT LIKE '%AUTOINCREMENT%' AND sql NOT LIKE '%REFERENCES%'
            """) == 1)
        #expect(try await journal.scalar("SELECT COUNT(*) FROM sqlite_sequence WHERE name = 'deliveries'") == 0)
        #expect(try await journal.scalar("""
            SELECT COUNT(*) FROM sqlite_schema WHERE tbl_name = 'deliveries' AND type = 'index'
            AND name IN ('deliveries_due', 'deliveries_lease', 'deliveries_event', 'deliveries_reminders')
            """) == 4)
        #expect(try await journal.scalar("""
            SELECT COUNT(*) FROM deliveries WHERE event_id = 'evt_1' AND attempts = 2 AND owner = 'me'
            AND booking_key = 'bk_1' AND reminder_offset = 3600 AND remind_at = 7
            """) == 4)
        #expect(try await journal.delivery(id: 2) == nil)
        #expect(try await journal.delivery(id: 5)?.state == .skipped)
        let entry = makeEntry("evt_2", endpoint: "/h", key: nil, notifiers: ["slack", "mail"], body: Data("{}".utf8),
                              receivedAt: Date())
        guard case .accepted(let ids) = try await journal.append(entry) else { Issue.record("not accepted"); return }
        #expect(Set(ids.values) == [6, 7])
    }

    /// The prune keeps the newest delivery and its event, however old: a new delivery takes
    /// the id after the largest, so no id is given out twice. Deliveries go with their events
    /// (no foreign key does it since v11), and the kept one goes once a newer one exists.
    @Test func pruneKeepsTheNewestDeliverySoItsIDIsNotGivenOutAgain() async throws {
        let f = try Fixture(.sqlite)
        let old = f.clock.now - 100
        let first = try #require(try await f.accept("evt_1", receivedAt: old)["slack"])
        let newest = try await f.accept("evt_2", notifiers: ["slack", "mail"], receivedAt: old)
        _ = try await f.lease("slack")
        _ = try await f.lease("mail")
        for id in [first] + Array(newest.values) { #expect(try await f.record(.delivered(id))) }
        #expect(try await f.journal.prune(before: f.clock.now - 10) == 1)
        #expect(try await f.journal.event(id: "evt_1") == nil)
        #expect(try await f.delivery(first) == nil)
        #expect(try await f.journal.event(id: "evt_2") != nil)
        #expect(try await f.sqlite.scalar("SELECT COUNT(*) FROM deliveries") == 2)
        let next = try #require(try await f.accept("evt_3")["slack"])
        #expect(next == newest.values.max()! + 1)
        #expect(try await f.journal.prune(before: f.clock.now - 10) == 1)
        #expect(try await f.journal.event(id: "evt_2") == nil)
        #expect(try await f.sqlite.scalar("SELECT COUNT(*) FROM deliveries") == 1)
    }

    /// Another process's ring (`herald deliveries retry` rewriting `wake`) ends a wait; a
    /// write to any other file in the directory does not, cancellation does, and releasing
    /// the wake-ups ends the watch: no descriptor of this process watches the directory then.
    @Test func wakeUpsWakeOnTheWakeFileAndStopWhenReleased() async throws {
        let directory = TempDirectory()
        try FileManager.default.createDirectory(atPath: directory.path, withIntermediateDirectories: true)
        var wakeUps: SQLiteWakeUps? = SQLiteWakeUps(directory: directory.path)
        let woken = StopFlag()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { [wakeUps] in
                await wakeUps?.wait()
                woken.value.store(true, ordering: .relaxed)
            }
            // The watch starts with the first wait: until it is there, nothing can be seen.
            #expect(try await waitUntil(.seconds(20)) { !Self.inotifyWatches(of: directory.path).isEmpty })
            try Data("x".utf8).write(to: URL(fileURLWithPath: directory.path).appendingPathComponent("journal.sqlite-wal"))
            try await Task.sleep(for: .milliseconds(300))
            let early = woken.value.load(ordering: .relaxed)
            #expect(!early, "a write to another file woke the wait")
            SQLiteWakeUps.ring(directory: directory.path)
            #expect(try await waitUntil(.seconds(20)) { woken.value.load(ordering: .relaxed) })
            try await group.waitForAll()

            // Cancelled, a wait returns without a ring.
            group.addTask { [wakeUps] in await wakeUps?.wait() }
            try await Task.sleep(for: .milliseconds(100))
            group.cancelAll()
            try await group.waitForAll()
        }
        wakeUps = nil
        #expect(try await waitUntil(.seconds(20)) { Self.inotifyWatches(of: directory.path).isEmpty },
                "the watcher kept its inotify descriptor after the wake-ups were released")
    }

    /// This process's descriptors with an inotify watch on `directory` (its inode, as
    /// /proc/self/fdinfo shows it).
    static func inotifyWatches(of directory: String) -> [String] {
        guard let inode = (try? FileManager.default.attributesOfItem(atPath: directory))?[.systemFileNumber] as? UInt64,
              let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fdinfo") else { return [] }
        let needle = "ino:\(String(inode, radix: 16)) "
        return fds.filter { fd in
            guard let info = try? String(contentsOfFile: "/proc/self/fdinfo/\(fd)", encoding: .utf8) else { return false }
            return info.split(separator: "\n").contains { $0.hasPrefix("inotify ") && $0.contains(needle) }
        }
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

extension Result {
    /// The error of a failure; nil for a success.
    var error: Failure? { if case .failure(let error) = self { error } else { nil } }
}
