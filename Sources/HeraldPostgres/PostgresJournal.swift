import Foundation
import HeraldCore
import Logging
import PostgresNIO
import Synchronization

/// A ``Journal`` in PostgreSQL, shared by every Herald instance that names the same database.
///
/// Appends and outcomes go through one group commit (``PostgresGroupCommit``): everything
/// queued while a transaction runs shares the next one, and a caller hears back only after
/// its `COMMIT` returned. Work is taken with `FOR UPDATE SKIP LOCKED` under a lease (owner and
/// expiry), so no delivery is handed to two instances at once, and any instance takes over a
/// lease its owner stopped renewing. Dedupe keys are a primary key, so the same webhook posted
/// to two instances at once is accepted by one and answered as a duplicate by the other.
/// Pruning runs under a transaction-level advisory lock, so one instance does it at a time.
///
/// The pool runs inside ``run()``: call it in a task (or as a service) for as long as the
/// journal is used; ``withJournal(_:body:)`` does that around a closure. The schema is created
/// and upgraded by ``migrate()`` (versioned; a newer schema than this binary knows is refused).
public final class PostgresJournal: Journal, Sendable {
    /// What a connection needs; built from ``PostgresURL`` and checked (e.g. `sslrootcert`)
    /// when the journal is made.
    public let url: PostgresURL
    let client: PostgresClient
    let dedupeTTL: TimeInterval
    let clock: @Sendable () -> Date
    let logger: Logger
    /// How long one operation may wait for the database (a connection, a commit) before it
    /// fails as ``JournalError/Kind/unavailable``, so a request gets 503 instead of hanging
    /// while the server is unreachable.
    let operationTimeout: Duration
    let commits: PostgresGroupCommit
    let wakeUps = PostgresWakeUps()
    /// For connections outside the pool.
    let direct: PostgresConnection.Configuration
    /// Times out every operation after ``operationTimeout`` (see ``first(of:within:clock:)``).
    let deadlines = DeadlineClock()

    /// - Parameters:
    ///   - poolSize: the most connections this instance opens.
    ///   - logger: for connection problems; never given a password.
    public init(url: PostgresURL, poolSize: Int = 8, dedupeTTL: Duration = .seconds(7 * 86400),
                operationTimeout: Duration = .seconds(5), logger: Logger = Logger(label: "herald.postgres"),
                clock: @escaping @Sendable () -> Date = { Date() }) throws {
        self.url = url
        self.dedupeTTL = dedupeTTL.seconds
        self.clock = clock
        self.operationTimeout = operationTimeout
        var quiet = logger
        // postgres-nio logs queries and their bindings (event bodies) at debug and trace.
        quiet.logLevel = max(logger.logLevel, .notice)
        self.logger = quiet
        client = PostgresClient(configuration: try Self.configuration(url, poolSize: poolSize), backgroundLogger: quiet)
        direct = try Self.directConfiguration(url)
        commits = PostgresGroupCommit()
    }

    /// Runs the connection pool, and the clock that times out operations, until the task is
    /// cancelled. Nothing reaches the database while it is not running.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.client.run() }
            group.addTask { await self.wakeUps.listen(self.direct, logger: self.logger) }
            group.addTask { await self.deadlines.run() }
            await group.waitForAll()
        }
    }

    /// Returns when another instance (or this one) committed work `notifier`'s dispatcher could
    /// take: LISTEN/NOTIFY on `herald_work`.
    public func waitForWork(notifier: String) async {
        await wakeUps.wait(notifier: notifier)
    }

    /// Runs `body` with the pool running, then stops the pool.
    ///
    /// - Parameter migrate: true (a server starting) creates or upgrades the schema first;
    ///   false (a tool that only reads or changes deliveries) requires the schema this binary
    ///   writes, and says what to run when it is missing or older.
    public static func withJournal<R: Sendable>(_ journal: PostgresJournal, migrate: Bool = true,
                                                body: (PostgresJournal) async throws -> R) async throws -> R {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await journal.run() }
            defer { group.cancelAll() }
            // The pool retries a connection that fails; one direct attempt says at once why
            // (a wrong password, TLS, no such database) instead of a timeout later.
            if let reason = await journal.connectionProblem() { throw reason }
            if migrate {
                try await journal.migrate()
            } else {
                try await journal.requireCurrentSchema()
            }
            return try await body(journal)
        }
    }

    /// The schema version in the database (0: no Herald journal there yet).
    public func schemaVersion() async throws -> Int {
        try await run { connection in
            var exists = false
            for try await row in try await connection.query(
                "SELECT to_regclass('herald_schema_version') IS NOT NULL", logger: self.logger) {
                exists = try row.decode(Bool.self)
            }
            guard exists else { return 0 }
            var version = 0
            for try await row in try await connection.query(
                "SELECT COALESCE(max(version), 0) FROM herald_schema_version", logger: self.logger) {
                version = Int(try row.decode(Int32.self))
            }
            return version
        }
    }

    private func requireCurrentSchema() async throws {
        let version = try await schemaVersion()
        let database = "database \(url.database) at \(url.server)"
        if version == 0 {
            throw JournalError(.notFound, path: url.description,
                               "there is no Herald journal in \(database) yet: run herald journal migrate, or start herald serve")
        }
        if version > PostgresSchema.current {
            throw JournalError(.newerSchema, path: url.description, """
                the journal in \(database) has schema version \(version), newer than this Herald knows \
                (\(PostgresSchema.current)): use a newer Herald
                """)
        }
        if version < PostgresSchema.current {
            throw JournalError(.other, path: url.description, """
                the journal in \(database) has schema version \(version), older than this Herald's \
                (\(PostgresSchema.current)): run herald journal migrate first
                """)
        }
    }

    /// Whether the server answers a query within `timeout` (`/readyz`).
    public func isReachable(within timeout: Duration) async -> Bool {
        (try? await guarded(timeout: timeout, diagnose: false) {
            try await self.client.withConnection { connection in
                try await connection.query("SELECT 1", logger: self.logger)
                return true
            }
        }) ?? false
    }

    // MARK: Taking work

    public func lease(_ request: LeaseRequest) async throws -> LeaseResult {
        guard request.limit > 0 else { return LeaseResult() }
        let now = clock()
        return try await transaction { connection in
            let rows = try await connection.query("""
                WITH due AS (
                    SELECT id, state AS previous FROM herald_deliveries
                    WHERE notifier = \(request.notifier)
                      AND ((state = 'pending' AND due_at <= \(request.now)) OR (state = 'leased' AND lease_until <= \(request.now)))
                    ORDER BY due_at, id
                    LIMIT \(request.limit)
                    FOR UPDATE SKIP LOCKED
                ), changed AS (
                    SELECT due.id, due.previous,
                           due.previous = 'leased' AND d.interruptions + 1 >= \(request.deadAfter) AS dies
                    FROM due JOIN herald_deliveries d ON d.id = due.id
                )
                UPDATE herald_deliveries d SET
                    state = CASE WHEN c.dies THEN 'dead' ELSE 'leased' END,
                    interruptions = d.interruptions + CASE WHEN c.previous = 'leased' THEN 1 ELSE 0 END,
                    attempts = d.attempts + CASE WHEN c.dies THEN 0 ELSE 1 END,
                    owner = CASE WHEN c.dies THEN NULL ELSE \(request.owner) END,
                    lease_until = CASE WHEN c.dies THEN NULL ELSE \(request.until)::timestamptz END,
                    due_at = CASE WHEN c.dies THEN NULL ELSE d.due_at END,
                    updated_at = \(now)
                FROM changed c, herald_events e
                WHERE d.id = c.id AND e.id = d.event_id
                RETURNING \(unescaped: Self.recordColumns), c.previous, e.endpoint, e.body
                """, logger: self.logger)
            var result = LeaseResult()
            for try await row in rows {
                var record = try Self.record(row)
                let cells = row.makeRandomAccess()
                let previous = try cells[16].decode(String.self)
                let endpoint = try cells[17].decode(String.self)
                let body = try cells[18].decode(Data.self)
                if record.state == .dead {
                    record.lastError = Interruptions.reason(record.interruptions)
                    result.setAside.append(record)
                    continue
                }
                if previous == DeliveryState.leased.rawValue { result.takenOver += 1 }
                let event = StoredEvent(id: record.eventID, endpoint: endpoint, name: record.eventName,
                                        receivedAt: record.receivedAt, body: body)
                result.deliveries.append(DueDelivery(record: record, event: event))
            }
            for record in result.setAside {
                try await connection.query(
                    "UPDATE herald_deliveries SET last_error = \(record.lastError) WHERE id = \(record.id)", logger: self.logger)
            }
            result.deliveries.sort { ($0.record.dueAt ?? .distantPast, $0.record.id) < ($1.record.dueAt ?? .distantPast, $1.record.id) }
            result.setAside.sort { $0.id < $1.id }
            // When this instance's sweep must look again unless woken: the earliest due time
            // or lease expiry left (LEAST skips NULLs; both indexes are partial on the state).
            var next: Date?
            for try await row in try await connection.query("""
                SELECT LEAST(
                    (SELECT min(due_at) FROM herald_deliveries WHERE notifier = \(request.notifier) AND state = 'pending'),
                    (SELECT min(lease_until) FROM herald_deliveries WHERE notifier = \(request.notifier) AND state = 'leased'))
                """, logger: self.logger) {
                next = try row.decode(Date?.self)
            }
            result.nextDue = next ?? .distantFuture
            return result
        }
    }

    public func renew(_ ids: [Int64], owner: String, until: Date) async throws -> [Int64] {
        guard !ids.isEmpty else { return [] }
        let now = clock()
        let held = try await run { connection in
            var held = Set<Int64>()
            let rows = try await connection.query("""
                UPDATE herald_deliveries SET lease_until = \(until), updated_at = \(now)
                WHERE id = ANY(\(ids)) AND state = 'leased' AND owner = \(owner)
                RETURNING id
                """, logger: self.logger)
            for try await row in rows { held.insert(try row.decode(Int64.self)) }
            return held
        }
        return ids.filter { !held.contains($0) }
    }

    /// A shared journal changes nothing when an instance starts: other instances may hold
    /// live leases, and a dead instance's leases expire on their own.
    public func instanceStarted(owner: String) async throws -> Int { 0 }

    // MARK: Reading

    public func event(id: String) async throws -> StoredEvent? {
        try await run { connection in
            let rows = try await connection.query(
                "SELECT id, endpoint, name, received_at, body FROM herald_events WHERE id = \(id)", logger: self.logger)
            for try await row in rows {
                let (id, endpoint, name, receivedAt, body) = try row.decode((String, String, String, Date, Data).self)
                return StoredEvent(id: id, endpoint: endpoint, name: name, receivedAt: receivedAt, body: body)
            }
            return nil
        }
    }

    public func deliveries(_ query: DeliveryQuery) async throws -> [DeliveryRecord] {
        try await run { connection in
            let rows = try await connection.query("""
                SELECT \(unescaped: Self.recordColumns)
                FROM herald_deliveries d JOIN herald_events e ON e.id = d.event_id
                WHERE (\(query.id)::int8 IS NULL OR d.id = \(query.id)::int8)
                  AND (\(query.state?.rawValue)::text IS NULL OR d.state = \(query.state?.rawValue)::text)
                  AND (\(query.notifier)::text IS NULL OR d.notifier = \(query.notifier)::text)
                ORDER BY d.id DESC
                LIMIT \(max(0, query.limit))
                """, logger: self.logger)
            var out: [DeliveryRecord] = []
            for try await row in rows { out.append(try Self.record(row)) }
            return out
        }
    }

    public func counts() async throws -> [DeliveryCount] {
        let counts = try await run { connection in
            let rows = try await connection.query(
                "SELECT notifier, state, count(*) FROM herald_deliveries GROUP BY notifier, state", logger: self.logger)
            var out: [DeliveryCount] = []
            for try await row in rows {
                let (notifier, state, count) = try row.decode((String, String, Int64).self)
                guard let state = DeliveryState(rawValue: state) else { throw Self.unknownState(state) }
                out.append(DeliveryCount(notifier: notifier, state: state, count: Int(count)))
            }
            return out
        }
        return counts.inJournalOrder()
    }

    public func bookings(startingFrom from: Date, before: Date) async throws -> [BookingSnapshot] {
        try await run { connection in
            var out: [BookingSnapshot] = []
            for try await row in try await connection.query("""
                SELECT uid, status, event_type_uid, started_at, ended_at, time_zone, guest_name, guest_email, event_id,
                       event_name
                FROM herald_bookings WHERE started_at >= \(from) AND started_at < \(before) ORDER BY started_at, uid COLLATE "C"
                """, logger: self.logger) {
                let (uid, status, type, start, end, zone, name, email, eventID, eventName) =
                    try row.decode((String, String?, String?, Date, Date?, String?, String?, String?, String, String).self)
                out.append(BookingSnapshot(uid: uid, status: status, eventTypeUid: type, startedAt: start, endedAt: end,
                                           timeZone: zone, guestName: name, guestEmail: email, eventID: eventID,
                                           eventName: eventName))
            }
            return out
        }
    }

    // MARK: Maintenance

    public func retry(_ selection: RetrySelection) async throws -> Int {
        let now = clock()
        return try await transaction { connection in
            let reset = "state = 'pending', due_at = $1, owner = NULL, lease_until = NULL, updated_at = $1"
            let statements: [(sql: String, id: Int64?)]
            switch selection {
            case .allDead:
                statements = [("UPDATE herald_deliveries SET \(reset) WHERE state = 'dead' RETURNING notifier", nil)]
            case .ids(let ids):
                let sql = "UPDATE herald_deliveries SET \(reset) WHERE id = $2 AND state IN ('dead', 'skipped', 'pending') RETURNING notifier"
                statements = ids.map { (sql, $0) }
            }
            var changed = 0
            var notifiers = Set<String>()
            for statement in statements {
                var binds = PostgresBindings()
                binds.append(now)
                if let id = statement.id { binds.append(id) }
                for try await row in try await connection.query(PostgresQuery(unsafeSQL: statement.sql, binds: binds),
                                                                logger: self.logger) {
                    notifiers.insert(try row.decode(String.self))
                    changed += 1
                }
            }
            if !notifiers.isEmpty { try await Self.notify(notifiers.sorted(), on: connection, logger: self.logger) }
            return changed
        }
    }

    /// Runs under `pg_try_advisory_xact_lock`: when another instance is pruning, this one
    /// returns 0 at once instead of doing the same work twice.
    public func prune(before cutoff: Date) async throws -> Int {
        let now = clock()
        let expired = now.addingTimeInterval(-dedupeTTL)
        return try await transaction { connection in
            var locked = false
            for try await row in try await connection.query(
                "SELECT pg_try_advisory_xact_lock(\(PostgresSchema.pruneLock))", logger: self.logger) {
                locked = try row.decode(Bool.self)
            }
            guard locked else { return 0 }
            try await connection.query("DELETE FROM herald_dedupe WHERE seen_at <= \(expired)", logger: self.logger)
            let horizon = BookingSnapshot.pruneHorizon(cutoff: cutoff, now: now)
            try await connection.query("""
                DELETE FROM herald_bookings WHERE started_at < \(horizon) AND coalesce(ended_at, started_at) < \(horizon)
                """, logger: self.logger)
            let rows = try await connection.query("""
                DELETE FROM herald_events e
                WHERE e.received_at < \(cutoff)
                  AND NOT EXISTS (SELECT 1 FROM herald_deliveries d
                                  WHERE d.event_id = e.id AND d.state IN ('pending', 'leased'))
                RETURNING e.id
                """, logger: self.logger)
            var removed = 0
            for try await _ in rows { removed += 1 }
            return removed
        }
    }

    /// Creates or upgrades the schema; see ``PostgresSchema``.
    @discardableResult
    public func migrate() async throws -> PostgresSchema.Migration {
        try await transaction { connection in
            try await PostgresSchema.migrate(connection, logger: self.logger)
        }
    }

    // MARK: For tests and tools

    /// Runs one SQL statement.
    package func execute(_ sql: String) async throws {
        try await run { connection in
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: self.logger)
            return ()
        }
    }

    /// The first column of every row of `sql`, as text.
    package func queryStrings(_ sql: String) async throws -> [String] {
        try await run { connection in
            var out: [String] = []
            for try await row in try await connection.query(PostgresQuery(unsafeSQL: sql), logger: self.logger) {
                out.append(try row.decode(String.self))
            }
            return out
        }
    }

    /// Runs `body` while a connection of this pool holds the prune lock, as another instance
    /// pruning would.
    package func whileHoldingPruneLock<R: Sendable>(_ body: @escaping @Sendable () async throws -> R) async throws -> R {
        try await client.withConnection { connection in
            try await connection.query("SELECT pg_advisory_lock(\(PostgresSchema.pruneLock))", logger: self.logger)
            let result: Result<R, any Error>
            do { result = .success(try await body()) } catch { result = .failure(error) }
            try await connection.query("SELECT pg_advisory_unlock(\(PostgresSchema.pruneLock))", logger: self.logger)
            return try result.get()
        }
    }

    // MARK: Rows

    static let recordColumns = """
        d.id, d.event_id, e.name, d.notifier, d.state, d.attempts, d.due_at, d.last_error, d.owner, \
        d.lease_until, d.interruptions, d.booking_key, d.reminder_offset, d.remind_at, e.received_at, d.updated_at
        """

    static func record(_ row: PostgresRow) throws -> DeliveryRecord {
        let (id, eventID, eventName, notifier, state, attempts, dueAt, lastError, owner, leaseUntil, interruptions,
             bookingKey, reminderOffset, remindAt, receivedAt, updatedAt) = try row.decode(
                (Int64, String, String, String, String, Int32, Date?, String?, String?, Date?, Int32,
                 String?, Int32?, Date?, Date, Date).self)
        guard let state = DeliveryState(rawValue: state) else { throw unknownState(state) }
        return DeliveryRecord(id: id, eventID: eventID, eventName: eventName, notifier: notifier, state: state,
                              attempts: Int(attempts), dueAt: dueAt, lastError: lastError, owner: owner,
                              leaseUntil: leaseUntil, interruptions: Int(interruptions), bookingKey: bookingKey,
                              reminderOffset: reminderOffset.map(Int.init), remindAt: remindAt,
                              receivedAt: receivedAt, updatedAt: updatedAt)
    }

    static func unknownState(_ state: String) -> JournalError {
        JournalError(.corrupted, path: "", "a delivery has the unknown state \"\(state.prefix(20))\"")
    }
}
