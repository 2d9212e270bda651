import CSQLiteWAL
import Foundation
import GRDB

/// The durable ``Journal``: one SQLite file, `journal.sqlite`, in a directory of its own.
///
/// Appends (and the CLI's changes) are transactions committed with `synchronous = FULL` in WAL
/// mode, so when ``append(_:)`` returns the event is on disk, not only in the page cache.
/// Lease and outcome writes (lease, renew, delivered, retry, dead) need no fsync of their own: they
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
public final class SQLiteJournal: Journal, AppendingWithoutWaiting, RecordingWithoutWaiting {
    /// The path of the SQLite file.
    public let path: String
    /// How long a connection waits for another process's lock before failing.
    public static let busyTimeout: TimeInterval = 10

    private let pool: DatabasePool
    private let dedupeTTL: TimeInterval
    private let clock: @Sendable () -> Date
    private let writer: GroupCommit<Write, Written>
    /// The writer's per-request statements, prepared once (see ``SQLiteStatements``).
    private let statements = SQLiteStatements()
    /// The journal's directory, where other processes ring the server (``SQLiteWakeUps``).
    private let directory: String
    private let wakeUps: SQLiteWakeUps
    /// Copies the WAL into the database file off the writer.
    private let checkpoints: SQLiteCheckpoints

    /// Opens (or creates) `<directory>/journal.sqlite`, creating `directory` if needed, and
    /// brings its schema up to date.
    ///
    /// - Parameters:
    ///   - dedupeTTL: how long a dedupe key is remembered.
    ///   - groupCommit: `true` lets concurrent appends share one transaction and one fsync;
    ///     `false` commits every append on its own (for comparison and benchmarks).
    ///   - clock: the time used for dedupe, `updated_at` and recovery (injectable for tests).
    ///   - outcomeWait: how long a delivery's outcome waits for another write's transaction
    ///     (an append, a lease) before it commits on its own.
    /// - Throws: ``JournalError`` naming the path, e.g. when the directory is not writable or
    ///   the file is not a journal.
    public convenience init(directory: String, dedupeTTL: Duration, groupCommit: Bool = true,
                            clock: @escaping @Sendable () -> Date = { Date() },
                            outcomeWait: Duration = .milliseconds(10)) throws {
        try self.init(directory: directory, dedupeTTL: dedupeTTL, groupCommit: groupCommit, clock: clock,
                      outcomeWait: outcomeWait, walBytes: .standard)
    }

    /// The same, with the WAL's checkpoint thresholds given (tests use small ones), and how
    /// long a batch gathers under load (nil: as long as the last commit took; see GroupCommit).
    init(directory: String, dedupeTTL: Duration, groupCommit: Bool = true, clock: @escaping @Sendable () -> Date,
         outcomeWait: Duration, walBytes: WALBytes, gatherWait: Duration? = nil) throws {
        path = URL(fileURLWithPath: directory).appendingPathComponent("journal.sqlite").path
        self.directory = directory
        wakeUps = SQLiteWakeUps(directory: directory)
        self.dedupeTTL = dedupeTTL.seconds
        self.clock = clock
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw JournalError(.cannotOpen, path: path,
                               "cannot create the journal directory \(directory): \(error.localizedDescription)")
        }
        // A commit's WAL frames in one write(2) (CSQLiteWAL): installed once per process,
        // before the first connection, as SQLite's default VFS.
        let installed = herald_wal_buffer_install()
        guard installed == 0 else {  // SQLITE_OK
            throw JournalError(.cannotOpen, path: path, "SQLite refused Herald's WAL writer (error \(installed))")
        }
        do {
            var config = Configuration()
            config.busyMode = .timeout(Self.busyTimeout)
            config.label = "herald.journal"
            // Before GRDB turns WAL on, which writes the file's first page: only a new journal
            // takes this page size; an existing one keeps its own.
            config.prepareDatabase { db in try db.execute(sql: "PRAGMA page_size = \(SQLiteJournal.pageSize)") }
            pool = try DatabasePool(path: path, configuration: config)
            // After the pool is open: GRDB's WAL setup sets `synchronous = NORMAL`, which
            // survives a killed process but not a power cut. FULL fsyncs the WAL on commit.
            let pageSize = try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = FULL")
                // Statement journals (of a multi-row insert, of the dedupe claims' savepoint) stay
                // in memory: past 64 KiB SQLite moves one to a temporary file, a `pwrite` per page
                // (2.4 instead of 0.7 per request under load).
                try db.execute(sql: "PRAGMA temp_store = MEMORY")
                return try Int.fetchOne(db, sql: "PRAGMA page_size") ?? Self.pageSize
            }
            try pool.read { [path] db in
                if try Self.migrator.hasBeenSuperseded(db) {
                    throw JournalError(.newerSchema, path: path, "\(path) was written by a newer Herald "
                        + "(its schema has migrations this version does not know): run that version, or restore a backup")
                }
            }
            try Self.migrator.migrate(pool)
            try Self.checkIntegrity(pool, path: path)
            // The WAL is copied into the database file off the writer (SQLiteCheckpoints.swift).
            checkpoints = try SQLiteCheckpoints(writer: pool, pageSize: pageSize, startBytes: walBytes.start,
                                                finishBytes: walBytes.finish, limitBytes: walBytes.limit)
        } catch {
            throw JournalError(error, path: path)
        }
        writer = GroupCommit(pool: pool, statements: statements, grouped: groupCommit, isDurable: \.isAppend, canWait: \.isOutcome,
                             waitLimit: outcomeWait, gatherWait: gatherWait) { [ttl = dedupeTTL.seconds, path, statements, checkpoints] writes, db in
            // The WAL hook's context: alive as long as a batch can commit.
            _ = checkpoints
            // The batch's appends first, together (their order among the batch's other writes
            // is free: all were submitted concurrently, and each waits for the commit).
            var appended = try Self.store(writes.compactMap(\.appendItem), ttl: ttl, db, statements, path: path)
                .makeIterator()
            return try writes.map { write in
                switch write {
                case .append: .appended(appended.next()!)
                case .lease(let request, let now): .leased(try Self.lease(request, now: now, db))
                case .renew(let ids, let owner, let until): .lost(try Self.renew(ids, owner: owner, until: until, db))
                case .record(let outcomes, let owner, let now):
                    .lost(try Self.record(outcomes, owner: owner, now: now, db, statements))
                }
            }
        }
    }

    /// The page size of a new journal, in bytes (SQLite's default is 4,096).
    ///
    /// Every commit writes each page it changed, whole, to the WAL, and a webhook's commit
    /// changes a little of many b-trees: the newest leaf of the events, of their id index, of
    /// the deliveries and their indexes, a leaf of the bookings and one of the dedupe keys,
    /// the id counter, the file's first page (`benchmarks/wal_pages.py` counts them). Halving
    /// the page halves most of those writes: under `herald-bench pipeline` a commit wrote
    /// 20.3 pages of 2 KiB (41 KiB) instead of 15.8 of 4 KiB (65 KiB), and a request cost 3 %
    /// fewer instructions (callgrind, two runs each: 287,916 and 286,982 against 296,282,
    /// 297,727 and 295,643), mostly SQLite's WAL checksums and copies. 1 KiB pages saved a
    /// little more, but a booking's row (a `WITHOUT ROWID` b-tree's entry) would then spill
    /// into overflow pages past 231 bytes; at 2 KiB that limit is 488.
    static let pageSize = 2048

    /// WAL bytes after which the WAL is copied into the database file (SQLite's default is
    /// 1,000 pages). Between two copies a page that changes in many commits (a leaf of the
    /// dedupe keys, of the bookings) is written back once: at 8,000 pages of 4 KiB a request
    /// under load cost 15 % less CPU in `herald-bench pipeline` than at 1,000, and 16,000 did
    /// not differ from 8,000. Since the copy runs off the writer (``SQLiteCheckpoints``), what
    /// the writer still waits for is a short final copy and an fsync of the database file, once
    /// per copy: at 64 MB instead of 32 that comes half as often (at 1,000 webhooks a second,
    /// every 2 s or so).
    static let checkpointBytes = 16_000 * 4096

    /// When the WAL is copied into the database file, in bytes of WAL (see ``SQLiteCheckpoints``).
    struct WALBytes: Sendable {
        /// The copy starts on the second connection.
        var start: Int
        /// What a pass may leave for the writer to copy after its next commit.
        var finish: Int
        /// The writer copies everything itself; the WAL file is cut back to this size when it
        /// starts over.
        var limit: Int

        static let standard = WALBytes(start: checkpointBytes, finish: 256 << 10, limit: 2 * checkpointBytes)
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
        do {
            // SQLite refuses to close a connection whose statements are still prepared.
            pool.writeWithoutTransaction { [statements] db in statements.finalize() }
            try checkpoints.close()
            try pool.close()
        } catch {
            throw JournalError(error, path: path)
        }
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
        /// Committed transactions of state changes only (leases, outcomes), with no append to ride in.
        public var stateCommits = 0
    }

    /// Append statistics since the journal was opened, for tests and metrics.
    public var appendStatistics: AppendStatistics { writer.statistics }

    /// What the WAL's checkpoints have done since the journal was opened (for tests).
    var checkpointStatistics: SQLiteCheckpoints.Statistics { checkpoints.statistics }

    /// The WAL's size in pages at which its copy starts (for tests).
    var checkpointStartPages: Int { checkpoints.startFrames }

    /// One write through the group commit, and what it gave. Boxed (`indirect`): the group
    /// commit passes each write on several times (its queue, its batch, the writer's closure),
    /// and a copy is then one reference, not the payload's strings and arrays one by one.
    indirect enum Write: Sendable {
        case append(AppendItem)
        case lease(LeaseRequest, now: Double)
        case renew([Int64], owner: String, until: Double)
        case record([DeliveryOutcome], owner: String, now: Double)
        var isAppend: Bool { if case .append = self { true } else { false } }
        var appendItem: AppendItem? { if case .append(let item) = self { item } else { nil } }
        /// Outcomes may wait a little for another write's transaction (see `GroupCommit`).
        var isOutcome: Bool { if case .record = self { true } else { false } }
    }

    enum Written: Sendable {
        case appended(Result<AppendResult, any Error>)
        case leased(LeaseResult)
        /// Ids whose lease this owner no longer holds.
        case lost([Int64])
    }

    // MARK: - Appending (how a batch is stored: SQLiteAppends.swift)

    /// Returns once the transaction holding `entry` is committed and fsynced. With group
    /// commit, the append is committed even if the calling task is cancelled meanwhile.
    public func append(_ entry: consuming JournalEntry) async throws -> AppendResult {
        let item = AppendItem(entry: entry, now: clock().timeIntervalSince1970)
        guard case .appended(let result) = try await submit(.append(item)) else {
            preconditionFailure("an append answered as another write")
        }
        do { return try result.get() } catch { throw JournalError(error, path: path) }
    }

    /// The same as ``append(_:)``, answered by calling `done` on the writer's queue once the
    /// transaction holding `entry` is committed and fsynced (``AppendingWithoutWaiting``).
    package func append(_ entry: consuming JournalEntry,
                        then done: @escaping @Sendable (Result<AppendResult, any Error>) -> Void) {
        let item = AppendItem(entry: entry, now: clock().timeIntervalSince1970)
        writer.submit(.append(item)) { [path] written in
            done(Result {
                guard case .appended(let result) = try written.get() else {
                    preconditionFailure("an append answered as another write")
                }
                return try result.get()
            }.mapError { JournalError($0, path: path) })
        }
    }

    // MARK: - Leases and outcomes (what each writes: SQLiteLeases.swift)

    public func lease(_ request: LeaseRequest) async throws -> LeaseResult {
        guard case .leased(let result) = try await submit(.lease(request, now: clock().timeIntervalSince1970)) else {
            preconditionFailure("a lease answered as another write")
        }
        return result
    }

    public func renew(_ ids: [Int64], owner: String, until: Date) async throws -> [Int64] {
        guard !ids.isEmpty else { return [] }
        guard case .lost(let lost) = try await submit(.renew(ids, owner: owner, until: until.timeIntervalSince1970)) else {
            preconditionFailure("a renewal answered as another write")
        }
        return lost
    }

    public func record(_ outcomes: [DeliveryOutcome], owner: String) async throws -> [Int64] {
        guard !outcomes.isEmpty else { return [] }
        guard case .lost(let lost) = try await submit(.record(outcomes, owner: owner, now: clock().timeIntervalSince1970)) else {
            preconditionFailure("an outcome answered as another write")
        }
        return lost
    }

    package func record(_ outcomes: [DeliveryOutcome], owner: String,
                        then done: @escaping @Sendable (Result<[Int64], any Error>) -> Void) {
        guard !outcomes.isEmpty else { return done(.success([])) }
        writer.submit(.record(outcomes, owner: owner, now: clock().timeIntervalSince1970)) { [path] result in
            done(result.map { written in
                guard case .lost(let lost) = written else { preconditionFailure("an outcome answered as another write") }
                return lost
            }.mapError { JournalError($0, path: path) })
        }
    }

    public func instanceStarted(owner: String) async throws -> Int {
        try await write { db in
            try db.execute(sql: """
                UPDATE deliveries SET lease_until = 0 WHERE state = 'leased' AND (owner IS NULL OR owner <> ?)
                """, arguments: [owner])
            return db.changesCount
        }
    }

    // MARK: - Reading

    /// The columns ``record(_:)`` reads, in its order; more may follow them.
    static let recordColumns = """
        d.id, d.event_id, e.name, d.notifier, d.state, d.attempts, d.due_at, d.last_error, d.owner, d.lease_until,
        d.interruptions, d.booking_key, d.reminder_offset, d.remind_at, e.received_at, d.updated_at
        """
    static let recordColumnCount = 16
    static let recordFrom = "FROM deliveries d JOIN events e ON e.id = d.event_id"
    static let recordSelect = "SELECT \(recordColumns) \(recordFrom)"

    static func placeholders(_ count: Int) -> String {
        Array(repeating: "?", count: count).joined(separator: ", ")
    }

    private static func state(_ raw: String) throws -> DeliveryState {
        guard let state = DeliveryState(rawValue: raw) else {
            throw DatabaseError(resultCode: .SQLITE_CORRUPT, message: "unknown delivery state '\(raw)'")
        }
        return state
    }

    static func record(_ row: Row) throws -> DeliveryRecord {
        let date = { (value: Double?) in value.map(Date.init(timeIntervalSince1970:)) }
        return DeliveryRecord(
            id: row[0], eventID: row[1], eventName: row[2], notifier: row[3], state: try state(row[4]),
            attempts: row[5], dueAt: date(row[6]), lastError: row[7], owner: row[8], leaseUntil: date(row[9]),
            interruptions: row[10], bookingKey: row[11], reminderOffset: row[12], remindAt: date(row[13]),
            receivedAt: Date(timeIntervalSince1970: row[14]), updatedAt: Date(timeIntervalSince1970: row[15]))
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

    public func deliveries(_ query: DeliveryQuery) async throws -> [DeliveryRecord] {
        try await read { db in
            try Row.fetchAll(db.cachedStatement(sql: """
                \(Self.recordSelect)
                WHERE (?1 IS NULL OR d.id = ?1) AND (?2 IS NULL OR d.state = ?2) AND (?3 IS NULL OR d.notifier = ?3)
                ORDER BY d.id DESC LIMIT ?4
                """), arguments: [query.id, query.state?.rawValue, query.notifier, max(0, query.limit)]).map(Self.record)
        }
    }

    public func counts() async throws -> [DeliveryCount] {
        try await read { db in
            try Row.fetchAll(db, sql: "SELECT notifier, state, COUNT(*) FROM deliveries GROUP BY notifier, state")
                .map { DeliveryCount(notifier: $0[0], state: try Self.state($0[1]), count: $0[2]) }
        }.inJournalOrder()  // sorted here, as every journal does: Swift's String order is not SQLite's
    }

    /// Read from the two partial indexes, which hold only pending and leased deliveries: no
    /// final delivery is read, however many the journal keeps.
    public func undeliveredCount() async throws -> Int {
        try await read { db in
            try Int.fetchOne(db, sql: """
                SELECT (SELECT COUNT(*) FROM deliveries WHERE state = 'pending')
                     + (SELECT COUNT(*) FROM deliveries WHERE state = 'leased')
                """) ?? 0
        }
    }

    public func bookings(startingFrom from: Date, before: Date) async throws -> [BookingSnapshot] {
        // Reads the whole table (the bookings not yet ended), once per agenda: an index on
        // started_at cost every booking event a WAL page (dropped in v10).
        try await read { db in
            try Row.fetchAll(db.cachedStatement(sql: """
                SELECT uid, status, event_type_uid, started_at, ended_at, time_zone, guest_name, guest_email, event_id,
                       event_name
                FROM bookings WHERE started_at >= ? AND started_at < ? ORDER BY started_at, uid
                """), arguments: [from.timeIntervalSince1970, before.timeIntervalSince1970]).map { row in
                BookingSnapshot(uid: row[0], status: row[1], eventTypeUid: row[2], startedAt: Date(timeIntervalSince1970: row[3]),
                                endedAt: (row[4] as Double?).map(Date.init(timeIntervalSince1970:)), timeZone: row[5],
                                guestName: row[6], guestEmail: row[7], eventID: row[8], eventName: row[9])
            }
        }
    }

    // MARK: - Operator changes

    /// Returns when another process (`herald deliveries retry`) stored work in this journal,
    /// or when the task is cancelled.
    public func waitForWork(notifier: String) async {
        await wakeUps.wait()
    }

    public func retry(_ selection: RetrySelection) async throws -> Int {
        let now = clock().timeIntervalSince1970
        let changed = try await write { db in
            let set = "UPDATE deliveries SET state = 'pending', due_at = ?1, owner = NULL, lease_until = NULL, updated_at = ?1"
            switch selection {
            case .allDead:
                try db.execute(sql: set + " WHERE state = 'dead'", arguments: [now])
                return db.changesCount
            case .ids(let ids):
                // One by one, as MemoryJournal does: an id listed twice counts twice.
                let statement = try db.makeStatement(sql: set + " WHERE id = ?2 AND state IN ('dead', 'skipped', 'pending')")
                return try ids.reduce(0) { changed, id in
                    try statement.execute(arguments: [now, id])
                    return changed + db.changesCount
                }
            }
        }
        // A server using this journal takes them at once (see SQLiteWakeUps).
        if changed > 0 { SQLiteWakeUps.ring(directory: directory) }
        return changed
    }

    public func prune(before cutoff: Date) async throws -> Int {
        let now = clock().timeIntervalSince1970
        return try await write { [dedupeTTL] db in
            // Reads the whole table: an index on seen_at cost every request a WAL page (dropped in v9).
            try db.execute(sql: "DELETE FROM dedupe WHERE seen_at <= ?", arguments: [now - dedupeTTL])
            let horizon = BookingSnapshot.pruneHorizon(cutoff: cutoff, now: Date(timeIntervalSince1970: now))
            // Reads the whole table too (no index on started_at since v10).
            try db.execute(sql: "DELETE FROM bookings WHERE started_at < ?1 AND coalesce(ended_at, started_at) < ?1",
                           arguments: [horizon.timeIntervalSince1970])
            // The finished deliveries of old events, then the events left without any (the
            // deliveries had a foreign key with ON DELETE CASCADE until v11). The newest
            // delivery stays, with its event: a new delivery's id is one past the largest, so
            // ids are never reused.
            try db.execute(sql: """
                DELETE FROM deliveries WHERE event_id IN (
                    SELECT id FROM events WHERE received_at < ?1
                        AND NOT EXISTS (SELECT 1 FROM deliveries AS d
                                        WHERE d.event_id = events.id AND d.state IN ('pending', 'leased'))
                        AND id IS NOT (SELECT event_id FROM deliveries ORDER BY id DESC LIMIT 1))
                """, arguments: [cutoff.timeIntervalSince1970])
            try db.execute(sql: """
                DELETE FROM events WHERE received_at < ? AND NOT EXISTS (SELECT 1 FROM deliveries WHERE event_id = events.id)
                """, arguments: [cutoff.timeIntervalSince1970])
            return db.changesCount  // the events; their deliveries are not counted
        }
    }

    // MARK: - Access

    private func submit(_ write: Write) async throws -> Written {
        do { return try await writer.submit(write) } catch { throw JournalError(error, path: path) }
    }

    private func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do { return try await pool.read(body) } catch { throw JournalError(error, path: path) }
    }

    private func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do { return try await pool.write(body) } catch { throw JournalError(error, path: path) }
    }

    /// Writes waiting for their commit: queued, or in the transaction being written (for tests).
    var queuedWrites: Int { writer.queued }

    /// Writes taken into the transaction being written, not yet committed (for tests).
    var writesInTransaction: Int { writer.taken }

    /// Keeps the writer connection busy until `released` is true or `timeout` has passed, so
    /// that tests can queue writes behind it; `holding` is called once it holds the writer.
    func holdWriter(holding: @escaping @Sendable () -> Void, until released: @escaping @Sendable () -> Bool,
                    timeout: Duration) async throws {
        try await pool.writeWithoutTransaction { _ in
            holding()
            let deadline = ContinuousClock.now + timeout
            while !released(), ContinuousClock.now < deadline { usleep(1000) }
        }
    }

    /// The integer `sql` returns, on the writer connection (for tests: pragmas and row counts).
    func scalar(_ sql: String) async throws -> Int? {
        try await pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: sql) }
    }
}
