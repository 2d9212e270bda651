#ifndef HERALD_WAL_H
#define HERALD_WAL_H

/// Registers, once per process, a SQLite VFS named "herald-wal" wrapping the default one and
/// makes it the default. It changes two things. The frames SQLite appends to a `-wal` file are
/// gathered in memory and written with one write(2) when the transaction's commit frame is
/// written, or before any other operation on that file (a read, sync, truncate, size, lock,
/// close, or a write elsewhere). And the writes to a database file (what checkpoints write)
/// are handed to the kernel's write-back every 512 KiB, each such chunk once the one before it
/// is on disk, so a checkpoint reaches the disk at the disk's pace instead of in one burst at
/// its fsync. Every other file, and every other call, goes straight to the wrapped VFS.
/// Returns 0 (SQLITE_OK) on success, or SQLite's error code.
int herald_wal_buffer_install(void);

/// Appends buffered and write(2) calls made for them since the process started, for tests.
void herald_wal_buffer_counts(long long *appends, long long *writes);

/// Chunks of database file writes handed to write-back since the process started, for tests.
long long herald_database_hand_overs(void);

#endif
