import Foundation
import HeraldCore
import HeraldPostgres
import HeraldTesting
import Synchronization
import Testing

/// What only a shared PostgreSQL journal has: migrations, several instances on one database,
/// TLS, and errors that never show the password. The behaviour every journal shares is in the
/// conformance suite.
@Suite(.enabled(if: TestPostgres.enabled, Comment(rawValue: TestPostgres.missing)))
struct PostgresJournalTests {
    static let start = Date(timeIntervalSince1970: 1_750_000_000)

    static func entry(_ id: String, key: String? = nil, notifiers: [String] = ["audit"], at: Date = start) -> JournalEntry {
        makeEntry(id, endpoint: "/hooks/jicoo", key: key, notifiers: notifiers, body: Data("{\"id\":\"\(id)\"}".utf8), receivedAt: at)
    }

    static func request(_ owner: String, now: Date = start, leaseSeconds: TimeInterval = 30, limit: Int = 10,
                        deadAfter: Int = 3) -> LeaseRequest {
        LeaseRequest(notifier: "audit", owner: owner, now: now, until: now.addingTimeInterval(leaseSeconds),
                     limit: limit, deadAfter: deadAfter)
    }

    @Test func migrationsCreateTheSchemaOnceAndRefuseANewerOne() async throws {
        try await TestPostgres.withDatabase { url in
            let journal = try PostgresJournal(url: url, poolSize: 2, operationTimeout: TestPostgres.timeout)
            try await PostgresJournal.withJournal(journal) { journal in
                let again = try await journal.migrate()
                #expect(again == PostgresSchema.Migration(from: PostgresSchema.current, to: PostgresSchema.current))
                try await journal.execute("INSERT INTO herald_schema_version (version) VALUES (\(PostgresSchema.current + 1))")
            }
            let error = await #expect(throws: JournalError.self) {
                try await PostgresJournal.withJournal(try PostgresJournal(url: url, poolSize: 1, operationTimeout: TestPostgres.timeout)) { _ in }
            }
            #expect(error?.kind == .newerSchema)
            #expect(error?.message.contains("version \(PostgresSchema.current + 1)") == true)
        }
    }

    @Test func aFreshDatabaseMigratesFromZero() async throws {
        try await TestPostgres.withDatabase { url in
            let journal = try PostgresJournal(url: url, poolSize: 1, operationTimeout: TestPostgres.timeout)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await journal.run() }
                defer { group.cancelAll() }
                let first = try await journal.migrate()
                let second = try await journal.migrate()
                #expect(first == PostgresSchema.Migration(from: 0, to: PostgresSchema.current))
                #expect(second.from == PostgresSchema.current)
            }
        }
    }

    /// A timed-out attempt's retry is written. The deadline cancels the delivery's task to stop
    /// the plugin, and this journal refuses a cancelled caller: the dispatcher writes that
    /// outcome from a task that is not cancelled.
    @Test func aTimedOutAttemptIsWrittenForItsRetry() async throws {
        try await TestPostgres.withDatabase { url in
            try await TestPostgres.withJournal(url) { journal in
                let h = try await Harness("  fast: { kind: recording, label: fast, timeout: 200ms, retry: { initial: 3600s } }",
                                          routes: "  - { events: [\"*\"], notify: [fast] }", journal: journal)
                h.log.delays.withLock { $0["fast"] = .seconds(30) }
                try await h.running { () async throws in
                    let (body, hdr) = try h.signed("guest_booked")
                    _ = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr)
                    #expect(try await waitUntil(.seconds(30)) {
                        let stored = try await journal.deliveries(DeliveryQuery(state: nil, notifier: "fast", limit: 1)).first
                        return stored?.state == .pending && (stored?.lastError ?? "").contains("timed out")
                    }, "pending for its retry, with the timeout as its error")
                }
            }
        }
    }

    /// Two instances taking work at once from 200 pending deliveries: each delivery goes to
    /// exactly one of them.
    @Test func twoInstancesNeverLeaseTheSameDelivery() async throws {
        try await TestPostgres.withDatabase { url in
            try await TestPostgres.withJournal(url) { first in
                try await TestPostgres.withJournal(url) { second in
                    for i in 0..<200 { _ = try await first.append(Self.entry("evt_\(i)")) }
                    let taken = try await withThrowingTaskGroup(of: [Int64].self) { group in
                        for (journal, owner) in [(first, "a"), (second, "b"), (first, "c"), (second, "d")] {
                            group.addTask {
                                var mine: [Int64] = []
                                while true {
                                    let batch = try await journal.lease(Self.request(owner, limit: 7))
                                    if batch.deliveries.isEmpty { return mine }
                                    mine += batch.deliveries.map(\.record.id)
                                }
                            }
                        }
                        return try await group.reduce(into: []) { $0 += $1 }
                    }
                    #expect(taken.count == 200)
                    #expect(Set(taken).count == 200)
                }
            }
        }
    }

    /// The same webhook posted to two instances at once is accepted once.
    @Test func dedupeHoldsAcrossInstances() async throws {
        try await TestPostgres.withDatabase { url in
            try await TestPostgres.withJournal(url) { first in
                try await TestPostgres.withJournal(url) { second in
                    let results = try await withThrowingTaskGroup(of: AppendResult.self) { group in
                        for i in 0..<20 {
                            let journal = i % 2 == 0 ? first : second
                            group.addTask { try await journal.append(Self.entry("evt_\(i)", key: "booking-1")) }
                        }
                        return try await group.reduce(into: []) { $0.append($1) }
                    }
                    let accepted = results.compactMap { result -> [String: Int64]? in
                        if case .accepted(let ids) = result { return ids } else { return nil }
                    }
                    #expect(accepted.count == 1)
                    let stored = try await first.deliveries(DeliveryQuery(limit: 100))
                    #expect(stored.count == 1)
                    let firstID = try #require(stored.first?.eventID)
                    #expect(results.filter { $0 == .duplicate(of: firstID) }.count == 19)
                }
            }
        }
    }

    /// An instance that stops renewing loses its lease to another; its late outcome is refused.
    @Test func anExpiredLeaseIsTakenOverByAnotherInstance() async throws {
        try await TestPostgres.withDatabase { url in
            try await TestPostgres.withJournal(url) { first in
                try await TestPostgres.withJournal(url) { second in
                    _ = try await first.append(Self.entry("evt_1"))
                    let held = try await first.lease(Self.request("a"))
                    let id = try #require(held.deliveries.first?.record.id)
                    #expect(try await second.lease(Self.request("b", now: Self.start.addingTimeInterval(10))).deliveries.isEmpty)
                    let later = Self.start.addingTimeInterval(31)
                    let taken = try await second.lease(Self.request("b", now: later))
                    #expect(taken.takenOver == 1)
                    let record = try #require(taken.deliveries.first?.record)
                    #expect(record.id == id && record.owner == "b" && record.interruptions == 1 && record.attempts == 2)
                    #expect(try await first.renew([id], owner: "a", until: later.addingTimeInterval(30)) == [id])
                    #expect(try await first.record([.delivered(id)], owner: "a") == [id])
                    #expect(try await second.record([.delivered(id)], owner: "b") == [])
                    #expect(try await first.deliveries(DeliveryQuery(id: id, limit: 1)).first?.state == .delivered)
                }
            }
        }
    }

    /// Work stored by one instance wakes the other's dispatcher for that notifier at once
    /// (LISTEN/NOTIFY), instead of at its next sweep; a leased append (attempted by the
    /// instance that took it) wakes nobody.
    @Test func pendingWorkWakesTheOtherInstances() async throws {
        try await TestPostgres.withDatabase { url in
            try await TestPostgres.withJournal(url) { first in
                try await TestPostgres.withJournal(url) { second in
                    let woke = try await withThrowingTaskGroup(of: String?.self) { group in
                        group.addTask { await second.waitForWork(notifier: "audit"); return "audit" }
                        group.addTask { await second.waitForWork(notifier: "mail"); return "mail" }
                        group.addTask {
                            try await Task.sleep(for: .seconds(30))
                            return nil
                        }
                        // The listener may still be connecting: append until a wake-up arrives.
                        var leasedOnly = Self.entry("evt_leased", notifiers: ["mail"])
                        leasedOnly.lease = Lease(owner: "a", until: Self.start + 60)
                        leasedOnly.leased = ["mail"]
                        _ = try await first.append(leasedOnly)
                        group.addTask {
                            for i in 0..<300 {
                                _ = try await first.append(Self.entry("evt_\(i)", notifiers: ["audit"]))
                                try await Task.sleep(for: .milliseconds(100))
                            }
                            return nil
                        }
                        let first = try await group.next() ?? nil
                        group.cancelAll()
                        return first
                    }
                    #expect(woke == "audit")
                }
            }
        }
    }

    /// A retry recorded by one instance wakes the other's dispatcher too, and the other's
    /// next lease says when it is due: it is taken on time even if the first instance is
    /// gone by then.
    @Test func aRetryWakesTheOtherInstancesAndTheirLeaseSaysWhenItIsDue() async throws {
        try await TestPostgres.withDatabase { url in
            try await TestPostgres.withJournal(url) { first in
                try await TestPostgres.withJournal(url) { second in
                    var entry = Self.entry("evt_retry")
                    entry.lease = Lease(owner: "a", until: Self.start + 60)
                    entry.leased = ["audit"]
                    guard case .accepted(let ids) = try await first.append(entry), let id = ids["audit"] else {
                        Issue.record("not accepted"); return
                    }
                    let due = Self.start.addingTimeInterval(120)
                    let stop = StopFlag()
                    let woke = try await withThrowingTaskGroup(of: Bool?.self) { group in
                        // The listener may still be connecting: lease it again and record the
                        // retry again until a wake-up arrives. Stopped by a flag, not cancelled:
                        // a cancelled journal call returns at once while its statement may still
                        // commit (PostgresJournal.first), after the checks below had begun.
                        group.addTask {
                            while !stop.value.load(ordering: .acquiring) {
                                _ = try await first.record([.retry(id, at: due, error: "busy")], owner: "a")
                                try await Task.sleep(for: .milliseconds(100))
                                _ = try await first.lease(Self.request("a", now: due))
                            }
                            return nil
                        }
                        group.addTask {
                            let woke = await withTaskGroup(of: Bool.self) { wait in
                                wait.addTask { await second.waitForWork(notifier: "audit"); return true }
                                wait.addTask { try? await Task.sleep(for: .seconds(30)); return false }
                                let answer = await wait.next() ?? false
                                wait.cancelAll()
                                return answer
                            }
                            stop.value.store(true, ordering: .releasing)
                            return woke
                        }
                        var woke = false
                        for try await answer in group { woke = answer ?? woke }
                        return woke
                    }
                    #expect(woke)
                    // Pending at its due time again, whether or not the loop had leased it last.
                    _ = try await first.record([.retry(id, at: due, error: "busy")], owner: "a")
                    let taken = try await second.lease(Self.request("b", now: Self.start.addingTimeInterval(10)))
                    #expect(taken.deliveries.isEmpty)
                    #expect(taken.nextDue == due)
                }
            }
        }
    }

    /// Outcomes of a batch go in one statement; one naming a delivery twice is still written
    /// in order, as two calls would be: the first applies, the second finds the lease gone.
    @Test func outcomesNamingADeliveryTwiceApplyInOrder() async throws {
        try await TestPostgres.withDatabase { url in
            try await TestPostgres.withJournal(url) { journal in
                _ = try await journal.append(Self.entry("evt_1"))
                _ = try await journal.append(Self.entry("evt_2"))
                let ids = try await journal.lease(Self.request("a")).deliveries.map(\.record.id)
                #expect(ids.count == 2)
                let lost = try await journal.record([.retry(ids[0], at: Self.start + 5, error: "busy"), .delivered(ids[0]),
                                                     .dead(ids[1], error: "gone")], owner: "a")
                #expect(lost == [ids[0]])
                let first = try await journal.delivery(id: ids[0])
                #expect(first?.state == .pending && first?.lastError == "busy" && first?.dueAt == Self.start + 5)
                #expect(try await journal.delivery(id: ids[1])?.state == .dead)
            }
        }
    }

    /// Pruning is once per cluster: while another instance holds the lock, it does nothing.
    @Test func pruneRunsUnderAnAdvisoryLock() async throws {
        try await TestPostgres.withDatabase { url in
            try await TestPostgres.withJournal(url) { journal in
                _ = try await journal.append(Self.entry("evt_1"))
                let id = try #require(try await journal.lease(Self.request("a")).deliveries.first?.record.id)
                #expect(try await journal.record([.delivered(id)], owner: "a") == [])
                let cutoff = Self.start.addingTimeInterval(1)
                let pruned = try await journal.whileHoldingPruneLock {
                    try await journal.prune(before: cutoff)
                }
                #expect(pruned == 0)
                #expect(try await journal.event(id: "evt_1") != nil)
                #expect(try await journal.prune(before: cutoff) == 1)
                #expect(try await journal.event(id: "evt_1") == nil)
            }
        }
    }

    @Test func tlsWithVerifyFullAgainstTheTestCertificate() async throws {
        _ = try TestPostgres.url()
        let text = try #require(TestPostgres.tlsURLText, "HERALD_TEST_POSTGRES_TLS_URL is not set")
        let url = try PostgresURL(parsing: text)
        #expect(url.sslMode == .verifyFull)
        try await TestPostgres.withJournal(url) { journal in
            let ssl = try await journal.queryStrings("SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            #expect(ssl == ["true"])
        }
        // The same user without TLS is refused by the server (pg_hba: hostssl only).
        var plain = url
        plain.sslMode = .disable
        plain.sslRootCert = nil
        let error = await #expect(throws: JournalError.self) {
            try await TestPostgres.withJournal(plain) { _ in }
        }
        #expect(error?.kind == .cannotOpen)
        let password = try #require(url.password.map { String(decoding: $0.bytes, as: UTF8.self) })
        #expect(error.map { !"\($0)".contains(password) && !$0.path.contains(password) } == true)
    }

    @Test func aCertificateFromAnotherAuthorityIsRefused() async throws {
        _ = try TestPostgres.url()
        let text = try #require(TestPostgres.tlsURLText, "HERALD_TEST_POSTGRES_TLS_URL is not set")
        var url = try PostgresURL(parsing: text)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("herald-ca-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                             "-keyout", directory + "/other.key", "-out", directory + "/other.crt"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        #expect(try await ChildProcess.run(process).status == 0, "openssl could not make a certificate")
        url.sslRootCert = directory + "/other.crt"
        let error = await #expect(throws: JournalError.self) {
            try await TestPostgres.withJournal(url) { _ in }
        }
        #expect(error?.kind == .cannotOpen)
        #expect(error?.message.contains("TLS") == true)
    }

    @Test func aWrongPasswordIsNamedWithoutTheURLsPassword() async throws {
        var url = try TestPostgres.url()
        url.password = Secret("not-the-password-\(UUID().uuidString)")
        let error = await #expect(throws: JournalError.self) {
            try await TestPostgres.withJournal(url) { _ in }
        }
        #expect(error?.kind == .cannotOpen)
        #expect(error?.message.contains(url.user) == true)
        #expect(error.map { !"\($0)".contains("not-the-password") && !$0.path.contains("not-the-password") } == true)
    }

    /// Nothing listens: the operation fails as unavailable (so requests get 503), within the
    /// journal's timeout, and the error names host and port only.
    @Test func anUnreachableServerIsUnavailable() async throws {
        var url = try TestPostgres.url()
        let refusing = RefusingPort()
        url.port = refusing.port
        defer { withExtendedLifetime(refusing) {} }
        let journal = try PostgresJournal(url: url, poolSize: 1, operationTimeout: .seconds(2))
        let error = await #expect(throws: JournalError.self) {
            try await PostgresJournal.withJournal(journal) { _ in }
        }
        #expect(error?.kind == .unavailable)
        #expect(error?.message.contains("127.0.0.1:\(url.port)") == true)
        let password = try #require(url.password.map { String(decoding: $0.bytes, as: UTF8.self) })
        #expect(error.map { !"\($0)".contains(password) && !$0.path.contains(password) } == true)
    }
}
