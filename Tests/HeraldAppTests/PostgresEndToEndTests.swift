import AsyncHTTPClient
import Foundation
import HeraldCore
import HeraldPostgres
import HeraldTesting
import NIOCore
import Synchronization
import Testing

/// The test PostgreSQL server (`scripts/test-postgres.sh`), for the real binary: each test gets
/// a database of its own, made with the server's `psql`.
enum AppPostgres {
    static let environment = ProcessInfo.processInfo.environment
    static let url = environment["HERALD_TEST_POSTGRES_URL"]
    static let missing = "needs PostgreSQL: HERALD_TEST_POSTGRES_URL is not set (run the tests through scripts/test-postgres.sh)"
    /// Runs the tests when the server is there, and under CI, where its absence fails them.
    static var enabled: Bool { url != nil || environment["CI"] == "true" }

    /// The URL of a new, empty database.
    static func newDatabase() async throws -> String {
        guard let url, let bin = environment["HERALD_TEST_POSTGRES_BIN"] else {
            Issue.record(Comment(rawValue: missing))
            throw HeraldProcessError(message: missing)
        }
        let name = "herald_e2e_\(UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16))"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin + "/psql")
        p.arguments = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", "CREATE DATABASE \(name)"]
        p.standardOutput = FileHandle.nullDevice
        guard try await ChildProcess.run(p).status == 0 else { throw HeraldProcessError(message: "psql could not create \(name)") }
        // The test URL names its database last, with no parameters after it.
        guard let slash = url.lastIndex(of: "/") else { throw HeraldProcessError(message: "unexpected test URL form") }
        return url[..<slash] + "/" + name
    }

    /// The port in a postgres:// URL.
    static func port(of url: String) -> Int? {
        url.firstMatch(of: /@[^\/]+:(\d+)\//).flatMap { Int($0.1) }
    }
}

/// Several `herald serve` processes on one PostgreSQL journal, as behind a load balancer.
@Suite("PostgreSQL end to end", .serialized, .enabled(if: AppPostgres.enabled, Comment(rawValue: AppPostgres.missing)))
struct PostgresEndToEndTests {
    let secret = "pg-e2e-secret"

    func bodies(_ count: Int, tag: String) throws -> [Data] {
        let template = try String(contentsOf: HeraldProcess.sharedVectors.appendingPathComponent("jicoo-events/guest_booked.json"),
                                  encoding: .utf8)
        return (0..<count).map { Data(template.replacingOccurrences(of: "bk_7Qx2mZp9", with: "bk_\(tag)_\($0)").utf8) }
    }

    /// One configuration for every instance: the database and the output file come from the
    /// environment, so each instance writes its own file.
    func writeConfig(_ dir: String, leaseTime: String = "3s") throws -> String {
        let config = "\(dir)/herald.yaml"
        try """
            storage: { postgres: { url: "${DATABASE_URL}", poolSize: 6 }, leaseTime: \(leaseTime) }
            log: { level: notice, format: json }
            endpoints: [{ path: /hooks/jicoo, secrets: [\(secret)] }]
            notifiers:
              audit: { kind: file, path: "${HERALD_OUT}", concurrency: 8 }
            routes:
              - { events: ["*"], notify: [audit] }
            """.write(toFile: config, atomically: true, encoding: .utf8)
        return config
    }

    func eventIDs(_ files: [String]) -> [String] {
        files.flatMap { jsonLines($0).compactMap { $0["eventId"] as? String } }
    }

    /// Three instances share the journal; 3,000 signed requests go round-robin; one instance
    /// is killed with SIGKILL partway. Every acknowledged event is delivered, by the survivors
    /// taking over the dead instance's leases, and a notification is repeated only for a
    /// delivery that was in flight in the killed process.
    @Test func threeInstancesLoseNothingWhenOneIsKilled() async throws {
        let database = try await AppPostgres.newDatabase()
        let dir = tempDir()
        let config = try writeConfig(dir)
        var instances: [HeraldProcess] = []
        for i in 0..<3 {
            instances.append(try await HeraldProcess(config: config, environment: [
                "DATABASE_URL": database, "HERALD_OUT": "\(dir)/out-\(i).jsonl",
            ]))
        }
        let victim = instances[0]
        let all = try bodies(3000, tag: "three")
        let tally = Tally()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, body) in all.enumerated() {
                if i >= 48 { try await group.next() }
                let target = instances[i % 3]
                // Requests to the killed instance after the kill are refused, as a load
                // balancer's health check would take it out.
                if target === victim, tally.killed.load(ordering: .relaxed) { continue }
                let url = "\(target.url)/hooks/jicoo"
                group.addTask {
                    guard let (status, text) = try? await postSigned(url, body: body, secret: secret, timeout: .seconds(20)),
                          status == 202 else { return }
                    let id = (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])?["id"] as? String
                    let n = tally.acknowledged.withLock { list in
                        if let id { list.append(id) }
                        return list.count
                    }
                    if n >= 900, !tally.killed.exchange(true, ordering: .relaxed) {
                        kill(victim.process.processIdentifier, SIGKILL)
                    }
                }
            }
            try await group.waitForAll()
        }
        let killed = tally.killed.load(ordering: .relaxed)
        #expect(killed)
        let accepted = Set(tally.acknowledged.withLock { $0 })
        #expect(accepted.count > 2000, "the survivors kept accepting")
        _ = try? await victim.stop(signal: SIGKILL, timeout: .seconds(5))

        let files = (0..<3).map { "\(dir)/out-\($0).jsonl" }
        let delivered = try await waitUntil(.seconds(90)) { accepted.isSubset(of: Set(eventIDs(files))) }
        let lines = eventIDs(files)
        let missing = accepted.subtracting(lines)
        #expect(delivered, "\(missing.count) acknowledged events were never delivered, e.g. \(missing.prefix(3))")
        // A repeat can only come from a delivery the killed instance held when it died, which
        // a survivor then took over.
        let survivors = instances.dropFirst()
        let takenOver = survivors.flatMap { $0.log.matches(of: /took over (\d+) deliveries/).compactMap { Int($0.1) } }
            .reduce(0, +)
        let duplicates = lines.count - Set(lines).count
        #expect(duplicates <= takenOver, "\(duplicates) repeated notifications, but only \(takenOver) deliveries were taken over")
        for instance in survivors { #expect(try await instance.stop() == 0) }
    }

    /// The database goes away for 10 s under load: requests get 503 with Retry-After (never a
    /// 202 that was not committed), `/readyz` turns 503, and once the database is back Herald
    /// accepts and delivers again by itself, having lost nothing it acknowledged.
    @Test func aDatabaseOutageAnswers503AndLosesNothing() async throws {
        let database = try await AppPostgres.newDatabase()
        let port = try #require(AppPostgres.port(of: database))
        let proxy = try await CuttableProxy(targetPort: port)
        defer { proxy.stop() }
        let viaProxy = database.replacingOccurrences(of: ":\(port)/", with: ":\(proxy.port)/")
        let dir = tempDir()
        let config = try writeConfig(dir)
        let herald = try await HeraldProcess(config: config, environment: ["DATABASE_URL": viaProxy, "HERALD_OUT": "\(dir)/out.jsonl"])
        let url = "\(herald.url)/hooks/jicoo"
        let all = try bodies(100_000, tag: "outage")
        let t = OutageTally()

        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    while !t.stop.load(ordering: .relaxed) {
                        let i = t.next.add(1, ordering: .relaxed).oldValue
                        guard i < all.count else { return }
                        guard let (status, retryAfter, text) = try? await post(url, body: all[i]) else { continue }
                        if status == 202 {
                            let id = (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])?["id"] as? String
                            t.acknowledged.withLock { if let id { $0.append(id) } }
                            if t.phase.load(ordering: .relaxed) == 2 { t.acceptedAfter.add(1, ordering: .relaxed) }
                        } else if status == 503 {
                            if t.phase.load(ordering: .relaxed) == 1 { t.refusedDuringOutage.add(1, ordering: .relaxed) }
                            if retryAfter == nil { t.refusedWithoutRetryAfter.add(1, ordering: .relaxed) }
                            try? await Task.sleep(for: .milliseconds(50))
                        }
                    }
                }
            }
            group.addTask {
                defer { t.stop.store(true, ordering: .relaxed) }
                _ = try await waitUntil(.seconds(30)) { t.acknowledged.withLock { $0.count } >= 200 }
                t.phase.store(1, ordering: .relaxed)
                proxy.cut()
                let notReady = try await waitUntil(.seconds(10)) { await readyz(herald.url) == 503 }
                #expect(notReady, "/readyz stayed 200 while the database was unreachable; \(t.acknowledged.withLock { $0.count }) acknowledged; log: \(herald.log.suffix(3000))")
                try await Task.sleep(for: .seconds(10))
                t.phase.store(2, ordering: .relaxed)
                proxy.restore()
                let resumed = try await waitUntil(.seconds(60)) { t.acceptedAfter.load(ordering: .relaxed) >= 200 }
                #expect(resumed, "Herald did not accept again after the database came back; log: \(herald.log.suffix(6000))")
                #expect(try await waitUntil(.seconds(30)) { await readyz(herald.url) == 200 })
            }
            try await group.waitForAll()
        }
        #expect(t.refusedDuringOutage.load(ordering: .relaxed) > 0, "no request was refused while the database was away")
        #expect(t.refusedWithoutRetryAfter.load(ordering: .relaxed) == 0)
        let accepted = Set(t.acknowledged.withLock { $0 })
        let delivered = try await waitUntil(.seconds(60)) { accepted.isSubset(of: Set(eventIDs(["\(dir)/out.jsonl"]))) }
        let missing = accepted.subtracting(eventIDs(["\(dir)/out.jsonl"]))
        #expect(delivered, "\(missing.count) acknowledged events were never delivered, e.g. \(missing.prefix(3))")
        #expect(try await herald.stop() == 0)
    }
}

/// `herald journal copy` moves an SQLite journal into PostgreSQL: nothing waiting is lost,
/// dedupe still holds, delivery ids stay, and a database that holds data is refused.
@Suite("journal copy", .enabled(if: AppPostgres.enabled, Comment(rawValue: AppPostgres.missing)))
struct JournalCopyTests {
    @Test func anSQLiteJournalMovesToAnEmptyDatabaseOnce() async throws {
        let dir = tempDir()
        let sqlite = try SQLiteJournal(directory: dir, dedupeTTL: .seconds(7 * 86400))
        func entry(_ id: String, key: String?, notifiers: [String], leased: [String] = []) -> JournalEntry {
            let event = Event(id: id, endpoint: "/hooks/jicoo", source: "jicoo", name: "guest_booked", receivedAt: Date(),
                              occurredAt: nil, booking: nil, payload: .null, body: Data("{\"n\":\"\(id)\"}".utf8))
            return JournalEntry(event: event, dedupeKey: key, notifiers: notifiers,
                                lease: Lease(owner: "old", until: Date() + 60), leased: leased)
        }
        _ = try await sqlite.append(entry("evt_done", key: "booking-1", notifiers: ["audit"], leased: ["audit"]))
        _ = try await sqlite.append(entry("evt_waiting", key: "booking-2", notifiers: ["audit", "mail"]))
        _ = try await sqlite.append(entry("evt_in_flight", key: nil, notifiers: ["audit"], leased: ["audit"]))
        let done = try #require(try await sqlite.deliveries(DeliveryQuery(notifier: "audit")).first { $0.eventID == "evt_done" })
        #expect(try await sqlite.record([.delivered(done.id)], owner: "old") == [])
        let before = try await sqlite.deliveries(DeliveryQuery(limit: 100))
        try sqlite.close()

        let database = try await AppPostgres.newDatabase()
        let copy = try await runHerald(["journal", "copy", "--from", "sqlite:\(dir)", "--to", "postgres:\(database)"])
        #expect(copy.status == 0, "\(copy.output)")
        #expect(copy.output.contains("copied 3 events, 4 deliveries (3 not yet done) and 2 dedupe keys"))
        let password = try #require(try PostgresURL(parsing: database).password.map { String(decoding: $0.bytes, as: UTF8.self) })
        #expect(!copy.output.contains(password))

        let journal = try PostgresJournal(url: try PostgresURL(parsing: database), poolSize: 2, operationTimeout: .seconds(30))
        try await PostgresJournal.withJournal(journal, migrate: false) { journal in
            let after = try await journal.deliveries(DeliveryQuery(limit: 100))
            #expect(after.map(\.id) == before.map(\.id))
            let states = Dictionary(uniqueKeysWithValues: after.map { ("\($0.eventID)/\($0.notifier)", $0.state) })
            #expect(states == ["evt_done/audit": .delivered, "evt_waiting/audit": .pending, "evt_waiting/mail": .pending,
                               "evt_in_flight/audit": .pending])
            #expect(try await journal.event(id: "evt_waiting")?.body == Data("{\"n\":\"evt_waiting\"}".utf8))
            // Dedupe keys came along: the same booking posted again is a duplicate.
            #expect(try await journal.append(entry("evt_again", key: "booking-2", notifiers: ["audit"])) == .duplicate(of: "evt_waiting"))
            // New deliveries get ids after the copied ones.
            guard case .accepted(let ids) = try await journal.append(entry("evt_new", key: nil, notifiers: ["audit"])) else {
                Issue.record("evt_new was not accepted")
                return
            }
            #expect(ids["audit"].map { $0 > before.map(\.id).max()! } == true)
            // The delivery the old process held is due now, for any instance.
            let taken = try await journal.lease(LeaseRequest(notifier: "audit", owner: "new", now: Date(), until: Date() + 60,
                                                             limit: 10, deadAfter: 3))
            #expect(Set(taken.deliveries.map(\.record.eventID)) == ["evt_waiting", "evt_in_flight", "evt_new"])
        }

        let again = try await runHerald(["journal", "copy", "--from", "sqlite:\(dir)", "--to", "postgres:\(database)"])
        #expect(again.status == 1)
        #expect(again.output.contains("is not empty"), "\(again.output)")
    }
}

/// What the outage test's load saw, shared by its tasks.
final class OutageTally: Sendable {
    let next = Atomic<Int>(0)
    let acknowledged = Mutex<[String]>([])
    /// 0 before the outage, 1 during, 2 after.
    let phase = Atomic<Int>(0)
    let refusedDuringOutage = Atomic<Int>(0)
    let refusedWithoutRetryAfter = Atomic<Int>(0)
    let acceptedAfter = Atomic<Int>(0)
    let stop = Atomic<Bool>(false)
}

/// `Tests/Support/tcp_proxy.py` between Herald and the database: cut and restored at will.
final class CuttableProxy: Sendable {
    let process: Process
    let port: Int
    private let input: Pipe
    private let output: Pipe

    init(targetPort: Int) async throws {
        let helper = try await SupportScript("tcp_proxy.py", arguments: [String(targetPort)])
        let p = helper.process
        process = p
        input = helper.input
        output = helper.output
        let text = helper.firstLine
        guard let match = text.firstMatch(of: /listening on (\d+)/), let port = Int(match.1) else {
            p.terminate()
            throw HeraldProcessError(message: "tcp_proxy.py did not start: \(text)")
        }
        self.port = port
    }

    /// Closes every connection through it and refuses new ones, until ``restore()``.
    func cut() { command("cut") }
    func restore() { command("restore") }

    /// Sends a command and waits for the proxy to confirm it.
    private func command(_ name: String) {
        input.fileHandleForWriting.write(Data("\(name)\n".utf8))
        var text = ""
        while !text.contains("\(name): done"), process.isRunning {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
    }

    func stop() {
        try? input.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
    }
    deinit { stop() }
}

/// A signed post: status, `Retry-After` and body.
private func post(_ url: String, body: Data) async throws -> (Int, String?, String) {
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.headers.add(name: "Content-Type", value: "application/json")
    for h in JicooSignature(secrets: [Secret("pg-e2e-secret")]).sign(body: body, timestamp: Int64(Date().timeIntervalSince1970), id: "") {
        request.headers.add(name: h.name, value: h.value)
    }
    request.body = .bytes(ByteBuffer(bytes: body))
    let response = try await HTTPClient.shared.execute(request, timeout: .seconds(20))
    let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
    return (Int(response.status.code), response.headers.first(name: "Retry-After"), text)
}

/// `/readyz`'s status code, or 0 when it does not answer.
private func readyz(_ base: String) async -> Int {
    guard let response = try? await HTTPClient.shared.execute(HTTPClientRequest(url: "\(base)/readyz"), timeout: .seconds(5)) else {
        return 0
    }
    _ = try? await response.body.collect(upTo: 1 << 16)
    return Int(response.status.code)
}
