import GRDB

extension SQLiteJournal {
    /// The journal's schema, one migration per change, applied in order when a journal is
    /// opened (``init(directory:dedupeTTL:groupCommit:clock:outcomeWait:)``). A journal with a
    /// migration this list does not know was written by a newer Herald and is refused.
    ///
    /// Migrations are never edited once released: a change is a new one at the end.
    static let migrator: DatabaseMigrator = {
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
        migrator.registerMigration("v3: leases") { db in
            // Deliveries are handed out under leases (owner, lease_until) instead of a bare
            // 'delivering' state, may be skipped by rule, and are due at `due_at`. SQLite cannot
            // change a CHECK constraint in place, so the table is rebuilt with the same ids.
            try db.execute(sql: """
                CREATE TABLE deliveries_v3 (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
                    notifier TEXT NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'delivered', 'dead', 'skipped')),
                    attempts INTEGER NOT NULL DEFAULT 0,
                    due_at REAL,
                    last_error TEXT,
                    owner TEXT,
                    lease_until REAL,
                    interruptions INTEGER NOT NULL DEFAULT 0,
                    updated_at REAL NOT NULL);
                INSERT INTO deliveries_v3 (id, event_id, notifier, state, attempts, due_at, last_error, owner,
                                           lease_until, interruptions, updated_at)
                    SELECT id, event_id, notifier, CASE state WHEN 'delivering' THEN 'leased' ELSE state END,
                           attempts, next_attempt_at, last_error, CASE state WHEN 'delivering' THEN '' END,
                           CASE state WHEN 'delivering' THEN 0 END, interruptions, updated_at
                    FROM deliveries;
                -- Ids are never reused after a prune: carry the counter over.
                UPDATE sqlite_sequence SET seq = max(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'))
                    WHERE name = 'deliveries_v3';
                INSERT INTO sqlite_sequence (name, seq) SELECT 'deliveries_v3', seq FROM sqlite_sequence
                    WHERE name = 'deliveries' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'deliveries_v3');
                DROP TABLE deliveries;
                ALTER TABLE deliveries_v3 RENAME TO deliveries;
                CREATE INDEX deliveries_due ON deliveries(notifier, state, due_at);
                CREATE INDEX deliveries_lease ON deliveries(notifier, state, lease_until);
                CREATE INDEX deliveries_state ON deliveries(state);
                CREATE INDEX deliveries_event ON deliveries(event_id);
                """)
        }
        migrator.registerMigration("v4: reminders") { db in
            // A reminder is a delivery kept by its booking (booking_key), how long before the
            // start it goes out (reminder_offset, seconds) and when (remind_at, kept once final).
            try db.execute(sql: """
                ALTER TABLE deliveries ADD COLUMN booking_key TEXT;
                ALTER TABLE deliveries ADD COLUMN reminder_offset INTEGER;
                ALTER TABLE deliveries ADD COLUMN remind_at REAL;
                CREATE INDEX deliveries_reminders ON deliveries(booking_key, notifier, reminder_offset)
                    WHERE booking_key IS NOT NULL;
                """)
        }
        migrator.registerMigration("v5: bookings") { db in
            // The latest known state per booking uid, replaced in the commit of each event
            // about it: what agendas list.
            try db.execute(sql: """
                CREATE TABLE bookings (
                    uid TEXT PRIMARY KEY NOT NULL,
                    status TEXT,
                    event_type_uid TEXT,
                    started_at REAL NOT NULL,
                    ended_at REAL,
                    time_zone TEXT,
                    guest_name TEXT,
                    guest_email TEXT,
                    event_id TEXT NOT NULL,
                    event_name TEXT NOT NULL);
                CREATE INDEX bookings_start ON bookings(started_at);
                """)
        }
        migrator.registerMigration("v6: no index on state alone") { db in
            // Every delivery insert and every state change paid for it; the state counts
            // (`herald deliveries`, startup) read deliveries_due's (notifier, state) prefix,
            // and the rest that filter on state alone are CLI commands and startup.
            try db.execute(sql: "DROP INDEX IF EXISTS deliveries_state")
        }
        migrator.registerMigration("v7: deliveries' state rule and indexes") { db in
            // SQLite evaluates `state IN (five constants)` in a CHECK by building a temporary
            // b-tree of the five values on every insert and update of a row: two per request,
            // about a tenth of the instructions of a whole webhook. The same rule written as
            // comparisons costs a few instructions. A CHECK cannot be changed in place, so the
            // table is rebuilt with the same ids and its id counter.
            //
            // The due and lease indexes become partial, holding only the deliveries that can be
            // taken (pending, by due time) or taken over (leased, by lease expiry): a delivery
            // inserted leased and then delivered touches one of them twice instead of both
            // four times, and final deliveries, most of the table, are in neither.
            try db.execute(sql: """
                CREATE TABLE deliveries_v7 (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    event_id TEXT NOT NULL REFERENCES events(id) ON DELETE CASCADE,
                    notifier TEXT NOT NULL,
                    state TEXT NOT NULL CHECK (state = 'pending' OR state = 'leased' OR state = 'delivered'
                                               OR state = 'dead' OR state = 'skipped'),
                    attempts INTEGER NOT NULL DEFAULT 0,
                    due_at REAL,
                    last_error TEXT,
                    owner TEXT,
                    lease_until REAL,
                    interruptions INTEGER NOT NULL DEFAULT 0,
                    updated_at REAL NOT NULL,
                    booking_key TEXT,
                    reminder_offset INTEGER,
                    remind_at REAL);
                INSERT INTO deliveries_v7 (id, event_id, notifier, state, attempts, due_at, last_error, owner,
                                           lease_until, interruptions, updated_at, booking_key, reminder_offset,
                                           remind_at)
                    SELECT id, event_id, notifier, state, attempts, due_at, last_error, owner, lease_until,
                           interruptions, updated_at, booking_key, reminder_offset, remind_at
                    FROM deliveries;
                -- Ids are never reused after a prune: carry the counter over.
                UPDATE sqlite_sequence SET seq = max(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'))
                    WHERE name = 'deliveries_v7';
                INSERT INTO sqlite_sequence (name, seq) SELECT 'deliveries_v7', seq FROM sqlite_sequence
                    WHERE name = 'deliveries' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'deliveries_v7');
                DROP TABLE deliveries;
                ALTER TABLE deliveries_v7 RENAME TO deliveries;
                CREATE INDEX deliveries_due ON deliveries(notifier, due_at) WHERE state = 'pending';
                CREATE INDEX deliveries_lease ON deliveries(notifier, lease_until) WHERE state = 'leased';
                CREATE INDEX deliveries_event ON deliveries(event_id);
                CREATE INDEX deliveries_reminders ON deliveries(booking_key, notifier, reminder_offset)
                    WHERE booking_key IS NOT NULL;
                """)
        }
        migrator.registerMigration("v8: dedupe and bookings keyed by their primary key alone") { db in
            // Both are looked up and replaced by their primary key only, once per request: as
            // ordinary tables each kept that key in an index of its own beside the table's
            // rowid b-tree, so every insert wrote two b-trees where one holds the row by its
            // key. Their rows are small (a key and an id; a booking's summary), which is
            // where SQLite advises WITHOUT ROWID. Rebuilt with the same rows.
            try db.execute(sql: """
                CREATE TABLE dedupe_v8 (
                    endpoint TEXT NOT NULL,
                    key TEXT NOT NULL,
                    event_id TEXT NOT NULL,
                    seen_at REAL NOT NULL,
                    PRIMARY KEY (endpoint, key)) WITHOUT ROWID;
                INSERT INTO dedupe_v8 (endpoint, key, event_id, seen_at) SELECT endpoint, key, event_id, seen_at FROM dedupe;
                DROP TABLE dedupe;
                ALTER TABLE dedupe_v8 RENAME TO dedupe;
                CREATE INDEX dedupe_seen ON dedupe(seen_at);
                CREATE TABLE bookings_v8 (
                    uid TEXT PRIMARY KEY NOT NULL,
                    status TEXT,
                    event_type_uid TEXT,
                    started_at REAL NOT NULL,
                    ended_at REAL,
                    time_zone TEXT,
                    guest_name TEXT,
                    guest_email TEXT,
                    event_id TEXT NOT NULL,
                    event_name TEXT NOT NULL) WITHOUT ROWID;
                INSERT INTO bookings_v8 SELECT uid, status, event_type_uid, started_at, ended_at, time_zone, guest_name,
                                               guest_email, event_id, event_name FROM bookings;
                DROP TABLE bookings;
                ALTER TABLE bookings_v8 RENAME TO bookings;
                CREATE INDEX bookings_start ON bookings(started_at);
                """)
        }
        migrator.registerMigration("v9: no index on dedupe keys' times") { db in
            // It served only the hourly prune, and every request paid for it: a dedupe key's
            // insert wrote a leaf of this index beside the key's own, about two WAL pages per
            // commit under load (a tenth of a commit's pages). The prune reads the whole dedupe
            // table instead, once an hour, as it already reads the whole events table.
            try db.execute(sql: "DROP INDEX IF EXISTS dedupe_seen")
        }
        migrator.registerMigration("v10: no index on bookings' start times") { db in
            // Read by the agenda (once a day per agenda notifier) and the hourly prune, written
            // by every booking event: start times come in no order, so each one dirtied a leaf
            // of its own, 2.6 of a commit's 28 WAL pages under load. Both readers scan the
            // bookings table instead, which holds the bookings that have not yet ended.
            try db.execute(sql: "DROP INDEX IF EXISTS bookings_start")
        }
        migrator.registerMigration("v11: deliveries without AUTOINCREMENT or a foreign key") { db in
            // Both cost every request. AUTOINCREMENT reads and rewrites the deliveries' row of
            // `sqlite_sequence` in every statement that inserts deliveries: a WAL page in nearly
            // every commit under load (0.95 of 22.6). The foreign key looked each new delivery's
            // event up by its text id in the events' id index, in the transaction that had just
            // inserted that event. (The two together: 272,200 to 265,600 instructions per
            // request in `herald-bench pipeline`, two alternating runs each.)
            //
            // What they guaranteed still holds, kept by the journal's own statements:
            // - Ids are never reused. SQLite gives a new row one past the largest id, and the
            //   prune never removes the newest delivery (``SQLiteJournal/prune(before:)``). The
            //   counter is carried over as the largest id: a journal whose newest deliveries were
            //   already pruned (it received nothing for the whole retention before this upgrade)
            //   gives those pruned ids out again, once.
            // - Deliveries go with their event: the prune deletes them first, in the same
            //   transaction, and nothing else deletes events.
            //
            // The table is rebuilt with the same rows and ids (neither can be dropped in place).
            try db.execute(sql: """
                CREATE TABLE deliveries_v11 (
                    id INTEGER PRIMARY KEY,
                    event_id TEXT NOT NULL,
                    notifier TEXT NOT NULL,
                    state TEXT NOT NULL CHECK (state = 'pending' OR state = 'leased' OR state = 'delivered'
                                               OR state = 'dead' OR state = 'skipped'),
                    attempts INTEGER NOT NULL DEFAULT 0,
                    due_at REAL,
                    last_error TEXT,
                    owner TEXT,
                    lease_until REAL,
                    interruptions INTEGER NOT NULL DEFAULT 0,
                    updated_at REAL NOT NULL,
                    booking_key TEXT,
                    reminder_offset INTEGER,
                    remind_at REAL);
                INSERT INTO deliveries_v11 (id, event_id, notifier, state, attempts, due_at, last_error, owner,
                                            lease_until, interruptions, updated_at, booking_key, reminder_offset,
                                            remind_at)
                    SELECT id, event_id, notifier, state, attempts, due_at, last_error, owner, lease_until,
                           interruptions, updated_at, booking_key, reminder_offset, remind_at
                    FROM deliveries;
                DROP TABLE deliveries;
                ALTER TABLE deliveries_v11 RENAME TO deliveries;
                CREATE INDEX deliveries_due ON deliveries(notifier, due_at) WHERE state = 'pending';
                CREATE INDEX deliveries_lease ON deliveries(notifier, lease_until) WHERE state = 'leased';
                CREATE INDEX deliveries_event ON deliveries(event_id);
                CREATE INDEX deliveries_reminders ON deliveries(booking_key, notifier, reminder_offset)
                    WHERE booking_key IS NOT NULL;
                """)
        }
        return migrator
    }()
}
