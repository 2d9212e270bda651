import Foundation
import GRDB

/// The durable ``Journal``: one SQLite file, `journal.sqlite`, in a directory of its own.
///
/// Appends (and the CLI's changes) are transactions committed with `synchronous = FULL` in WAL
/// mode, so when ``append(_:)`` returns the event is on disk, not only in the page cache.
/// Delivery state changes (claim, delivered, retry, dead) need no fsync of their own: they
/// reach the OS at once, so a killed process keeps them, and the next FULL commit fsyncs
/// them; a power cut may lose the last few, which only means those deliveries are sent again
/// (at-least-once). With group commit (the default), concurrent appends and state changes
/// share one transaction, so under load one fsync covers many requests and deliveries (see
/// `GroupCommit`); ``appendStatistics`` shows how many appends each commit carried.
///
/// Threads: GRDB runs every statement on its own dispatch queues (one writer, a few readers),
/// and its `async` methods suspend the caller instead of blocking a thread of Swift's
/// cooperative pool, so a slow disk never starves the tasks serving HTTP requests. Group
/// commit queues its batches on the same writer queue, behind or between the other writes.
///
/// Dates are stored as unix seconds (`REAL`, about a microsecond of precision), readable with
/// SQLite's `datetime(x, 'unixepoch')`.
/// Other processes (the CLI) may open the same file while the server runs: every connection
/// waits up to ``busyTimeout`` for a lock before failing with ``JournalError/Kind/locked``.
public final class SQLiteJournal: Journal {
    /// The path of the SQLite file.
    public let path: String
    /// How long a connection waits for another process's lock before failing.
    public static let busyTimeout: TimeInterval = 10

    private let pool: DatabasePool
    private let dedupeTTL: TimeInterval
    private let clock: @Sendable () -> Date
    private let writer: GroupCommit<Write, Written>

    /// Opens (or creates) `<directory>/journal.sqlite`, creating `directory` if needed, and
    /// brings its schema up to date.
    ///
    /// - Parameters:
    ///   - dedupeTTL: how long a dedupe key is remembered.
    ///   - groupCommit: `true` lets concurrent appends share one transaction and one fsync;
    ///     `false` commits every append on its own (for comparison and benchmarks).
    ///   - clock: the time used for dedupe, `updated_at` and recovery (injectable for tests).
    /// - Throws: ``JournalError`` naming the path, e.g. when the directory is not writable or
    ///   the file is not a journal.
    public init(directory: String, dedupeTTL: Duration, groupCommit: Bool = true,
                clock: @escaping @Sendable () -> Date = { Date() }) throws {
        path = URL(fileURLWithPath: directory).appendingPathComponent("journal.sqlite").path
        self.dedupeTTL = dedupeTTL.seconds
        self.clock = clock
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw JournalError(.cannotOpen, path: path,
                               "cannot create the journal directory \(directory): \(error.localizedDescription)")
        }
        do {
            var config = Configuration()
            config.busyMode = .timeout(Self.busyTimeout)
            config.label = "herald.journal"
            pool = try DatabasePool(path: path, configuration: config)
            // After the pool is open: GRDB's WAL setup sets `synchronous = NORMAL`, which
            // survives a killed process but not a power cut. FULL fsyncs the WAL on commit.
            try pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA synchronous = FULL") }
            try Self.migrator.migrate(pool)
            try Self.checkIntegrity(pool, path: path)
        } catch {
            throw JournalError(error, path: path)
        }
        writer = GroupCommit(pool: pool, grouped: groupCommit, isDurable: \.isAppend) { [ttl = dedupeTTL.seconds] writes, db in
            try writes.map { write in
                switch write {
                case .append(let item): .appended(try Self.store(item, ttl: ttl, db))
                case .change(let change): .changed(try change.apply(db))
                }
            }
        }
    }

    /// Refuses a damaged file (truncated, overwritten) at open, with SQLite's own finding,
    /// instead of starting and failing every append with 503 afterwards. `quick_check` reads
    /// every page once: about a second per few hundred MB.
    private static func checkIntegrity(_ pool: DatabasePool, path: String) throws {
        let findings = try pool.read { db in try String.fetchAll(db, sql: "PRAGMA quick_check(3)") }
        guard findings != ["ok"] else { return }
        throw JournalError(.corrupted, path: path, "\(path) is damaged (\(findings.joined(separator: "; "))): "
            + "restore it from a backup, or move it away to start an empty journal")
    }

    /// Opens the journal in `directory` only if it already exists, so that a CLI command
    /// pointed at the wrong place fails instead of creating a new, empty journal there.
    ///
    /// - Throws: ``JournalError`` of kind ``JournalError/Kind/notFound`` naming the missing file.
    public static func openExisting(directory: String, dedupeTTL: Duration = .seconds(7 * 86400),
                                    clock: @escaping @Sendable () -> Date = { Date() }) throws -> SQLiteJournal {
        let file = URL(fileURLWithPath: directory).appendingPathComponent("journal.sqlite").path
        guard FileManager.default.fileExists(atPath: file) else {
            throw JournalError(.notFound, path: file,
                               "no journal at \(file): check `storage.path` in the configuration or the --config option")
        }
        return try SQLiteJournal(directory: directory, dedupeTTL: dedupeTTL, clock: clock)
    }

    /// Closes the database connections; later calls fail. Without it, they close on deinit.
    public func close() throws {
        do { try pool.close() } catch { throw JournalError(error, path: path) }
    }

    /// How many append transactions were committed for how many appends: with group commit
    /// `commits` is much smaller than `appends` under load.
    public struct AppendStatistics: Sendable, Equatable {
        /// Committed transactions that stored appends (one fsync each).
        public var commits = 0
        /// Appends committed, duplicates included.
        public var appends = 0
        /// The most appends committed by one transaction.
        public var largestBatch = 0
    }

    /// Append statistics since the journal was opened, for tests and metrics.
    public var appendStatistics: AppendStatistics { writer.statistics }

    /// One write through the group commit, and what it gave.
    enum Write: Sendable {
        case append(AppendItem)
        case change(StateChange)
        var isAppend: Bool { if case .append = self { true } else { false } }
    }

    enum Written: Sendable {
        case appended(Result<AppendResult, any Error>)
        case changed(Bool)
    }

    private static let migrator: DatabaseMigrator = {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE events (
                    id TEXT PRIMARY KEY NOT NULL,
                    endpoint TEXT NOT NULL,
                    name TEXT NOT NULL,
                    received_at REAL NOT NULL,
                    body BLOB,  -- NULL for an empty body
                    dedupe_key TEXT);
                CREATE TABLE deliveries (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- ids are never reused after a prune
                    event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
                    notifier TEXT NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('pending', 'delivering', 'delivered', 'dead')),
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at REAL,
                    last_error TEXT,
                    updated_at REAL NOT NULL);
                CREATE INDEX deliveries_due ON deliveries(notifier, state, next_attempt_at);
                CREATE INDEX deliveries_state ON deliveries(state);
                CREATE INDEX deliveries_event ON deliveries(event_id);
                CREATE TABLE dedupe (
                    endpoint TEXT NOT NULL,
                    key TEXT NOT NULL,
                    event_id TEXT NOT NULL,
                    seen_at REAL NOT NULL,
                    PRIMARY KEY (endpoint, key));
                CREATE INDEX dedupe_seen ON dedupe(seen_at);
                """)
        }
        migrator.registerMigration("v2: interruptions") { db in
            // How often the process stopped while the delivery was in flight (crash-loop guard).
            try db.execute(sql: "ALTER TABLE deliveries ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0")
        }
        return migrator
    }()

    // MARK: - Appending

    /// Returns once the transaction holding `entry` is committed and fsynced. With group
    /// commit, the append is committed even if the calling task is cancelled meanwhile.
    public func append(_ entry: JournalEntry) async throws -> AppendResult {
        let item = AppendItem(entry: entry, now: clock().timeIntervalSince1970)
        do {
            guard case .appended(let result) = try await writer.submit(.append(item)) else {
                preconditionFailure("an append answered as a state change")
            }
            return try result.get()
        } catch {
            throw JournalError(error, path: path)
        }
    }

    /// One append. An entry that breaks a constraint (an event id stored twice) fails alone;
    /// any other error aborts the batch.
    struct AppendItem: Sendable {
        var entry: JournalEntry
        /// The journal's clock when the append was called, unix seconds.
        var now: Double
    }

    /// Stores one append inside the caller's transaction, in a savepoint so that an entry
    /// that breaks a constraint (an event id stored twice) fails alone; any other error
    /// aborts the whole batch.
    private static func store(_ item: AppendItem, ttl: TimeInterval, _ db: Database) throws -> Result<AppendResult, any Error> {
        do {
            var outcome = AppendResult.accepted(deliveries: [:])
            try db.inSavepoint {
                outcome = try insert(item, ttl: ttl, db)
                return .commit
            }
            return .success(outcome)
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
            return .failure(error)
        }
    }

    private static func insert(_ item: AppendItem, ttl: TimeInterval, _ db: Database) throws -> AppendResult {
        let entry = item.entry
        if let key = entry.dedupeKey {
            let seen = try Row.fetchOne(
                db.cachedStatement(sql: "SELECT event_id, seen_at FROM dedupe WHERE endpoint = ? AND key = ?"),
                arguments: [entry.endpoint, key])
            if let seen, item.now - (seen["seen_at"] as Double) < ttl {
                return .duplicate(of: seen["event_id"])
            }
            try db.cachedStatement(sql: """
                INSERT INTO dedupe (endpoint, key, event_id, seen_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (endpoint, key) DO UPDATE SET event_id = excluded.event_id, seen_at = excluded.seen_at
                """).execute(arguments: [entry.endpoint, key, entry.eventID, item.now])
        }
        let receivedAt = entry.receivedAt.timeIntervalSince1970
        try db.cachedStatement(sql: """
            INSERT INTO events (id, endpoint, name, received_at, body, dedupe_key) VALUES (?, ?, ?, ?, ?, ?)
            """).execute(arguments: [entry.eventID, entry.endpoint, entry.eventName, receivedAt, entry.body,
                                     entry.dedupeKey])
        let insertDelivery = try db.cachedStatement(sql: """
            INSERT INTO deliveries (event_id, notifier, state, attempts, next_attempt_at, updated_at)
            VALUES (?, ?, 'pending', 0, ?, ?)
            """)
        var ids: [String: Int64] = [:]
        for notifier in entry.notifiers where ids[notifier] == nil {
            try insertDelivery.execute(arguments: [entry.eventID, notifier, receivedAt, item.now])
            ids[notifier] = db.lastInsertedRowID
        }
        return .accepted(deliveries: ids)
    }

    // MARK: - Reading

    /// The columns ``record(_:)`` reads, in its order; more may follow them.
    private static let recordColumns = """
        d.id, d.event_id, e.name, d.notifier, d.state, d.attempts, d.next_attempt_at, d.last_error,
        e.received_at, d.updated_at
        """
    private static let recordFrom = "FROM deliveries d JOIN events e ON e.id = d.event_id"
    private static let recordSelect = "SELECT \(recordColumns) \(recordFrom)"
    /// ``due(notifier:now:limit:)``'s condition: notifier, now, limit.
    private static let dueCondition = """
        WHERE d.notifier = ? AND d.state = 'pending' AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?)
        ORDER BY d.id LIMIT ?
        """

    private static func state(_ raw: String) throws -> DeliveryState {
        guard let state = DeliveryState(rawValue: raw) else {
            throw DatabaseError(resultCode: .SQLITE_CORRUPT, message: "unknown delivery state '\(raw)'")
        }
        return state
    }

    private static func record(_ row: Row) throws -> DeliveryRecord {
        DeliveryRecord(
            id: row[0], eventID: row[1], eventName: row[2], notifier: row[3], state: try state(row[4]), attempts: row[5],
            nextAttemptAt: (row[6] as Double?).map(Date.init(timeIntervalSince1970:)), lastError: row[7],
            receivedAt: Date(timeIntervalSince1970: row[8]), updatedAt: Date(timeIntervalSince1970: row[9]))
    }

    private func records(_ sql: String, _ arguments: StatementArguments) async throws -> [DeliveryRecord] {
        try await read { db in
            try Row.fetchAll(db.cachedStatement(sql: Self.recordSelect + " " + sql), arguments: arguments).map(Self.record)
        }
    }

    public func due(notifier: String, now: Date, limit: Int) async throws -> [DeliveryRecord] {
        try await records(Self.dueCondition, [notifier, now.timeIntervalSince1970, limit])
    }

    public func dueWithEvents(notifier: String, now: Date, limit: Int) async throws -> [DueDelivery] {
        try await read { db in
            try Row.fetchAll(db.cachedStatement(sql: """
                SELECT \(Self.recordColumns), e.endpoint, e.body \(Self.recordFrom) \(Self.dueCondition)
                """), arguments: [notifier, now.timeIntervalSince1970, limit]).map { row in
                let record = try Self.record(row)
                return DueDelivery(record: record, event: StoredEvent(
                    id: record.eventID, endpoint: row[10], name: record.eventName, receivedAt: record.receivedAt,
                    body: row[11] ?? Data()))
            }
        }
    }

    public func event(id: String) async throws -> StoredEvent? {
        try await read { db in
            try Row.fetchOne(db, sql: "SELECT id, endpoint, name, received_at, body FROM events WHERE id = ?",
                             arguments: [id]).map { row in
                StoredEvent(id: row[0], endpoint: row[1], name: row[2], receivedAt: Date(timeIntervalSince1970: row[3]),
                            body: row[4] ?? Data())
            }
        }
    }

    public func undeliveredCount() async throws -> Int {
        try await read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM deliveries WHERE state IN ('pending', 'delivering')") ?? 0
        }
    }

    public func deliveries(state: DeliveryState?, notifier: String?, limit: Int) async throws -> [DeliveryRecord] {
        try await records("""
            WHERE (?1 IS NULL OR d.state = ?1) AND (?2 IS NULL OR d.notifier = ?2) ORDER BY d.id DESC LIMIT ?3
            """, [state?.rawValue, notifier, limit])
    }

    public func delivery(id: Int64) async throws -> DeliveryRecord? {
        try await records("WHERE d.id = ?", [id]).first
    }

    public func counts() async throws -> [DeliveryCount] {
        let counts = try await read { db in
            try Row.fetchAll(db, sql: "SELECT notifier, state, COUNT(*) FROM deliveries GROUP BY notifier, state")
                .map { DeliveryCount(notifier: $0[0], state: try Self.state($0[1]), count: $0[2]) }
        }
        // Sorted here, as MemoryJournal does: Swift's String order is not SQLite's.
        let rank = { (state: DeliveryState) in DeliveryState.allCases.firstIndex(of: state) ?? 0 }
        return counts.sorted { ($0.notifier, rank($0.state)) < ($1.notifier, rank($1.state)) }
    }

    // MARK: - Changing deliveries

    public func claim(_ delivery: Int64) async throws -> Bool {
        try await change(.init(id: delivery, now: clock().timeIntervalSince1970, kind: .claim))
    }

    public func release(_ delivery: Int64) async throws {
        try await change(.init(id: delivery, now: clock().timeIntervalSince1970, kind: .release))
    }

    public func markDelivered(_ delivery: Int64) async throws {
        try await change(.init(id: delivery, now: clock().timeIntervalSince1970, kind: .delivered))
    }

    public func markRetry(_ delivery: Int64, next: Date, error: String) async throws {
        try await change(.init(id: delivery, now: clock().timeIntervalSince1970,
                               kind: .retry(next: next.timeIntervalSince1970, error: error)))
    }

    public func markDead(_ delivery: Int64, error: String) async throws {
        try await change(.init(id: delivery, now: clock().timeIntervalSince1970, kind: .dead(error: error)))
    }

    /// A delivery state change. Concurrent ones share a transaction, committed without its
    /// own fsync (see the type's comment).
    struct StateChange: Sendable {
        enum Kind: Sendable {
            /// pending → delivering, only if still pending.
            case claim
            /// delivering → pending, attempts − 1: a claim whose attempt never started.
            case release
            case delivered
            case retry(next: Double, error: String)
            case dead(error: String)
        }

        var id: Int64
        var now: Double
        var kind: Kind

        /// Runs the UPDATE; true if it changed the delivery.
        func apply(_ db: Database) throws -> Bool {
            switch kind {
            case .claim:
                try db.cachedStatement(sql: """
                    UPDATE deliveries SET state = 'delivering', attempts = attempts + 1, updated_at = ?
                    WHERE id = ? AND state = 'pending'
                    """).execute(arguments: [now, id])
            case .release:
                try db.cachedStatement(sql: """
                    UPDATE deliveries SET state = 'pending', attempts = attempts - 1, updated_at = ?
                    WHERE id = ? AND state = 'delivering'
                    """).execute(arguments: [now, id])
            case .delivered:
                try db.cachedStatement(sql: """
                    UPDATE deliveries SET state = 'delivered', next_attempt_at = NULL, updated_at = ? WHERE id = ?
                    """).execute(arguments: [now, id])
            case .retry(let next, let error):
                try db.cachedStatement(sql: """
                    UPDATE deliveries SET state = 'pending', next_attempt_at = ?, last_error = ?, updated_at = ? WHERE id = ?
                    """).execute(arguments: [next, error, now, id])
            case .dead(let error):
                try db.cachedStatement(sql: """
                    UPDATE deliveries SET state = 'dead', next_attempt_at = NULL, last_error = ?, updated_at = ? WHERE id = ?
                    """).execute(arguments: [error, now, id])
            }
            return db.changesCount == 1
        }
    }

    @discardableResult
    private func change(_ change: StateChange) async throws -> Bool {
        let written: Written
        do { written = try await writer.submit(.change(change)) } catch { throw JournalError(error, path: path) }
        guard case .changed(let changed) = written else { preconditionFailure("a state change answered as an append") }
        return changed
    }

    public func recoverInFlight(deadAfter: Int) async throws -> Recovery {
        let now = clock().timeIntervalSince1970
        return try await write { db in
            try db.execute(sql: """
                UPDATE deliveries SET interruptions = interruptions + 1 WHERE state = 'delivering'
                """)
            let setAside = try Row.fetchAll(db, sql: """
                SELECT id, interruptions FROM deliveries WHERE state = 'delivering' AND interruptions >= ? ORDER BY id
                """, arguments: [deadAfter])
            let dead = try db.makeStatement(sql: """
                UPDATE deliveries SET state = 'dead', next_attempt_at = NULL, last_error = ?, updated_at = ?
                WHERE id = ?
                """)
            for row in setAside {
                try dead.execute(arguments: [Recovery.reason(interruptions: row[1]), now, row[0] as Int64])
            }
            try db.execute(sql: """
                UPDATE deliveries SET state = 'pending', next_attempt_at = ?1, updated_at = ?1 WHERE state = 'delivering'
                """, arguments: [now])
            return Recovery(requeued: db.changesCount, setAside: setAside.map { $0[0] })
        }
    }

    public func retry(ids: [Int64]?, allDead: Bool) async throws -> Int {
        let now = clock().timeIntervalSince1970
        return try await write { db in
            let set = "UPDATE deliveries SET state = 'pending', next_attempt_at = ?1, updated_at = ?1"
            if allDead {
                try db.execute(sql: set + " WHERE state = 'dead'", arguments: [now])
                return db.changesCount
            }
            // One by one, as MemoryJournal does: an id listed twice counts twice.
            let statement = try db.makeStatement(sql: set + " WHERE id = ?2 AND state IN ('dead', 'pending')")
            return try (ids ?? []).reduce(0) { changed, id in
                try statement.execute(arguments: [now, id])
                return changed + db.changesCount
            }
        }
    }

    public func prune(before cutoff: Date) async throws -> Int {
        let now = clock().timeIntervalSince1970
        return try await write { [dedupeTTL] db in
            try db.execute(sql: "DELETE FROM dedupe WHERE seen_at <= ?", arguments: [now - dedupeTTL])
            try db.execute(sql: """
                DELETE FROM events WHERE received_at < ? AND NOT EXISTS (
                    SELECT 1 FROM deliveries WHERE event_id = events.id AND state IN ('pending', 'delivering'))
                """, arguments: [cutoff.timeIntervalSince1970])
            return db.changesCount  // deliveries go by ON DELETE CASCADE, not counted here
        }
    }

    // MARK: - Access

    private func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do { return try await pool.read(body) } catch { throw JournalError(error, path: path) }
    }

    private func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do { return try await pool.write(body) } catch { throw JournalError(error, path: path) }
    }

    /// The integer `sql` returns, on the writer connection (for tests: pragmas and row counts).
    func scalar(_ sql: String) async throws -> Int? {
        try await pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: sql) }
    }
}
