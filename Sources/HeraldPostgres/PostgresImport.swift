import Foundation
import HeraldCore
import PostgresNIO

/// Everything a journal holds, for moving it to PostgreSQL (`herald journal copy`).
public struct JournalSnapshot: Sendable {
    /// A remembered dedupe key.
    public struct DedupeKey: Sendable, Equatable {
        public var endpoint: String
        public var key: String
        public var eventID: String
        public var seenAt: Date
        public init(endpoint: String, key: String, eventID: String, seenAt: Date) {
            self.endpoint = endpoint
            self.key = key
            self.eventID = eventID
            self.seenAt = seenAt
        }
    }

    public var events: [StoredEvent]
    public var deliveries: [DeliveryRecord]
    public var dedupe: [DedupeKey]
    /// The bookings projection (what agendas list).
    public var bookings: [BookingSnapshot]

    public init(events: [StoredEvent], deliveries: [DeliveryRecord], dedupe: [DedupeKey], bookings: [BookingSnapshot] = []) {
        self.events = events
        self.deliveries = deliveries
        self.dedupe = dedupe
        self.bookings = bookings
    }
}

extension PostgresJournal {
    /// Stores `snapshot` in this (empty) journal, in one transaction: events, deliveries with
    /// their ids (so `herald deliveries show ID` still finds them), and dedupe keys. A delivery
    /// that was leased by the process that wrote the snapshot becomes pending and due at
    /// `now`: that process is gone. Refuses a journal that holds anything.
    public func importSnapshot(_ snapshot: JournalSnapshot) async throws {
        let now = clock()
        try await transaction { connection in
            try await connection.query("LOCK TABLE herald_events, herald_deliveries, herald_dedupe IN EXCLUSIVE MODE",
                                       logger: self.logger)
            var empty = false
            for try await row in try await connection.query("""
                SELECT NOT EXISTS (SELECT 1 FROM herald_events) AND NOT EXISTS (SELECT 1 FROM herald_dedupe)
                """, logger: self.logger) {
                empty = try row.decode(Bool.self)
            }
            guard empty else {
                throw JournalError(.other, path: self.url.description, """
                    the journal in database \(self.url.database) at \(self.url.server) is not empty: \
                    copy into a new database, so nothing stored there is mixed or lost
                    """)
            }
            for event in snapshot.events {
                try await connection.query("""
                    INSERT INTO herald_events (id, endpoint, name, received_at, body)
                    VALUES (\(event.id), \(event.endpoint), \(event.name), \(event.receivedAt), \(event.body))
                    """, logger: self.logger)
            }
            for d in snapshot.deliveries {
                let leased = d.state == .leased
                let state = leased ? DeliveryState.pending : d.state
                let due = leased ? now : d.dueAt
                try await connection.query("""
                    INSERT INTO herald_deliveries (id, event_id, notifier, state, attempts, due_at, last_error,
                                                   interruptions, booking_key, reminder_offset, remind_at, updated_at)
                    OVERRIDING SYSTEM VALUE
                    VALUES (\(d.id), \(d.eventID), \(d.notifier), \(state.rawValue), \(Int32(clamping: d.attempts)),
                            \(due), \(d.lastError), \(Int32(clamping: d.interruptions)), \(d.bookingKey),
                            \(d.reminderOffset.map { Int32(clamping: $0) }), \(d.remindAt), \(d.updatedAt))
                    """, logger: self.logger)
            }
            // New deliveries continue after the highest id copied.
            try await connection.query("""
                SELECT setval(pg_get_serial_sequence('herald_deliveries', 'id'),
                              GREATEST((SELECT max(id) FROM herald_deliveries), 1),
                              (SELECT max(id) FROM herald_deliveries) IS NOT NULL)
                """, logger: self.logger)
            for key in snapshot.dedupe {
                try await connection.query("""
                    INSERT INTO herald_dedupe (endpoint, key, event_id, seen_at)
                    VALUES (\(key.endpoint), \(key.key), \(key.eventID), \(key.seenAt))
                    """, logger: self.logger)
            }
            for b in snapshot.bookings {
                try await connection.query("""
                    INSERT INTO herald_bookings (uid, status, event_type_uid, started_at, ended_at, time_zone, guest_name,
                                                 guest_email, event_id, event_name)
                    VALUES (\(b.uid), \(b.status), \(b.eventTypeUid), \(b.startedAt), \(b.endedAt), \(b.timeZone),
                            \(b.guestName), \(b.guestEmail), \(b.eventID), \(b.eventName))
                    """, logger: self.logger)
            }
            return ()
        }
    }
}
