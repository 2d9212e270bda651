#ifndef HERALD_WAL_H
#define HERALD_WAL_H

/// Registers, once per process, a SQLite VFS named "herald-wal" wrapping the default one and
/// makes it the default. It changes two things. The frames SQLite appends to a `-wal` file are
/// gathered in memory and written with one write(2) when the transaction's commit frame is
/// written, or before any other operation on that file (a read, sync, truncate, size, lock,
/// close, or a write elsewhere). And a database file written by a copy that
/// `herald_database_copy_begin` announced on the calling thread (a checkpoint on the journal's
/// second connection) is synced every 256 KiB, at a paced rate if one is given, so that the
/// copy does not reach the disk in one burst at its final fsync, in front of a commit's WAL
/// fsync; its writes of consecutive pages are gathered into one write(2) of up to 124 KiB,
/// made before any other call on the file (the sync that ends the copy, the checkpoint lock
/// let go). Every other file, and every other call, goes straight to the wrapped VFS.
/// Returns 0 (SQLITE_OK) on success, or SQLite's error code.
int herald_wal_buffer_install(void);

/// Appends buffered and write(2) calls made for them since the process started, for tests.
void herald_wal_buffer_counts(long long *appends, long long *writes);

/// Until `herald_database_copy_end`, database files written on this thread are synced every
/// 256 KiB, and, when `bytesPerSecond` is more than 0, the writes wait between chunks so that
/// the copy writes at most that many bytes a second from now on.
void herald_database_copy_begin(long long bytesPerSecond);

/// Ends what `herald_database_copy_begin` began on this thread.
void herald_database_copy_end(void);

/// Chunks synced by copies on the calling thread since it started, for tests.
long long herald_database_copy_chunks(void);

/// write(2) calls made by copies on the calling thread since it started, for tests.
long long herald_database_copy_writes(void);

#endif
