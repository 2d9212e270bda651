import Foundation
import HeraldCore
import Logging
import PostgresNIO

// How the PostgreSQL journal stores appends and outcomes: both go through one group commit
// (``PostgresGroupCommit``), whose batch is written in one transaction, each append's event,
// dedupe key, deliveries, booking and reminders in one statement (``appendSQL``), and outcomes
// grouped by kind. The twin of SQLiteAppends.swift.

extension PostgresJournal {
    public func append(_ entry: consuming JournalEntry) async throws -> AppendResult {
        guard case .appended(let result) = try await commit(.append(entry)) else { preconditionFailure("append answered as record") }
        return result
    }

    public func record(_ outcomes: [DeliveryOutcome], owner: String) async throws -> [Int64] {
        guard !outcomes.isEmpty else { return [] }
        guard case .recorded(let lost) = try await commit(.record(outcomes, owner: owner)) else { preconditionFailure("record answered as append") }
        return lost
    }

    private func commit(_ work: PostgresGroupCommit.Work) async throws -> PostgresGroupCommit.Outcome {
        try await commits.submit(work) { batch in
            try await self.storeBatch(batch)
        }.get()
    }

    /// Stores a batch in one transaction: one outcome per item, in order. An item that cannot
    /// be stored on its own (a duplicate event id) gets its error; a database error fails all.
    private func storeBatch(_ batch: [PostgresGroupCommit.Work]) async throws -> [Result<PostgresGroupCommit.Outcome, JournalError>] {
        let now = clock()
        return try await transaction { connection in
            var outcomes = [Result<PostgresGroupCommit.Outcome, JournalError>?](repeating: nil, count: batch.count)
            var records: [(index: Int, outcomes: [DeliveryOutcome], owner: String)] = []
            for (index, work) in batch.enumerated() {
                switch work {
                case .append(let entry):
                    outcomes[index] = try await self.store(entry, now: now, on: connection).map { .appended($0) }
                case .record(let list, let owner):
                    // After the appends: an outcome never concerns a delivery appended in the
                    // same batch (its id is known only once that commit returned).
                    records.append((index, list, owner))
                }
            }
            let lost = try await self.store(records.map { ($0.outcomes, $0.owner) }, now: now, on: connection)
            for (record, lost) in zip(records, lost) { outcomes[record.index] = .success(.recorded(lost)) }
            return outcomes.map { $0! }
        }
    }

    /// One append in one statement: the dedupe key (claimed unless a live one exists), the
    /// event, and its deliveries.
    private func store(_ entry: JournalEntry, now: Date, on connection: PostgresConnection) async throws -> Result<AppendResult, JournalError> {
        var binds = PostgresBindings(capacity: 13)
        binds.append(entry.eventID)                                   // $1
        binds.append(entry.endpoint)                                  // $2
        binds.append(entry.eventName)                                 // $3
        binds.append(entry.receivedAt)                                // $4
        try binds.append(entry.body)                                     // $5
        binds.append(entry.dedupeKey)                                 // $6
        binds.append(now)                                             // $7
        binds.append(now.addingTimeInterval(-dedupeTTL))              // $8
        binds.append(entry.lease?.owner)                              // $9
        binds.append(entry.lease?.until)                              // $10
        var names: [String] = [], leased: [Bool] = []
        for name in entry.notifiers where !names.contains(name) {
            names.append(name)
            leased.append(entry.lease != nil && entry.leased.contains(name))
        }
        binds.append(names)                                           // $11
        binds.append(leased)                                          // $12
        let rows = try await connection.query(PostgresQuery(unsafeSQL: Self.appendSQL, binds: binds), logger: logger)
        var fresh = true, stored = false, seen: String?
        var ids: [String: Int64] = [:]
        for try await row in rows {
            let (isFresh, wasStored, firstID, id, notifier) = try row.decode((Bool, Bool, String?, Int64?, String?).self)
            fresh = isFresh
            stored = wasStored
            seen = firstID
            if let id, let notifier { ids[notifier] = id }
        }
        if stored {
            try await storeBooking(entry, now: now, on: connection)
            let waiting = names.enumerated().filter { !leased[$0.offset] }.map(\.element)
            if !waiting.isEmpty { try await Self.notify(waiting, on: connection, logger: logger) }
            return .success(.accepted(deliveries: ids))
        }
        guard fresh, let key = entry.dedupeKey else {
            return .failure(JournalError(.duplicateEventID, path: url.description, "an event with the id \(entry.eventID) is already in the journal"))
        }
        if let seen { return .success(.duplicate(of: seen)) }
        // The key was claimed by a transaction that committed after this statement began: a
        // new statement sees it.
        let again = try await connection.query(
            "SELECT event_id FROM herald_dedupe WHERE endpoint = \(entry.endpoint) AND key = \(key)", logger: logger)
        for try await row in again { return .success(.duplicate(of: try row.decode(String.self))) }
        return .failure(JournalError(.duplicateEventID, path: url.description, "an event with the id \(entry.eventID) is already in the journal"))
    }

    /// Wakes the instances' dispatchers of `notifiers` once the transaction commits.
    static func notify(_ notifiers: [String], on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.query(
            "SELECT pg_notify(\(PostgresWakeUps.channel), n) FROM unnest(\(notifiers)::text[]) AS n", logger: logger)
    }

    /// The bookings projection and reminders of an accepted entry, in its transaction (as
    /// ``SQLiteJournal`` does: see ``ScheduledReminder``).
    private func storeBooking(_ entry: JournalEntry, now: Date, on connection: PostgresConnection) async throws {
        if let b = entry.booking {
            try await connection.query("""
                INSERT INTO herald_bookings (uid, status, event_type_uid, started_at, ended_at, time_zone, guest_name,
                                             guest_email, event_id, event_name)
                VALUES (\(b.uid), \(b.status), \(b.eventTypeUid), \(b.startedAt), \(b.endedAt), \(b.timeZone), \(b.guestName),
                        \(b.guestEmail), \(entry.eventID), \(entry.eventName))
                ON CONFLICT (uid) DO UPDATE SET status = EXCLUDED.status, event_type_uid = EXCLUDED.event_type_uid,
                    started_at = EXCLUDED.started_at, ended_at = EXCLUDED.ended_at, time_zone = EXCLUDED.time_zone,
                    guest_name = EXCLUDED.guest_name, guest_email = EXCLUDED.guest_email, event_id = EXCLUDED.event_id,
                    event_name = EXCLUDED.event_name
                """, logger: logger)
        }
        guard let booking = entry.bookingKey else { return }
        if entry.cancelsReminders {
            try await connection.query("""
                UPDATE herald_deliveries SET state = 'skipped', due_at = NULL, last_error = \(ScheduledReminder.cancelledReason),
                    updated_at = \(now)
                WHERE booking_key = \(booking) AND reminder_offset IS NOT NULL AND state = 'pending'
                """, logger: logger)
        }
        for reminder in entry.reminders {
            let skipped = reminder.skipReason != nil
            let state = skipped ? DeliveryState.skipped.rawValue : DeliveryState.pending.rawValue
            let due: Date? = skipped ? nil : reminder.remindAt
            var same: [(id: Int64, state: String, remindAt: Date?)] = []
            for try await row in try await connection.query("""
                SELECT id, state, remind_at FROM herald_deliveries
                WHERE booking_key = \(booking) AND notifier = \(reminder.notifier) AND reminder_offset = \(Int32(clamping: reminder.offset))
                FOR UPDATE
                """, logger: logger) {
                let (id, state, at) = try row.decode((Int64, String, Date?).self)
                same.append((id, state, at))
            }
            // Stored microseconds: compare at that precision.
            let at = (reminder.remindAt.timeIntervalSince1970 * 1_000_000).rounded()
            if same.contains(where: { $0.remindAt.map { ($0.timeIntervalSince1970 * 1_000_000).rounded() == at } ?? false }) {
                continue
            }
            if let pending = same.first(where: { $0.state == DeliveryState.pending.rawValue }) {
                try await connection.query("""
                    UPDATE herald_deliveries SET event_id = \(entry.eventID), remind_at = \(reminder.remindAt), due_at = \(due),
                        state = \(state), last_error = \(reminder.skipReason), updated_at = \(now)
                    WHERE id = \(pending.id)
                    """, logger: logger)
                continue
            }
            try await connection.query("""
                INSERT INTO herald_deliveries (event_id, notifier, state, attempts, due_at, last_error, booking_key,
                                               reminder_offset, remind_at, updated_at)
                VALUES (\(entry.eventID), \(reminder.notifier), \(state), 0, \(due), \(reminder.skipReason), \(booking),
                        \(Int32(clamping: reminder.offset)), \(reminder.remindAt), \(now))
                ON CONFLICT (booking_key, notifier, reminder_offset) WHERE booking_key IS NOT NULL AND state = 'pending'
                DO NOTHING
                """, logger: logger)
        }
    }

    static let appendSQL = """
        WITH fresh AS (
            SELECT NOT EXISTS (SELECT 1 FROM herald_events WHERE id = $1) AS ok
        ), claimed AS (
            INSERT INTO herald_dedupe (endpoint, key, event_id, seen_at)
            SELECT $2, $6::text, $1, $7 FROM fresh WHERE fresh.ok AND $6::text IS NOT NULL
            ON CONFLICT (endpoint, key) DO UPDATE SET event_id = EXCLUDED.event_id, seen_at = EXCLUDED.seen_at
                WHERE herald_dedupe.seen_at <= $8
            RETURNING event_id
        ), event AS (
            INSERT INTO herald_events (id, endpoint, name, received_at, body)
            SELECT $1, $2, $3, $4, $5 FROM fresh
            WHERE fresh.ok AND ($6::text IS NULL OR EXISTS (SELECT 1 FROM claimed))
            ON CONFLICT (id) DO NOTHING
            RETURNING id
        ), inserted AS (
            INSERT INTO herald_deliveries (event_id, notifier, state, attempts, due_at, owner, lease_until, updated_at)
            SELECT event.id, n.notifier,
                   CASE WHEN n.leased THEN 'leased' ELSE 'pending' END,
                   CASE WHEN n.leased THEN 1 ELSE 0 END,
                   $4,
                   CASE WHEN n.leased THEN $9::text END,
                   CASE WHEN n.leased THEN $10::timestamptz END,
                   $7
            FROM event, unnest($11::text[], $12::bool[]) WITH ORDINALITY AS n(notifier, leased, position)
            ORDER BY n.position
            RETURNING id, notifier
        )
        SELECT (SELECT ok FROM fresh), EXISTS (SELECT 1 FROM event),
               (SELECT event_id FROM herald_dedupe WHERE endpoint = $2 AND key = $6::text),
               inserted.id, inserted.notifier
        FROM (SELECT 1) AS one LEFT JOIN inserted ON true
        """

    /// Outcomes of several `record` calls, each only while its owner still holds the lease, in
    /// one statement; returns, per call, the ids not written. A batch naming one delivery twice
    /// is written one outcome at a time, in order, as separate calls would be.
    private func store(_ calls: [(outcomes: [DeliveryOutcome], owner: String)], now: Date,
                       on connection: PostgresConnection) async throws -> [[Int64]] {
        let all = calls.flatMap { call in call.outcomes.map { (outcome: $0, owner: call.owner) } }
        guard !all.isEmpty else { return calls.map { _ in [] } }
        if Set(all.map(\.outcome.id)).count < all.count, all.count > 1 {
            var lost: [[Int64]] = []
            for call in calls {
                var mine: [Int64] = []
                for outcome in call.outcomes {
                    mine += try await store([([outcome], call.owner)], now: now, on: connection)[0]
                }
                lost.append(mine)
            }
            return lost
        }
        var ids: [Int64] = [], states: [String] = [], dues: [Date] = [], hasDue: [Bool] = [], errors: [String] = []
        var hasError: [Bool] = [], deltas: [Int32] = [], owners: [String] = []
        for (outcome, owner) in all {
            let state: DeliveryState, due: Date?, error: String?, delta: Int32
            switch outcome {
            case .delivered: (state, due, error, delta) = (.delivered, nil, nil, 0)
            case .retry(_, let at, let text): (state, due, error, delta) = (.pending, at, text, 0)
            case .dead(_, let text): (state, due, error, delta) = (.dead, nil, text, 0)
            case .skipped(_, let reason): (state, due, error, delta) = (.skipped, nil, reason, 0)
            case .released: (state, due, error, delta) = (.pending, now, nil, -1)
            case .postponed(_, let until, let reason): (state, due, error, delta) = (.pending, until, reason, -1)
            }
            ids.append(outcome.id)
            states.append(state.rawValue)
            dues.append(due ?? now)
            hasDue.append(due != nil)
            errors.append(error ?? "")
            hasError.append(error != nil)
            deltas.append(delta)
            owners.append(owner)
        }
        var written = Set<Int64>(), waiting = Set<String>()
        for try await row in try await connection.query("""
            UPDATE herald_deliveries d SET state = u.state, due_at = CASE WHEN u.has_due THEN u.due END,
                last_error = CASE WHEN u.has_error THEN u.error ELSE d.last_error END, attempts = d.attempts + u.delta,
                owner = NULL, lease_until = NULL, updated_at = \(now)
            FROM unnest(\(ids)::int8[], \(states)::text[], \(dues)::timestamptz[], \(hasDue)::bool[], \(errors)::text[],
                        \(hasError)::bool[], \(deltas)::int4[], \(owners)::text[])
                AS u(id, state, due, has_due, error, has_error, delta, owner)
            WHERE d.id = u.id AND d.state = 'leased' AND d.owner = u.owner
            RETURNING d.id, d.notifier, d.state = 'pending'
            """, logger: logger) {
            let (id, notifier, pending) = try row.decode((Int64, String, Bool).self)
            written.insert(id)
            if pending { waiting.insert(notifier) }
        }
        // Pending again (a retry, a release, quiet hours): every instance's sweep learns when
        // it is due, so it is taken even if this instance is gone by then.
        if !waiting.isEmpty { try await Self.notify(waiting.sorted(), on: connection, logger: logger) }
        return calls.map { call in call.outcomes.map(\.id).filter { !written.contains($0) } }
    }
}
