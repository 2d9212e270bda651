import Foundation
import GRDB

// How the SQLite journal takes due deliveries, renews their leases and records their outcomes,
// inside the group commit's transaction (the public methods that queue these writes are in
// SQLiteJournal.swift; appends are in SQLiteAppends.swift).

extension SQLiteJournal {
    /// ``lease(_:)`` inside the writer's transaction: the single writer is what keeps two
    /// callers from taking the same delivery.
    static func lease(_ request: LeaseRequest, now: Double, _ db: Database) throws -> LeaseResult {
        let at = request.now.timeIntervalSince1970
        let candidates = try Row.fetchAll(db.cachedStatement(sql: """
            SELECT id, state, interruptions FROM deliveries
            WHERE notifier = ?1 AND ((state = 'pending' AND due_at <= ?2) OR (state = 'leased' AND lease_until <= ?2))
            ORDER BY due_at, id LIMIT ?3
            """), arguments: [request.notifier, at, max(0, request.limit)])
        var result = LeaseResult()
        var taken: [Int64] = []
        var setAside: [Int64] = []
        let take = try db.cachedStatement(sql: """
            UPDATE deliveries SET state = 'leased', attempts = attempts + 1, owner = ?, lease_until = ?,
                interruptions = interruptions + ?, updated_at = ? WHERE id = ?
            """)
        let kill = try db.cachedStatement(sql: """
            UPDATE deliveries SET state = 'dead', due_at = NULL, owner = NULL, lease_until = NULL,
                interruptions = ?, last_error = ?, updated_at = ? WHERE id = ?
            """)
        for row in candidates {
            let id: Int64 = row[0]
            let expired = (row[1] as String) == "leased"
            let interruptions = (row[2] as Int) + (expired ? 1 : 0)
            if expired, interruptions >= request.deadAfter {
                try kill.execute(arguments: [interruptions, Interruptions.reason(interruptions), now, id])
                setAside.append(id)
                continue
            }
            try take.execute(arguments: [request.owner, request.until.timeIntervalSince1970, expired ? 1 : 0, now, id])
            if expired { result.takenOver += 1 }
            taken.append(id)
        }
        if !taken.isEmpty {
            let rows = try Row.fetchAll(db, sql: """
                SELECT \(recordColumns), e.endpoint, e.body \(recordFrom) WHERE d.id IN (\(placeholders(taken.count)))
                ORDER BY d.due_at, d.id
                """, arguments: StatementArguments(taken))
            result.deliveries = try rows.map { row in
                let record = try Self.record(row)
                return DueDelivery(record: record, event: StoredEvent(
                    id: record.eventID, endpoint: row[recordColumnCount], name: record.eventName,
                    receivedAt: record.receivedAt, body: row[recordColumnCount + 1] ?? Data()))
            }
        }
        if !setAside.isEmpty {
            result.setAside = try Row.fetchAll(db, sql: """
                \(recordSelect) WHERE d.id IN (\(placeholders(setAside.count))) ORDER BY d.id
                """, arguments: StatementArguments(setAside)).map(Self.record)
        }
        // When the sweep must look again unless woken: the earliest due time or lease expiry
        // left, each the first entry of its partial index.
        let due = try Double.fetchOne(db.cachedStatement(sql: """
            SELECT min(due_at) FROM deliveries WHERE notifier = ? AND state = 'pending'
            """), arguments: [request.notifier])
        let expiry = try Double.fetchOne(db.cachedStatement(sql: """
            SELECT min(lease_until) FROM deliveries WHERE notifier = ? AND state = 'leased'
            """), arguments: [request.notifier])
        result.nextDue = [due, expiry].compactMap { $0 }.min().map { Date(timeIntervalSince1970: $0) } ?? .distantFuture
        return result
    }

    /// ``renew(_:owner:until:)`` inside the writer's transaction: the ids whose lease `owner`
    /// no longer holds.
    static func renew(_ ids: [Int64], owner: String, until: Double, _ db: Database) throws -> [Int64] {
        let statement = try db.cachedStatement(sql: """
            UPDATE deliveries SET lease_until = ? WHERE id = ? AND state = 'leased' AND owner = ?
            """)
        var lost: [Int64] = []
        for id in ids {
            try statement.execute(arguments: [until, id, owner])
            if db.changesCount == 0 { lost.append(id) }
        }
        return lost
    }

    /// The outcome updates, each only for a delivery still leased to the owner. Constants, and
    /// prepared only when used: `record` runs for every delivery, and building the four texts
    /// and looking each up in GRDB's statement cache (which hashes the whole text) cost more
    /// than the update.
    enum OutcomeSQL {
        static let final = """
            UPDATE deliveries SET state = ?, due_at = NULL, last_error = coalesce(?, last_error), owner = NULL,
                lease_until = NULL, updated_at = ? WHERE id = ? AND state = 'leased' AND owner = ?
            """
        static let retry = """
            UPDATE deliveries SET state = 'pending', due_at = ?, last_error = ?, owner = NULL, lease_until = NULL,
                updated_at = ? WHERE id = ? AND state = 'leased' AND owner = ?
            """
        static let release = """
            UPDATE deliveries SET state = 'pending', due_at = ?1, attempts = attempts - 1, owner = NULL,
                lease_until = NULL, updated_at = ?1 WHERE id = ? AND state = 'leased' AND owner = ?
            """
        static let postpone = """
            UPDATE deliveries SET state = 'pending', due_at = ?, attempts = attempts - 1, last_error = ?, owner = NULL,
                lease_until = NULL, updated_at = ? WHERE id = ? AND state = 'leased' AND owner = ?
            """
    }

    /// ``record(_:owner:)`` inside the writer's transaction: the ids whose lease `owner` no
    /// longer holds, whose outcome is therefore not written.
    static func record(_ outcomes: [DeliveryOutcome], owner: String, now: Double, _ db: Database,
                               _ statements: SQLiteStatements) throws -> [Int64] {
        /// Delivered, dead and skipped share one update, prepared once with the hot statements.
        func final(_ state: String, _ error: String?, _ id: Int64) throws {
            try statements.execute(.finalOutcome, db) { bind in
                bind.text(1, state)
                bind.text(2, error)
                bind.real(3, now)
                bind.integer(4, id)
                bind.text(5, owner)
            }
        }
        var lost: [Int64] = []
        for outcome in outcomes {
            switch outcome {
            case .delivered(let id): try final("delivered", nil, id)
            case .dead(let id, let error): try final("dead", error, id)
            case .skipped(let id, let reason): try final("skipped", reason, id)
            case .retry(let id, let at, let error):
                try db.cachedStatement(sql: OutcomeSQL.retry).execute(arguments: [at.timeIntervalSince1970, error, now, id, owner])
            case .released(let id):
                try db.cachedStatement(sql: OutcomeSQL.release).execute(arguments: [now, id, owner])
            case .postponed(let id, let until, let reason):
                try db.cachedStatement(sql: OutcomeSQL.postpone).execute(arguments: [until.timeIntervalSince1970, reason, now, id, owner])
            }
            if db.changesCount == 0 { lost.append(outcome.id) }
        }
        return lost
    }
}
