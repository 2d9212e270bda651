import Foundation
import HeraldCore
import Logging
import PostgresNIO

/// The journal's tables in PostgreSQL, created and upgraded by numbered migrations.
///
/// `herald_schema_version` records each migration applied. ``migrate(_:logger:)`` runs under
/// a transaction-level advisory lock, so instances starting together apply each migration once;
/// a database whose schema is newer than this binary knows is refused (an older Herald must
/// not write to tables it does not understand).
public enum PostgresSchema {
    /// Advisory lock keys (arbitrary, fixed): one for migrations, one for pruning.
    static let migrationLock: Int64 = 0x4845_5241_4C44_0001
    static let pruneLock: Int64 = 0x4845_5241_4C44_0002

    /// The statements of each version, in order; version n is `migrations[n - 1]` (one statement
    /// per string: the extended query protocol takes one at a time). Append only:
    /// a released migration is never edited.
    static let migrations: [[String]] = [
        [
            """
            CREATE TABLE herald_events (
                id text PRIMARY KEY,
                endpoint text NOT NULL,
                name text NOT NULL,
                received_at timestamptz NOT NULL,
                body bytea NOT NULL
            )
            """,
            """
            CREATE TABLE herald_deliveries (
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                event_id text NOT NULL REFERENCES herald_events (id) ON DELETE CASCADE,
                notifier text NOT NULL,
                state text NOT NULL CHECK (state IN ('pending', 'leased', 'delivered', 'dead', 'skipped')),
                attempts integer NOT NULL DEFAULT 0,
                due_at timestamptz,
                last_error text,
                owner text,
                lease_until timestamptz,
                interruptions integer NOT NULL DEFAULT 0,
                updated_at timestamptz NOT NULL,
                UNIQUE (event_id, notifier)
            )
            """,
            "CREATE INDEX herald_deliveries_pending ON herald_deliveries (notifier, due_at, id) WHERE state = 'pending'",
            "CREATE INDEX herald_deliveries_leased ON herald_deliveries (notifier, lease_until, id) WHERE state = 'leased'",
            """
            CREATE TABLE herald_dedupe (
                endpoint text NOT NULL,
                key text NOT NULL,
                event_id text NOT NULL,
                seen_at timestamptz NOT NULL,
                PRIMARY KEY (endpoint, key)
            )
            """,
            "CREATE INDEX herald_dedupe_seen ON herald_dedupe (seen_at)",
        ],
        // 2: reminders (a delivery kept by its booking, offset and time) and the bookings
        // projection agendas read.
        [
            """
            ALTER TABLE herald_deliveries ADD COLUMN booking_key text, ADD COLUMN reminder_offset integer,
                ADD COLUMN remind_at timestamptz
            """,
            """
            CREATE INDEX herald_deliveries_reminders ON herald_deliveries (booking_key, notifier, reminder_offset)
                WHERE booking_key IS NOT NULL
            """,
            """
            CREATE TABLE herald_bookings (
                uid text PRIMARY KEY,
                status text,
                event_type_uid text,
                started_at timestamptz NOT NULL,
                ended_at timestamptz,
                time_zone text,
                guest_name text,
                guest_email text,
                event_id text NOT NULL,
                event_name text NOT NULL
            )
            """,
            "CREATE INDEX herald_bookings_start ON herald_bookings (started_at)",
            // A booking's reminders are deliveries to the same notifier as the event's own.
            "ALTER TABLE herald_deliveries DROP CONSTRAINT herald_deliveries_event_id_notifier_key",
            "CREATE INDEX herald_deliveries_event ON herald_deliveries (event_id)",
            // One pending reminder per booking, notifier and offset, even when two instances
            // schedule it at once.
            """
            CREATE UNIQUE INDEX herald_deliveries_pending_reminder ON herald_deliveries (booking_key, notifier, reminder_offset)
                WHERE booking_key IS NOT NULL AND state = 'pending'
            """,
        ],
    ]

    /// The schema version this binary writes.
    public static var current: Int { migrations.count }

    /// What ``migrate(_:logger:)`` found and did.
    public struct Migration: Sendable, Equatable {
        /// The version before (0: an empty database).
        public var from: Int
        /// The version now, ``current``.
        public var to: Int
        public init(from: Int, to: Int) {
            self.from = from
            self.to = to
        }
    }

    /// Brings the schema to ``current`` inside the caller's transaction.
    static func migrate(_ connection: PostgresConnection, logger: Logger) async throws -> Migration {
        try await connection.query("SELECT pg_advisory_xact_lock(\(migrationLock))", logger: logger)
        try await connection.query("""
            CREATE TABLE IF NOT EXISTS herald_schema_version (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """, logger: logger)
        var found = 0
        for try await row in try await connection.query(
            "SELECT COALESCE(max(version), 0) FROM herald_schema_version", logger: logger) {
            found = Int(try row.decode(Int32.self))
        }
        guard found <= current else {
            throw JournalError(.newerSchema, path: "", """
                the database's journal schema is version \(found), newer than this Herald knows (\(current)): \
                run a newer Herald, or restore the database from before the upgrade
                """)
        }
        for version in stride(from: found + 1, through: current, by: 1) {
            for statement in migrations[version - 1] {
                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
            try await connection.query("INSERT INTO herald_schema_version (version) VALUES (\(Int32(version)))", logger: logger)
            logger.notice("journal schema migrated", metadata: ["version": .stringConvertible(version)])
        }
        return Migration(from: found, to: current)
    }
}
