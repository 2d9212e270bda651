import ArgumentParser
import Foundation
import GRDB
import HeraldCore
import HeraldPostgres
import Logging

extension JournalCommand {
    /// `herald journal copy --from sqlite:PATH --to postgres:URL`: moves an SQLite journal into
    /// an empty PostgreSQL database, so a single instance can become several without losing
    /// what it accepted. Stop the instance first: what it accepts meanwhile is not copied.
    struct Copy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy an SQLite journal (events, deliveries, dedupe keys) into an empty PostgreSQL database.",
            discussion: """
                Stop the server that uses the SQLite journal first. Example:
                  herald journal copy --from sqlite:/var/lib/herald --to "postgres:$DATABASE_URL"
                """)
        @Option(help: "sqlite:PATH, the SQLite journal's directory (its storage.path).") var from: String
        @Option(help: "postgres:URL, the database to copy into; it must hold no journal data.") var to: String

        func run() async throws {
            guard from.hasPrefix("sqlite:"), from.count > 7 else {
                throw ValidationError("--from expects sqlite:PATH, the directory of an SQLite journal")
            }
            guard to.hasPrefix("postgres:") else {
                throw ValidationError("--to expects postgres:URL, e.g. postgres:postgres://user:password@host:5432/database")
            }
            let url: PostgresURL
            do { url = try PostgresURL(parsing: String(to.dropFirst("postgres:".count))) } catch {
                throw ValidationError("--to: \(error.message)")
            }
            do {
                let snapshot = try Self.read(directory: String(from.dropFirst("sqlite:".count)))
                let journal = try PostgresJournal(url: url, poolSize: 2, logger: Logger(label: "herald.journal"))
                try await PostgresJournal.withJournal(journal) { try await $0.importSnapshot(snapshot) }
                let waiting = snapshot.deliveries.count { !$0.state.isFinal }
                print("""
                    copied \(snapshot.events.count) events, \(snapshot.deliveries.count) deliveries (\(waiting) not yet \
                    done) and \(snapshot.dedupe.count) dedupe keys to \(url)
                    """)
            } catch let error as JournalError {
                FileHandle.standardError.write(Data("herald: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }

        /// The whole SQLite journal, read in one transaction after it is brought to the current
        /// schema (opening it does that).
        static func read(directory: String) throws -> JournalSnapshot {
            let journal = try SQLiteJournal.openExisting(directory: directory)
            let path = journal.path
            try journal.close()
            var configuration = Configuration()
            configuration.readonly = true
            let queue: DatabaseQueue
            do { queue = try DatabaseQueue(path: path, configuration: configuration) } catch {
                throw JournalError(.cannotOpen, path: path, "cannot read the SQLite journal \(path): \(error)")
            }
            func date(_ value: Double?) -> Date? { value.map(Date.init(timeIntervalSince1970:)) }
            do {
                return try queue.read { db in
                    let events = try Row.fetchAll(db, sql: "SELECT id, endpoint, name, received_at, body FROM events ORDER BY received_at")
                        .map { row in
                            StoredEvent(id: row[0], endpoint: row[1], name: row[2], receivedAt: Date(timeIntervalSince1970: row[3]),
                                        body: (row[4] as Data?) ?? Data())
                        }
                    let names = Dictionary(events.map { ($0.id, ($0.name, $0.receivedAt)) }, uniquingKeysWith: { a, _ in a })
                    let deliveries = try Row.fetchAll(db, sql: """
                        SELECT id, event_id, notifier, state, attempts, due_at, last_error, owner, lease_until,
                               interruptions, updated_at, booking_key, reminder_offset, remind_at
                        FROM deliveries ORDER BY id
                        """).map { row -> DeliveryRecord in
                            let eventID: String = row[1]
                            let text: String = row[3]
                            guard let state = DeliveryState(rawValue: text) else {
                                throw JournalError(.corrupted, path: path, "delivery \(row[0] as Int64) has the unknown state \(text)")
                            }
                            return DeliveryRecord(
                                id: row[0], eventID: eventID, eventName: names[eventID]?.0 ?? "", notifier: row[2], state: state,
                                attempts: row[4], dueAt: date(row[5]), lastError: row[6], owner: row[7], leaseUntil: date(row[8]),
                                interruptions: row[9], bookingKey: row[11], reminderOffset: row[12], remindAt: date(row[13]),
                                receivedAt: names[eventID]?.1 ?? Date(timeIntervalSince1970: 0),
                                updatedAt: Date(timeIntervalSince1970: row[10]))
                        }
                    let dedupe = try Row.fetchAll(db, sql: "SELECT endpoint, key, event_id, seen_at FROM dedupe").map { row in
                        JournalSnapshot.DedupeKey(endpoint: row[0], key: row[1], eventID: row[2],
                                                  seenAt: Date(timeIntervalSince1970: row[3]))
                    }
                    let bookings = try Row.fetchAll(db, sql: """
                        SELECT uid, status, event_type_uid, started_at, ended_at, time_zone, guest_name, guest_email,
                               event_id, event_name FROM bookings
                        """).map { row in
                        BookingSnapshot(uid: row[0], status: row[1], eventTypeUid: row[2], startedAt: Date(timeIntervalSince1970: row[3]),
                                        endedAt: date(row[4]), timeZone: row[5], guestName: row[6], guestEmail: row[7],
                                        eventID: row[8], eventName: row[9])
                    }
                    return JournalSnapshot(events: events, deliveries: deliveries, dedupe: dedupe, bookings: bookings)
                }
            } catch let error as JournalError {
                throw error
            } catch {
                throw JournalError(.cannotOpen, path: path, "cannot read the SQLite journal \(path): \(error)")
            }
        }
    }
}
