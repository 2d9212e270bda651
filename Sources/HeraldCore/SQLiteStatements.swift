import Foundation
import GRDB
import GRDBSQLite

/// The statements the SQLite journal's writer runs for every request (the append's inserts,
/// the delivered outcome), prepared once on the writer connection and run through SQLite's C
/// API.
///
/// Through GRDB each of them cost more than SQLite's own work: `cachedStatement(sql:)`
/// hashes the whole SQL text on every call to find the statement again, and
/// `execute(arguments:)` boxes every argument in an array of existentials that it validates
/// and converts before binding. Here a statement is found by its index and its values are
/// bound directly. The rarer writes (leases, retries, reminders, the CLI) stay with GRDB.
///
/// `@unchecked Sendable`, as GRDB's own connections: it is used only inside the writer's
/// transactions, which GRDB runs one at a time on its writer queue, like the connection its
/// statements belong to. ``finalize()`` runs on that queue too, before the pool is closed:
/// SQLite refuses to close a connection with statements still prepared.
final class SQLiteStatements: @unchecked Sendable {
    /// One statement of the hot path, with its SQL.
    ///
    /// The four inserts of an append can also store several rows in one statement (see
    /// ``execute(_:rows:_:bind:)``): SQLite's work per statement (opening a cursor on each of
    /// the table's b-trees, halting, resetting) is then paid once per batch, not once per row.
    enum Name: Int, CaseIterable {
        case dedupeLookup, insertEvent, claimDedupe, forgetDedupe, insertDelivery, upsertBooking, finalOutcome, insertEvents
        /// The group commit's transaction (see ``transaction(_:_:)``) and the savepoint around
        /// a batch's dedupe claims (see `SQLiteJournal.store`).
        case begin, commit, rollback, savepoint, releaseSavepoint, rollbackToSavepoint
        /// A batch of state changes alone is not fsynced (see `GroupCommit`).
        case synchronousNormal, synchronousFull

        /// The values bound per row of a multi-row statement; nil for a statement of one row.
        var columns: Int32? {
            switch self {
            case .claimDedupe: 4
            case .insertEvents: 6
            case .insertDelivery: 8
            case .upsertBooking: 10
            case .dedupeLookup, .insertEvent, .forgetDedupe, .finalOutcome, .begin, .commit, .rollback, .savepoint,
                 .releaseSavepoint, .rollbackToSavepoint, .synchronousNormal, .synchronousFull: nil
            }
        }

        /// The SQL of this statement for `rows` rows (1 for a statement of one row).
        func sql(rows: Int) -> String {
            let values = (0..<rows).map { _ in "(" + Array(repeating: "?", count: Int(columns ?? 0)).joined(separator: ", ") + ")" }
                .joined(separator: ", ")
            switch self {
            case .dedupeLookup: return "SELECT event_id FROM dedupe WHERE endpoint = ? AND key = ?"
            case .insertEvent: return """
                INSERT INTO events (id, endpoint, name, received_at, body, dedupe_key) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (id) DO NOTHING
                """
            // No conflict clause: an id already stored fails the whole statement, which SQLite
            // then undoes, and the journal stores that batch's events one by one.
            case .insertEvents: return "INSERT INTO events (id, endpoint, name, received_at, body, dedupe_key) VALUES \(values)"
            // `OR FAIL` on the statements of many rows that no conflict can fail (the ones below
            // but the events'): SQLite then keeps no statement journal, a copy of every page the
            // statement changes, for undoing it alone (`herald-bench pipeline`, 10 in flight: 1.3 %
            // fewer instructions per request). Any error they meet still fails the whole batch,
            // whose transaction is rolled back.
            //
            // Takes each key for its new event unless an event holds it still (seen after the
            // dedupe window's start: the row's own time less the window, bound after the rows):
            // no row changes exactly when this is a redelivery.
            case .claimDedupe: return """
                INSERT OR FAIL INTO dedupe (endpoint, key, event_id, seen_at) VALUES \(values)
                ON CONFLICT (endpoint, key) DO UPDATE SET event_id = excluded.event_id, seen_at = excluded.seen_at
                    WHERE dedupe.seen_at <= excluded.seen_at - ?
                """
            case .forgetDedupe: return "DELETE FROM dedupe WHERE endpoint = ? AND key = ? AND event_id = ?"
            case .insertDelivery: return """
                INSERT OR FAIL INTO deliveries (event_id, notifier, state, attempts, due_at, owner, lease_until, updated_at)
                VALUES \(values)
                """
            case .upsertBooking: return """
                INSERT OR FAIL INTO bookings (uid, status, event_type_uid, started_at, ended_at, time_zone, guest_name, guest_email,
                                      event_id, event_name)
                VALUES \(values)
                ON CONFLICT (uid) DO UPDATE SET status = excluded.status, event_type_uid = excluded.event_type_uid,
                    started_at = excluded.started_at, ended_at = excluded.ended_at, time_zone = excluded.time_zone,
                    guest_name = excluded.guest_name, guest_email = excluded.guest_email, event_id = excluded.event_id,
                    event_name = excluded.event_name
                """
            case .finalOutcome: return SQLiteJournal.OutcomeSQL.final
            case .begin: return "BEGIN IMMEDIATE"
            case .commit: return "COMMIT"
            case .rollback: return "ROLLBACK"
            case .savepoint: return "SAVEPOINT claims"
            case .releaseSavepoint: return "RELEASE claims"
            case .rollbackToSavepoint: return "ROLLBACK TO claims"
            case .synchronousNormal: return "PRAGMA synchronous = NORMAL"
            case .synchronousFull: return "PRAGMA synchronous = FULL"
            }
        }
    }

    /// The row counts a multi-row statement is prepared for: a batch of another size is
    /// stored in pieces of these (11 rows as 8, 2 and 1), so that each name has at most six
    /// prepared forms.
    static let rowCounts = [1, 2, 4, 8, 16, 32]

    /// The pieces, largest first, that store rows `0..<count` in statements of at most
    /// `atMost` rows each (each piece's size one of ``rowCounts``).
    static func pieces(of count: Int, atMost: Int = 32) -> [Range<Int>] {
        var start = 0
        var pieces: [Range<Int>] = []
        while start < count {
            let size = rowCounts.last { $0 <= min(count - start, atMost) } ?? 1
            pieces.append(start..<start + size)
            start += size
        }
        return pieces
    }

    /// Binds a statement's values by position (1-based, as in SQLite); nil binds NULL. The
    /// first value SQLite refuses (one past its size limit) fails the statement.
    ///
    /// In a multi-row statement, positions count from the start of the row `row` names (set it
    /// before each row's values); the values after all rows are bound with `row` set to the
    /// number of rows.
    ///
    /// Text and blobs are copied into the statements' arena and bound as static: SQLite reads
    /// them there until the statement is reset, right after its step, instead of allocating
    /// and copying each value itself. A value that does not fit in what is left of the arena
    /// is bound for SQLite to copy, as before.
    struct Binder {
        fileprivate let statement: OpaquePointer
        fileprivate let arena: UnsafeMutableRawBufferPointer
        fileprivate let columns: Int32
        fileprivate var used = 0
        fileprivate var failure = SQLITE_OK
        /// The row whose values are being bound, from 0.
        var row = 0

        private func position(_ index: Int32) -> Int32 { Int32(row) * columns + index }

        mutating func text(_ index: Int32, _ value: String?) {
            guard var value else { return null(index) }
            let code = value.withUTF8 { bytes in
                guard let (pointer, destructor) = place(UnsafeRawBufferPointer(bytes)) else {
                    return sqlite3_bind_text(statement, position(index), "", 0, sqliteTransient)
                }
                return sqlite3_bind_text64(statement, position(index), pointer.assumingMemoryBound(to: CChar.self),
                                           UInt64(bytes.count), destructor, UInt8(SQLITE_UTF8))
            }
            check(code)
        }

        mutating func real(_ index: Int32, _ value: Double?) {
            guard let value else { return null(index) }
            check(sqlite3_bind_double(statement, position(index), value))
        }

        mutating func integer(_ index: Int32, _ value: Int64?) {
            guard let value else { return null(index) }
            check(sqlite3_bind_int64(statement, position(index), value))
        }

        /// Binds `value` as a blob; an empty one binds NULL (how the journal stores an empty body).
        mutating func blob(_ index: Int32, _ value: Data) {
            guard !value.isEmpty else { return null(index) }
            check(value.withUnsafeBytes { bytes in
                guard let (pointer, destructor) = place(bytes) else { return sqlite3_bind_null(statement, position(index)) }
                return sqlite3_bind_blob64(statement, position(index), pointer, UInt64(bytes.count), destructor)
            })
        }

        /// Where to bind `bytes` from, and how: their copy in the arena, static; when they do not
        /// fit, `bytes` themselves, for SQLite to copy. Nil when `bytes` has no storage (empty).
        private mutating func place(_ bytes: UnsafeRawBufferPointer) -> (UnsafeRawPointer, sqlite3_destructor_type?)? {
            guard let source = bytes.baseAddress else { return nil }
            guard let start = arena.baseAddress, bytes.count <= arena.count - used else { return (source, sqliteTransient) }
            let pointer = start + used
            pointer.copyMemory(from: source, byteCount: bytes.count)
            used += bytes.count
            return (UnsafeRawPointer(pointer), nil)  // nil: SQLITE_STATIC
        }

        private mutating func null(_ index: Int32) { check(sqlite3_bind_null(statement, position(index))) }

        private mutating func check(_ code: Int32) {
            if failure == SQLITE_OK, code != SQLITE_OK { failure = code }
        }
    }

    /// Reads the current row's columns by position (0-based, as in SQLite).
    struct Columns {
        fileprivate let statement: OpaquePointer

        func text(_ index: Int32) -> String {
            guard let bytes = sqlite3_column_text(statement, index) else { return "" }
            return String(cString: bytes)
        }

        func real(_ index: Int32) -> Double { sqlite3_column_double(statement, index) }
    }

    /// By name, then by row count (``rowCounts``).
    private var prepared = [OpaquePointer?](repeating: nil, count: Name.allCases.count * rowCounts.count)
    /// Where one statement's text and blob values are copied for binding; reused by the next.
    private let arena = UnsafeMutableRawBufferPointer.allocate(byteCount: arenaBytes, alignment: 16)
    /// The arena's size: the values of one statement that fit in it are not copied again by SQLite.
    static let arenaBytes = 256 * 1024

    deinit {
        finalize()
        arena.deallocate()
    }

    /// Runs `name` to completion with the values `bind` sets, in `db`'s transaction: for
    /// `rows` rows (one of ``rowCounts``) when `name` has ``Name/columns``.
    func execute(_ name: Name, rows: Int = 1, _ db: Database, bind: (inout Binder) -> Void) throws {
        let statement = try prepare(name, rows: rows, db)
        defer { sqlite3_reset(statement); sqlite3_clear_bindings(statement) }
        try Self.bind(statement, name, rows: rows, db, arena, bind)
        var code = sqlite3_step(statement)
        while code == SQLITE_ROW { code = sqlite3_step(statement) }
        guard code == SQLITE_DONE else { throw Self.error(code, name, db) }
    }

    /// Runs `name`, a statement without values.
    func execute(_ name: Name, _ db: Database) throws {
        try execute(name, db) { _ in }
    }

    /// Runs `body` in one transaction, begun `IMMEDIATE` (the writer takes the write lock at
    /// once, so that no other connection writes between its reads and its writes) and committed
    /// when `body` returns; rolled back when `body` throws or the commit fails, and the error
    /// rethrown.
    ///
    /// What GRDB's `inTransaction(.immediate)` does, without parsing `BEGIN` and `COMMIT`
    /// again for every batch: that cost about 30,000 instructions per commit, more than
    /// SQLite's own work for a webhook's delivery row.
    func transaction(_ db: Database, _ body: () throws -> Void) throws {
        try execute(.begin, db)
        do {
            try body()
            try execute(.commit, db)
        } catch {
            // Some failures (an I/O error, a full disk) end the transaction themselves; a
            // commit that failed otherwise (busy) leaves it open.
            if sqlite3_get_autocommit(db.sqliteConnection) == 0 { try? execute(.rollback, db) }
            throw error
        }
    }

    /// Runs `name` with the values `bind` sets and reads its first row, if any, with `read`.
    func first<T>(_ name: Name, _ db: Database, bind: (inout Binder) -> Void, read: (Columns) -> T) throws -> T? {
        let statement = try prepare(name, rows: 1, db)
        defer { sqlite3_reset(statement); sqlite3_clear_bindings(statement) }
        try Self.bind(statement, name, rows: 1, db, arena, bind)
        switch sqlite3_step(statement) {
        case SQLITE_ROW: return read(Columns(statement: statement))
        case SQLITE_DONE: return nil
        case let code: throw Self.error(code, name, db)
        }
    }

    /// Finalizes every prepared statement (on the writer queue, before the pool closes).
    func finalize() {
        for index in prepared.indices {
            sqlite3_finalize(prepared[index])
            prepared[index] = nil
        }
    }

    private func prepare(_ name: Name, rows: Int, _ db: Database) throws -> OpaquePointer {
        guard let size = Self.rowCounts.firstIndex(of: rows), rows == 1 || name.columns != nil else {
            preconditionFailure("\(name) is not prepared for \(rows) rows")
        }
        let slot = name.rawValue * Self.rowCounts.count + size
        if let statement = prepared[slot] { return statement }
        var statement: OpaquePointer?
        let code = sqlite3_prepare_v3(db.sqliteConnection, name.sql(rows: rows), -1, UInt32(SQLITE_PREPARE_PERSISTENT),
                                      &statement, nil)
        guard code == SQLITE_OK, let statement else { throw Self.error(code, name, db) }
        prepared[slot] = statement
        return statement
    }

    private static func bind(_ statement: OpaquePointer, _ name: Name, rows: Int, _ db: Database,
                             _ arena: UnsafeMutableRawBufferPointer, _ bind: (inout Binder) -> Void) throws {
        var binder = Binder(statement: statement, arena: arena, columns: name.columns ?? 0)
        bind(&binder)
        guard binder.failure == SQLITE_OK else { throw error(binder.failure, name, db) }
    }

    /// The same error GRDB would have thrown, so that ``JournalError`` classifies it alike.
    private static func error(_ code: Int32, _ name: Name, _ db: Database) -> DatabaseError {
        let extended = sqlite3_extended_errcode(db.sqliteConnection)
        return DatabaseError(resultCode: ResultCode(rawValue: extended != SQLITE_OK ? extended : code),
                             message: sqlite3_errmsg(db.sqliteConnection).map { String(cString: $0) }, sql: name.sql(rows: 1))
    }
}

/// SQLite copies a value bound with this destructor before the bind call returns.
private let sqliteTransient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)
