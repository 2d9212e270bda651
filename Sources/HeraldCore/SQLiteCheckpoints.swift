import CSQLiteWAL
import Foundation
import GRDB
import GRDBSQLite
import Synchronization

/// Copies the SQLite journal's WAL into its database file on a connection of its own, so that
/// the writer's commits, and the webhooks waiting for them, wait for as little of the copy as
/// possible.
///
/// SQLite's own checkpoint runs on the writer, inside the commit that passes the WAL's size:
/// every page written since the last one is read back from the WAL, written to the database
/// file, and that file is fsynced, while no append can commit (20–50 ms at a time, every 1–2 s
/// at 1,000 webhooks a second). Here the writer only reports the WAL's size (SQLite's WAL hook,
/// after each commit) and hands the copy to a second connection, which copies the WAL while the
/// writer goes on committing (a PASSIVE checkpoint takes no lock the writer needs), then again
/// what was committed meanwhile, until little is left. If nothing is, SQLite starts the WAL over
/// from its beginning at the writer's next commit; otherwise the writer copies the little left
/// in a write of its own, queued once its next commit has answered its waiters (with the
/// database file's fsync, that is what appends still wait for), and the WAL starts over at the
/// following commit. Either way the WAL file keeps its size. A pass syncs the database file every
/// 256 KiB and, while the WAL has room, paces its writes (``copyBytesPerSecond``), so that the
/// commits' WAL fsyncs never wait behind a burst of the copy.
///
/// If the second connection cannot keep up (the writer appends faster than it copies), or fails,
/// the writer copies everything itself once the WAL reaches ``limitFrames``, as SQLite would:
/// the WAL stays bounded.
final class SQLiteCheckpoints: Sendable {
    /// WAL frames (one per page written) after which the copy starts.
    let startFrames: Int
    /// Frames a pass may leave behind for the writer to copy itself.
    let finishFrames: Int
    /// Frames at which the writer copies everything itself, whatever the second connection did.
    let limitFrames: Int
    /// Below this many frames in the WAL (half-way from ``startFrames`` to ``limitFrames``) a
    /// pass writes at most ``copyBytesPerSecond``; above, as fast as the disk takes it, so that
    /// a copy that falls behind the writer catches up before the writer must copy.
    let pacedBelowFrames: Int

    /// The pace of a pass's writes into the database file. A commit's WAL fsync waits for what
    /// the copy wrote since the last one (a virtual disk's flush writes the host's cache), so a
    /// copy spread out delays each commit a little instead of a few by tens of ms. 40 MB/s copies
    /// a full 64 MB WAL in 1.6 s, within the 2.5 s it takes 1,000 webhooks a second to write it.
    static let copyBytesPerSecond: Int64 = 40_000_000

    /// What the journal's checkpoints have done since it was opened (for tests).
    struct Statistics: Sendable, Equatable {
        /// Passes of the second connection, each a PASSIVE checkpoint.
        var passes = 0
        /// Copies by the writer of what the passes left behind.
        var finishes = 0
        /// Copies by the writer because the WAL reached ``limitFrames``.
        var forced = 0
        /// Passes that failed (another process's checkpoint, I/O errors); the writer then copies.
        var failures = 0
    }

    /// Where the copy stands.
    private enum Phase: UInt8 {
        /// Nothing to do until the WAL reaches ``startFrames``.
        case idle
        /// The second connection is copying.
        case copying
        /// The second connection left at most ``finishFrames``: the writer copies the rest.
        case caughtUp
        /// The writer's copy of the rest is queued behind the commit that saw `caughtUp`.
        case finishing
    }

    private let connection: DatabaseQueue
    private let phase = Atomic<UInt8>(Phase.idle.rawValue)
    /// The WAL's size in frames after the writer's last commit.
    private let walFrames = Atomic<Int>(0)
    private let counts = Mutex(Statistics())

    /// The writer's pool: the rest is copied in a write of its own, after the commit whose
    /// hook asked for it has answered its waiters.
    private let writerPool: DatabasePool

    /// Opens the second connection to the writer's database and makes the writer report each
    /// commit's WAL size here (SQLite's WAL hook) instead of checkpointing by itself (SQLite's
    /// `wal_autocheckpoint`, which the hook replaces). Thresholds are in bytes of WAL and
    /// converted to pages of `pageSize`; a WAL file past `limitBytes` is cut back to that size
    /// when SQLite starts it over.
    ///
    /// The hook's context is this object, unretained (a retained one would keep the writer's
    /// pool alive through the hook): the journal keeps it as long as its writer can commit.
    init(writer: DatabasePool, pageSize: Int, startBytes: Int, finishBytes: Int, limitBytes: Int) throws {
        writerPool = writer
        let page = max(512, pageSize)
        startFrames = max(1, startBytes / page)
        finishFrames = max(1, finishBytes / page)
        limitFrames = max(startFrames + 1, limitBytes / page)
        pacedBelowFrames = (startFrames + limitFrames) / 2
        var config = Configuration()
        config.label = "herald.journal.checkpoint"
        config.busyMode = .timeout(SQLiteJournal.busyTimeout)
        connection = try DatabaseQueue(path: writer.path, configuration: config)
        try writer.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA journal_size_limit = \(limitBytes)")
            sqlite3_wal_hook(db.sqliteConnection, { context, connection, _, frames in
                guard let context, let connection else { return SQLITE_OK }
                Unmanaged<SQLiteCheckpoints>.fromOpaque(context).takeUnretainedValue()
                    .committed(frames: Int(frames), connection)
                // As SQLite's own hook: the commit happened, whatever the checkpoint did.
                return SQLITE_OK
            }, Unmanaged.passUnretained(self).toOpaque())
        }
    }

    var statistics: Statistics { counts.withLock { $0 } }

    /// Stops the writer's reports, then closes the second connection once a pass in progress
    /// has ended (before the journal closes).
    func close() throws {
        writerPool.writeWithoutTransaction { db in _ = sqlite3_wal_hook(db.sqliteConnection, nil, nil) }
        try connection.close()
    }

    /// After each commit on the writer, on its thread, with the WAL's size in frames.
    private func committed(frames: Int, _ writer: OpaquePointer) {
        walFrames.store(frames, ordering: .releasing)
        let now = Phase(rawValue: phase.load(ordering: .acquiring))
        if now == .caughtUp {
            // The little left is copied by the writer, but not inside this commit: its
            // waiters are answered first. SQLite starts the WAL over at the next commit.
            phase.store(Phase.finishing.rawValue, ordering: .releasing)
            writerPool.asyncWriteWithoutTransaction { db in
                self.writerCheckpoint(db.sqliteConnection)
                self.phase.store(Phase.idle.rawValue, ordering: .releasing)
                self.counts.withLock { $0.finishes += 1 }
            }
        } else if now != .finishing, frames >= limitFrames {
            // While a pass holds the checkpoint lock this is busy: the pass then leaves the
            // rest to the writer (see `copy`).
            writerCheckpoint(writer)
            counts.withLock { $0.forced += 1 }
        } else if now == .idle, frames >= startFrames {
            phase.store(Phase.copying.rawValue, ordering: .releasing)
            connection.asyncWriteWithoutTransaction { db in self.copy(db) }
        }
    }

    /// A PASSIVE checkpoint on the writer connection: copies what is not copied yet, as
    /// SQLite's own hook does after a commit.
    private func writerCheckpoint(_ writer: OpaquePointer?) {
        sqlite3_wal_checkpoint_v2(writer, "main", SQLITE_CHECKPOINT_PASSIVE, nil, nil)
    }

    /// On the second connection: a pass copies the WAL as it was when the pass began; the
    /// writer may commit meanwhile. Passes go on until none of those commits is left
    /// (SQLite then starts the WAL over at the writer's next commit, no copy on the writer),
    /// or at most ``finishFrames`` are (the writer copies them after its next commit), or the
    /// WAL reached ``limitFrames`` (the writer copies the rest, whatever it is).
    private func copy(_ db: Database) {
        var before = -1
        while true {
            let wal: Int, copied: Int
            do {
                // Synced in chunks; paced while the WAL has room (CSQLiteWAL, wal_buffer.c).
                herald_database_copy_begin(walFrames.load(ordering: .acquiring) < pacedBelowFrames ? Self.copyBytesPerSecond : 0)
                defer { herald_database_copy_end() }
                (wal, copied) = try db.checkpoint(.passive)
            } catch {
                // Busy (another process's checkpoint) or an I/O error: the writer copies
                // after its next commit, as SQLite would have.
                counts.withLock { $0.failures += 1 }
                phase.store(Phase.caughtUp.rawValue, ordering: .releasing)
                return
            }
            counts.withLock { $0.passes += 1 }
            // Frames committed since the pass began (0 once SQLite started the WAL over).
            let left = walFrames.load(ordering: .acquiring) - copied
            if left <= 0 {
                phase.store(Phase.idle.rawValue, ordering: .releasing)
                return
            }
            // A reader that still needs older frames stops a pass short: no progress, no loop.
            if left <= finishFrames || wal >= limitFrames || copied <= before {
                phase.store(Phase.caughtUp.rawValue, ordering: .releasing)
                return
            }
            before = copied
        }
    }
}
