import Foundation
import GRDB

// How the SQLite journal stores a batch of appends inside the group commit's transaction: the
// dedupe claims, the events, their deliveries, bookings and reminders, in statements of many
// rows (``SQLiteStatements``), or one by one where an unusual case needs it.

extension SQLiteJournal {
    /// One append. A class: the group commit moves each write through its queue, its batch
    /// and the transaction's closure, and every copy of a struct would retain each of the
    /// entry's two dozen strings, arrays and the body again (about 18 copies per request).
    final class AppendItem: Sendable {
        let entry: JournalEntry
        /// The journal's clock when the append was called, unix seconds.
        let now: Double

        init(entry: consuming JournalEntry, now: Double) {
            self.entry = entry
            self.now = now
        }
    }

    /// Stores a batch's appends inside the caller's transaction, with the same results, errors
    /// and rows as storing them one by one in their order (``store(_:ttl:_:_:path:)``), in
    /// fewer statements: the dedupe keys of the whole batch in one, the events in another, then
    /// their deliveries and their bookings (in pieces of at most 32 rows, see
    /// ``SQLiteStatements/rowCounts``). SQLite's own work per statement (cursors on each
    /// b-tree, halting, resetting) is then paid once per piece: inserting deliveries ten to a
    /// transaction cost 29,300 instructions per row one per statement, 17,900 ten per statement.
    ///
    /// The unusual cases take the one-by-one path, so that they keep their exact meaning: when
    /// a key is a redelivery (then the batch's keys are taken back and the whole batch is
    /// stored one by one), and when an event id is already stored (then the piece of events
    /// that met it is undone by SQLite and stored one by one). No savepoint spans more than
    /// the keys' statement: SQLite copies every page a savepoint's changes touch (see `store`).
    static func store(_ items: [AppendItem], ttl: TimeInterval, _ db: Database, _ statements: SQLiteStatements,
                              path: String) throws -> [Result<AppendResult, any Error>] {
        guard items.count > 1 else { return try items.map { try store($0, ttl: ttl, db, statements, path: path) } }
        let keyed = items.filter { $0.entry.dedupeKey != nil }
        if !keyed.isEmpty {
            // Every key claimed is one change; a redelivery changes no row.
            try statements.execute(.savepoint, db)
            var claimed = 0
            for piece in SQLiteStatements.pieces(of: keyed.count) {
                claimed += try claim(keyed[piece], ttl: ttl, db, statements)
            }
            guard claimed == keyed.count else {
                try statements.execute(.rollbackToSavepoint, db)
                try statements.execute(.releaseSavepoint, db)
                return try items.map { try store($0, ttl: ttl, db, statements, path: path) }
            }
            try statements.execute(.releaseSavepoint, db)
        }
        var results = [Result<AppendResult, any Error>?](repeating: nil, count: items.count)
        var stored: [Int] = []
        stored.reserveCapacity(items.count)
        // Bodies larger together than the binding arena go one per statement, as before: SQLite
        // would hold a copy of all of a statement's bodies at once.
        let bodies = items.reduce(0) { $0 + $1.entry.body.count }
        for piece in SQLiteStatements.pieces(of: items.count, atMost: bodies <= SQLiteStatements.arenaBytes ? 32 : 1) {
            do {
                try statements.execute(.insertEvents, rows: piece.count, db) { bind in
                    for (row, index) in piece.enumerated() { bindEvent(items[index], row: row, &bind) }
                }
                stored.append(contentsOf: piece)
            } catch let error as DatabaseError where error.resultCode == .SQLITE_CONSTRAINT {
                // SQLite undid this statement: store its events one by one, as `store` does.
                for index in piece {
                    if let failure = try insertEvent(items[index], db, statements, path: path) {
                        results[index] = .failure(failure)
                    } else {
                        stored.append(index)
                    }
                }
            }
        }
        let accepted = try insertRest(stored.map { items[$0] }, db, statements, path: path)
        for (index, result) in zip(stored, accepted) { results[index] = .success(result) }
        return results.map { $0! }
    }

    /// Stores one append inside the caller's transaction. An event id already stored fails this
    /// append alone: its dedupe key, claimed just before, is given back (an expired key it
    /// replaced goes with it, as the prune would take it), and nothing else was written.
    /// Any other error aborts the whole batch.
    ///
    /// The dedupe key is claimed in one statement, which inserts it, or takes it over once it
    /// has expired, and changes no row for a redelivery: a lookup before an upsert walked
    /// the same b-tree twice for every new event. Only a redelivery reads the key's event.
    ///
    /// No savepoint per append: SQLite keeps a statement journal for every open savepoint,
    /// copying each page the append touches (under load, on a temporary file, that was 24 of
    /// the 32 `pwrite`s per request).
    private static func store(_ item: AppendItem, ttl: TimeInterval, _ db: Database, _ statements: SQLiteStatements,
                              path: String) throws -> Result<AppendResult, any Error> {
        let entry = item.entry
        if let key = entry.dedupeKey {
            if try claim([item], ttl: ttl, db, statements) == 0 {
                let seen = try statements.first(.dedupeLookup, db) { bind in
                    bind.text(1, entry.endpoint)
                    bind.text(2, key)
                } read: { row in row.text(0) }
                // The conflict that changed nothing was with this row, in this transaction.
                guard let seen else { throw JournalError(.other, path: path, "the dedupe key of a redelivery vanished during its append") }
                return .success(.duplicate(of: seen))
            }
        }
        if let failure = try insertEvent(item, db, statements, path: path) { return .failure(failure) }
        return .success(try insertRest([item], db, statements, path: path)[0])
    }

    /// Claims the dedupe keys of `items` (as many as one statement takes, see
    /// ``SQLiteStatements/rowCounts``) in one statement; how many it claimed. A redelivery's
    /// key is not claimed: it changes no row.
    private static func claim(_ items: ArraySlice<AppendItem>, ttl: TimeInterval, _ db: Database,
                              _ statements: SQLiteStatements) throws -> Int {
        try statements.execute(.claimDedupe, rows: items.count, db) { bind in
            for (row, item) in items.enumerated() {
                bind.row = row
                bind.text(1, item.entry.endpoint)
                bind.text(2, item.entry.dedupeKey)
                bind.text(3, item.entry.eventID)
                bind.real(4, item.now)
            }
            bind.row = items.count
            bind.real(1, ttl)
        }
        return db.changesCount
    }

    private static func bindEvent(_ item: AppendItem, row: Int, _ bind: inout SQLiteStatements.Binder) {
        let entry = item.entry
        bind.row = row
        bind.text(1, entry.eventID)
        bind.text(2, entry.endpoint)
        bind.text(3, entry.eventName)
        bind.real(4, entry.receivedAt.timeIntervalSince1970)
        bind.blob(5, entry.body)
        bind.text(6, entry.dedupeKey)
    }

    /// Inserts one append's event; nil once it is stored. When its id is already stored, gives
    /// its dedupe key back and returns the error that fails this append alone.
    private static func insertEvent(_ item: AppendItem, _ db: Database, _ statements: SQLiteStatements,
                                    path: String) throws -> JournalError? {
        let entry = item.entry
        try statements.execute(.insertEvent, db) { bind in bindEvent(item, row: 0, &bind) }
        guard db.changesCount == 1 else {
            if let key = entry.dedupeKey {
                try statements.execute(.forgetDedupe, db) { bind in
                    bind.text(1, entry.endpoint)
                    bind.text(2, key)
                    bind.text(3, entry.eventID)
                }
            }
            return JournalError(.duplicateEventID, path: path, "an event with the id \(entry.eventID) is already in \(path)")
        }
        return nil
    }

    /// The rest of the appends whose events are stored: deliveries, bookings, reminders, in
    /// statements of several rows each (the reminders, rare, one by one in order). Returns each
    /// append's result.
    private static func insertRest(_ items: [AppendItem], _ db: Database, _ statements: SQLiteStatements,
                                   path: String) throws -> [AppendResult] {
        // Each append's deliveries, one per notifier named.
        var ids = [[String: Int64]](repeating: [:], count: items.count)
        var deliveries: [(item: Int, notifier: String)] = []
        for (index, item) in items.enumerated() {
            var seen: Set<String> = []
            for notifier in item.entry.notifiers where seen.insert(notifier).inserted {
                deliveries.append((index, notifier))
            }
        }
        for range in SQLiteStatements.pieces(of: deliveries.count) {
            let piece = deliveries[range]
            let rows = piece.count
            try statements.execute(.insertDelivery, rows: rows, db) { bind in
                for (row, delivery) in piece.enumerated() {
                    let item = items[delivery.item]
                    let lease = item.entry.isLeased(delivery.notifier) ? item.entry.lease : nil
                    bind.row = row
                    bind.text(1, item.entry.eventID)
                    bind.text(2, delivery.notifier)
                    bind.text(3, lease == nil ? "pending" : "leased")
                    bind.integer(4, lease == nil ? 0 : 1)
                    bind.real(5, item.entry.receivedAt.timeIntervalSince1970)
                    bind.text(6, lease?.owner)
                    bind.real(7, lease?.until.timeIntervalSince1970)
                    bind.real(8, item.now)
                }
            }
            // One statement's rows take consecutive ids, in their order: each new id is one
            // past the largest, and nothing else writes meanwhile.
            guard db.changesCount == rows else {
                throw JournalError(.other, path: path, "storing \(rows) deliveries changed \(db.changesCount) rows")
            }
            let first = db.lastInsertedRowID - Int64(rows) + 1
            for (offset, delivery) in piece.enumerated() { ids[delivery.item][delivery.notifier] = first + Int64(offset) }
        }
        let booked = items.filter { $0.entry.booking != nil }
        for range in SQLiteStatements.pieces(of: booked.count) {
            try statements.execute(.upsertBooking, rows: range.count, db) { bind in
                for (row, item) in booked[range].enumerated() {
                    guard let b = item.entry.booking else { continue }
                    bind.row = row
                    bind.text(1, b.uid)
                    bind.text(2, b.status)
                    bind.text(3, b.eventTypeUid)
                    bind.real(4, b.startedAt.timeIntervalSince1970)
                    bind.real(5, b.endedAt?.timeIntervalSince1970)
                    bind.text(6, b.timeZone)
                    bind.text(7, b.guestName)
                    bind.text(8, b.guestEmail)
                    bind.text(9, item.entry.eventID)
                    bind.text(10, item.entry.eventName)
                }
            }
        }
        for item in items {
            guard let booking = item.entry.bookingKey else { continue }
            if item.entry.cancelsReminders {
                try db.cachedStatement(sql: """
                    UPDATE deliveries SET state = 'skipped', due_at = NULL, last_error = ?, updated_at = ?
                    WHERE booking_key = ? AND reminder_offset IS NOT NULL AND state = 'pending'
                    """).execute(arguments: [ScheduledReminder.cancelledReason, item.now, booking])
            }
            for reminder in item.entry.reminders { try schedule(reminder, booking: booking, item: item, db) }
        }
        return ids.map { .accepted(deliveries: $0) }
    }

    /// One reminder kept per booking, notifier and offset (see ``ScheduledReminder``).
    private static func schedule(_ reminder: ScheduledReminder, booking: String, item: AppendItem, _ db: Database) throws {
        let at = reminder.remindAt.timeIntervalSince1970
        let skipped = reminder.skipReason != nil
        let same = try Row.fetchAll(db.cachedStatement(sql: """
            SELECT id, state, remind_at FROM deliveries WHERE booking_key = ? AND notifier = ? AND reminder_offset = ?
            """), arguments: [booking, reminder.notifier, reminder.offset])
        if same.contains(where: { ($0[2] as Double?) == at }) { return }
        if let pending = same.first(where: { ($0[1] as String) == "pending" }) {
            try db.cachedStatement(sql: """
                UPDATE deliveries SET event_id = ?, remind_at = ?, due_at = ?, state = ?, last_error = ?, updated_at = ?
                WHERE id = ?
                """).execute(arguments: [item.entry.eventID, at, skipped ? nil : at, skipped ? "skipped" : "pending",
                                         reminder.skipReason, item.now, pending[0] as Int64])
            return
        }
        try db.cachedStatement(sql: """
            INSERT INTO deliveries (event_id, notifier, state, attempts, due_at, last_error, booking_key, reminder_offset,
                                    remind_at, updated_at)
            VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?)
            """).execute(arguments: [item.entry.eventID, reminder.notifier, skipped ? "skipped" : "pending",
                                     skipped ? nil : at, reminder.skipReason, booking, reminder.offset, at, item.now])
    }
}
