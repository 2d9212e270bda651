// A SQLite VFS shim that turns a commit's WAL frames into one write(2) (see herald_wal.h).
//
// SQLite appends each frame to the WAL as two writes, its 24-byte header then the page, so a
// commit of N pages makes 2N pwrite(2) calls. They are contiguous, and nothing reads them
// before the commit is complete: other connections learn of frames only from the WAL index,
// which SQLite updates after the commit frame is written (and, with synchronous = FULL,
// synced); the writing connection reads its own frames through this file, which flushes
// first. So the appends are kept in a buffer and written when the commit frame (a frame
// header whose "database size after commit" field is not zero) has been appended, or before
// anything else is done with the file. What is lost in a crash is only what SQLite had not
// committed yet.
//
// The database file itself is written only by checkpoints, which copy pages from the WAL into
// it and then fsync it. Left to the kernel, a checkpoint's tens of MB reach the disk in one
// burst at that fsync, and every WAL fsync of a commit meanwhile waits behind the burst (a
// 294 ms WAL fdatasync, measured, while a 64 MB copy was synced). Handing the writes to
// write-back as they are made (sync_file_range, which this file did before) does not help on a
// virtual disk: the guest's writes complete into the host's cache, and the next flush, which
// is a commit's WAL fdatasync, pays for all of them. So a copy made on the journal's second
// connection (SQLiteCheckpoints.swift, which calls herald_database_copy_begin on its thread)
// is synced every 256 KiB, and, when paced, waits between chunks so that it writes at most
// its given bytes per second: a commit's fdatasync then finds at most one small chunk before
// it. Measured on this kind of machine (a 1,000-a-second append + fdatasync beside a 32 MB copy
// every 2.5 s, 12 s each, two rounds): fdatasyncs over 5 ms were 51 and 60 with one sync at the
// copy's end, 126 and 147 with sync_file_range every 512 KiB, 14 and 48 synced every 512 KiB,
// 4 and 21 paced at 40 MB/s. Copies made on other threads (the writer's own) are as SQLite
// makes them.
#define _GNU_SOURCE
#include "herald_wal.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <pthread.h>
#include <fcntl.h>
#include <unistd.h>
#include <time.h>

typedef struct {
    sqlite3_file base;
    sqlite3_file *real;       // the wrapped VFS's file, in the same allocation after this struct
    unsigned char *buffer;
    int capacity;
    int used;
    sqlite3_int64 start;      // file offset of buffer[0]
    int commitPending;        // the last appended header was a commit frame's
} WalFile;

// The database file: writes go on as they are; on a copy's thread, synced in chunks (above).
typedef struct {
    sqlite3_file base;
    sqlite3_file *real;       // the wrapped VFS's file, in the same allocation after this struct
    int fd;                   // the file opened again, read-only, for fdatasync; -1 if not
    sqlite3_int64 bytes;      // bytes written on a copy's thread since the last sync
    unsigned char *pending;   // a copy's contiguous page writes not made yet (see dbWrite)
    int pendingUsed;
    sqlite3_int64 pendingStart;  // file offset of pending[0]
    int writeError;           // a failed write of pending pages, for the next sync to report
} DbFile;

static sqlite3_vfs shim;
static sqlite3_vfs *wrapped;
static sqlite3_io_methods walMethods, dbMethods;
static atomic_llong appendCount, writeCount;

/// Bytes a copy writes to a database file between two syncs.
enum { copyChunkBytes = 256 * 1024 };

// The copy on this thread, if any (herald_database_copy_begin).
static _Thread_local int copying;
static _Thread_local long long copyRate;       // bytes per second; 0: not paced
static _Thread_local long long copyWritten;    // bytes synced since the copy began
static _Thread_local struct timespec copyBegan;
static _Thread_local long long chunkCount;     // chunks synced on this thread, ever
static _Thread_local long long copyWriteCount; // write(2) calls of copies on this thread, ever

enum { frameHeaderSize = 24, bufferLimit = 4 << 20, writeLimit = 124 * 1024 };

static int flush(WalFile *f) {
    int rc = SQLITE_OK;
    // The unix VFS writes at most 128 KiB - 1 per call (it masks larger sizes and reports the
    // short write as a full disk): larger buffers go in pieces below that.
    for (int done = 0; done < f->used && rc == SQLITE_OK; done += writeLimit) {
        int amount = f->used - done < writeLimit ? f->used - done : writeLimit;
        rc = f->real->pMethods->xWrite(f->real, f->buffer + done, amount, f->start + done);
        atomic_fetch_add_explicit(&writeCount, 1, memory_order_relaxed);
    }
    // On failure the frames are dropped: SQLite sees the error on this commit and rolls it back.
    f->used = 0;
    f->commitPending = 0;
    return rc;
}

static int walWrite(sqlite3_file *file, const void *data, int amount, sqlite3_int64 offset) {
    WalFile *f = (WalFile *)file;
    if (f->used > 0 && offset != f->start + f->used) {
        int rc = flush(f);
        if (rc != SQLITE_OK) return rc;
    }
    if (amount > writeLimit) {
        // Larger than any page (64 KiB at most): not a frame; written as it comes.
        int rc = flush(f);
        return rc != SQLITE_OK ? rc : f->real->pMethods->xWrite(f->real, data, amount, offset);
    }
    if (f->used + amount > f->capacity) {
        if (f->used + amount > bufferLimit) {
            int rc = flush(f);
            if (rc != SQLITE_OK) return rc;
        }
        int capacity = f->capacity ? f->capacity : 64 * 1024;
        while (capacity < f->used + amount) capacity *= 2;
        if (capacity != f->capacity) {
            unsigned char *grown = realloc(f->buffer, (size_t)capacity);
            if (!grown) {
                int rc = flush(f);
                return rc != SQLITE_OK ? rc : f->real->pMethods->xWrite(f->real, data, amount, offset);
            }
            f->buffer = grown;
            f->capacity = capacity;
        }
    }
    if (f->used == 0) f->start = offset;
    memcpy(f->buffer + f->used, data, (size_t)amount);
    f->used += amount;
    atomic_fetch_add_explicit(&appendCount, 1, memory_order_relaxed);
    if (amount == frameHeaderSize) {
        const unsigned char *h = data;
        f->commitPending = (h[4] | h[5] | h[6] | h[7]) != 0;
        return SQLITE_OK;
    }
    return f->commitPending ? flush(f) : SQLITE_OK;
}

// Every other method flushes first, then does what the wrapped file does.
#define FLUSHED(call) \
    WalFile *f = (WalFile *)file; \
    int rc = flush(f); \
    if (rc != SQLITE_OK) return rc; \
    return f->real->pMethods->call

static int walRead(sqlite3_file *file, void *data, int amount, sqlite3_int64 offset) {
    FLUSHED(xRead(f->real, data, amount, offset));
}
static int walTruncate(sqlite3_file *file, sqlite3_int64 size) { FLUSHED(xTruncate(f->real, size)); }
static int walSync(sqlite3_file *file, int flags) { FLUSHED(xSync(f->real, flags)); }
static int walFileSize(sqlite3_file *file, sqlite3_int64 *size) { FLUSHED(xFileSize(f->real, size)); }
static int walLock(sqlite3_file *file, int level) { FLUSHED(xLock(f->real, level)); }
static int walUnlock(sqlite3_file *file, int level) { FLUSHED(xUnlock(f->real, level)); }
static int walCheckReservedLock(sqlite3_file *file, int *out) { FLUSHED(xCheckReservedLock(f->real, out)); }
static int walFileControl(sqlite3_file *file, int op, void *arg) { FLUSHED(xFileControl(f->real, op, arg)); }
static int walShmMap(sqlite3_file *file, int page, int size, int extend, void volatile **out) {
    FLUSHED(xShmMap(f->real, page, size, extend, out));
}
static int walShmLock(sqlite3_file *file, int offset, int n, int flags) { FLUSHED(xShmLock(f->real, offset, n, flags)); }
static int walShmUnmap(sqlite3_file *file, int deleteFlag) { FLUSHED(xShmUnmap(f->real, deleteFlag)); }
static int walFetch(sqlite3_file *file, sqlite3_int64 offset, int amount, void **out) {
    FLUSHED(xFetch(f->real, offset, amount, out));
}
static int walUnfetch(sqlite3_file *file, sqlite3_int64 offset, void *page) { FLUSHED(xUnfetch(f->real, offset, page)); }

static int walSectorSize(sqlite3_file *file) {
    WalFile *f = (WalFile *)file;
    return f->real->pMethods->xSectorSize(f->real);
}
static int walDeviceCharacteristics(sqlite3_file *file) {
    WalFile *f = (WalFile *)file;
    return f->real->pMethods->xDeviceCharacteristics(f->real);
}
// No flush: it cannot report an error, and SQLite raises it after a commit's frames, which are
// written by then, to order its own updates of the WAL index.
static void walShmBarrier(sqlite3_file *file) {
    WalFile *f = (WalFile *)file;
    f->real->pMethods->xShmBarrier(f->real);
}
static int walClose(sqlite3_file *file) {
    WalFile *f = (WalFile *)file;
    int flushed = flush(f);
    int rc = f->real->pMethods->xClose(f->real);
    free(f->buffer);
    f->buffer = NULL;
    f->capacity = 0;
    return flushed != SQLITE_OK ? flushed : rc;
}

static int dbFlush(DbFile *f);

// The database file's methods: the wrapped file's, after the copy's pending writes are made
// (see dbWrite), and write-back as writes are made.
#define PASSED(call) \
    DbFile *f = (DbFile *)file; \
    int flushed = dbFlush(f); \
    if (flushed != SQLITE_OK) return flushed; \
    return f->real->pMethods->call

// Syncs what this copy wrote since its last chunk, then, when paced, sleeps until the copy's
// bytes so far fit its rate. A failed fdatasync is not reported here: the file's error is seen
// by SQLite's own descriptor too, at the fsync that ends the checkpoint, which fails it.
static void syncChunk(DbFile *f) {
    fdatasync(f->fd);
    chunkCount += 1;
    copyWritten += f->bytes;
    f->bytes = 0;
    if (copyRate <= 0) return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long elapsed = (now.tv_sec - copyBegan.tv_sec) * 1000000000LL + (now.tv_nsec - copyBegan.tv_nsec);
    long long due = (long long)((double)copyWritten / (double)copyRate * 1e9);
    if (due > elapsed) {
        long long wait = due - elapsed;
        struct timespec pause = { .tv_sec = wait / 1000000000LL, .tv_nsec = wait % 1000000000LL };
        nanosleep(&pause, NULL);
    }
}

// Counts `amount` bytes a copy wrote, and syncs a chunk once there are enough.
static void copied(DbFile *f, int amount) {
    if (f->fd < 0) return;
    f->bytes += amount;
    if (f->bytes >= copyChunkBytes) syncChunk(f);
}

// A copy writes the pages it copies in page order, one pwrite(2) each, and the pages it
// copies are mostly new ones, appended to the file one after the other: about one 2 KiB page
// per webhook. On a copy's thread, writes that continue the one before are gathered (up to
// writeLimit) and made as one; any other call on the file makes them first. They are made
// before the checkpoint lock is let go (an xShmLock call on this file) and before the sync
// that ends the copy, so no other connection's copy can write the same page in between.
static int dbFlush(DbFile *f) {
    if (f->pendingUsed == 0) return SQLITE_OK;
    int amount = f->pendingUsed;
    f->pendingUsed = 0;
    int rc = f->real->pMethods->xWrite(f->real, f->pending, amount, f->pendingStart);
    copyWriteCount += 1;
    if (rc != SQLITE_OK) {
        f->writeError = rc;
        return rc;
    }
    copied(f, amount);
    return SQLITE_OK;
}

static int dbWrite(sqlite3_file *file, const void *data, int amount, sqlite3_int64 offset) {
    DbFile *f = (DbFile *)file;
    if (copying && f->fd >= 0 && amount <= writeLimit) {
        if (f->pendingUsed > 0 && (offset != f->pendingStart + f->pendingUsed || f->pendingUsed + amount > writeLimit)) {
            int rc = dbFlush(f);
            if (rc != SQLITE_OK) return rc;
        }
        if (f->pending == NULL) f->pending = malloc(writeLimit);
        if (f->pending != NULL) {
            if (f->pendingUsed == 0) f->pendingStart = offset;
            memcpy(f->pending + f->pendingUsed, data, (size_t)amount);
            f->pendingUsed += amount;
            return SQLITE_OK;
        }
    }
    int flushed = dbFlush(f);
    if (flushed != SQLITE_OK) return flushed;
    int rc = f->real->pMethods->xWrite(f->real, data, amount, offset);
    if (!copying) return rc;
    copyWriteCount += 1;
    if (rc == SQLITE_OK) copied(f, amount);
    return rc;
}
static int dbSync(sqlite3_file *file, int flags) {
    DbFile *f = (DbFile *)file;
    dbFlush(f);
    // A write that failed where its error could not be returned fails the copy here, before
    // SQLite counts the pages as copied.
    if (f->writeError != SQLITE_OK) {
        int failed = f->writeError;
        f->writeError = SQLITE_OK;
        return failed;
    }
    // Whatever was written is on disk after this (or the sync failed and SQLite reports it).
    f->bytes = 0;
    return f->real->pMethods->xSync(f->real, flags);
}
static int dbClose(sqlite3_file *file) {
    DbFile *f = (DbFile *)file;
    int flushed = dbFlush(f);
    int rc = f->real->pMethods->xClose(f->real);
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    free(f->pending);
    f->pending = NULL;
    return flushed != SQLITE_OK ? flushed : rc;
}
static int dbRead(sqlite3_file *file, void *data, int amount, sqlite3_int64 offset) {
    PASSED(xRead(f->real, data, amount, offset));
}
static int dbTruncate(sqlite3_file *file, sqlite3_int64 size) { PASSED(xTruncate(f->real, size)); }
static int dbFileSize(sqlite3_file *file, sqlite3_int64 *size) { PASSED(xFileSize(f->real, size)); }
static int dbLock(sqlite3_file *file, int level) { PASSED(xLock(f->real, level)); }
static int dbUnlock(sqlite3_file *file, int level) { PASSED(xUnlock(f->real, level)); }
static int dbCheckReservedLock(sqlite3_file *file, int *out) { PASSED(xCheckReservedLock(f->real, out)); }
static int dbFileControl(sqlite3_file *file, int op, void *arg) { PASSED(xFileControl(f->real, op, arg)); }
// Not error codes: answered without making the pending writes.
static int dbSectorSize(sqlite3_file *file) { return ((DbFile *)file)->real->pMethods->xSectorSize(((DbFile *)file)->real); }
static int dbDeviceCharacteristics(sqlite3_file *file) {
    return ((DbFile *)file)->real->pMethods->xDeviceCharacteristics(((DbFile *)file)->real);
}
static int dbShmMap(sqlite3_file *file, int page, int size, int extend, void volatile **out) {
    PASSED(xShmMap(f->real, page, size, extend, out));
}
static int dbShmLock(sqlite3_file *file, int offset, int n, int flags) { PASSED(xShmLock(f->real, offset, n, flags)); }
static void dbShmBarrier(sqlite3_file *file) {
    DbFile *f = (DbFile *)file;
    (void)dbFlush(f);  // a failed write is reported by the sync that ends the copy
    f->real->pMethods->xShmBarrier(f->real);
}
static int dbShmUnmap(sqlite3_file *file, int deleteFlag) { PASSED(xShmUnmap(f->real, deleteFlag)); }
static int dbFetch(sqlite3_file *file, sqlite3_int64 offset, int amount, void **out) {
    PASSED(xFetch(f->real, offset, amount, out));
}
static int dbUnfetch(sqlite3_file *file, sqlite3_int64 offset, void *page) { PASSED(xUnfetch(f->real, offset, page)); }

// Opens the wrapped VFS's file behind a wrapper of `size` bytes at `file` (a WalFile or a
// DbFile, both starting with `base` and `real`), with `methods`; the file is used as it is when
// it is of an older kind (no shared memory or mmap methods to pass on). A failed open leaves
// `file` without methods: SQLite does not close a file whose open failed.
static int openWrapped(sqlite3_filename name, sqlite3_file *file, size_t size, const sqlite3_io_methods *methods,
                       int flags, int *outFlags) {
    memset(file, 0, size);
    sqlite3_file *real = (sqlite3_file *)((char *)file + size);
    ((WalFile *)file)->real = real;
    int rc = wrapped->xOpen(wrapped, name, real, flags, outFlags);
    if (rc != SQLITE_OK || real->pMethods == NULL) {
        file->pMethods = NULL;
        return rc;
    }
    if (real->pMethods->iVersion < 3) {
        real->pMethods->xClose(real);
        return wrapped->xOpen(wrapped, name, file, flags, outFlags);
    }
    file->pMethods = methods;
    return SQLITE_OK;
}

static int shimOpen(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags, int *outFlags) {
    (void)vfs;
    if (flags & SQLITE_OPEN_WAL) return openWrapped(name, file, sizeof(WalFile), &walMethods, flags, outFlags);
    if (!(flags & SQLITE_OPEN_MAIN_DB) || name == NULL) {
        // Neither a WAL nor a database file with a name to open again: the wrapped VFS's file,
        // in place, with its own methods.
        return wrapped->xOpen(wrapped, name, file, flags, outFlags);
    }
    int rc = openWrapped(name, file, sizeof(DbFile), &dbMethods, flags, outFlags);
    if (rc == SQLITE_OK && file->pMethods == &dbMethods) {
        DbFile *f = (DbFile *)file;
        // Without a second descriptor the file is written as SQLite writes it, unsynced.
        f->fd = open(name, O_RDONLY | O_CLOEXEC);
    }
    return rc;
}

static int shimDelete(sqlite3_vfs *v, const char *n, int s) { (void)v; return wrapped->xDelete(wrapped, n, s); }
static int shimAccess(sqlite3_vfs *v, const char *n, int fl, int *o) { (void)v; return wrapped->xAccess(wrapped, n, fl, o); }
static int shimFullPathname(sqlite3_vfs *v, const char *n, int l, char *o) { (void)v; return wrapped->xFullPathname(wrapped, n, l, o); }
static void *shimDlOpen(sqlite3_vfs *v, const char *n) { (void)v; return wrapped->xDlOpen(wrapped, n); }
static void shimDlError(sqlite3_vfs *v, int l, char *o) { (void)v; wrapped->xDlError(wrapped, l, o); }
static void (*shimDlSym(sqlite3_vfs *v, void *h, const char *s))(void) { (void)v; return wrapped->xDlSym(wrapped, h, s); }
static void shimDlClose(sqlite3_vfs *v, void *h) { (void)v; wrapped->xDlClose(wrapped, h); }
static int shimRandomness(sqlite3_vfs *v, int l, char *o) { (void)v; return wrapped->xRandomness(wrapped, l, o); }
static int shimSleep(sqlite3_vfs *v, int us) { (void)v; return wrapped->xSleep(wrapped, us); }
static int shimCurrentTime(sqlite3_vfs *v, double *o) { (void)v; return wrapped->xCurrentTime(wrapped, o); }
static int shimGetLastError(sqlite3_vfs *v, int l, char *o) { (void)v; return wrapped->xGetLastError(wrapped, l, o); }
static int shimCurrentTimeInt64(sqlite3_vfs *v, sqlite3_int64 *o) { (void)v; return wrapped->xCurrentTimeInt64(wrapped, o); }

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int installResult = SQLITE_OK;

static void install(void) {
    wrapped = sqlite3_vfs_find(NULL);
    if (!wrapped) { installResult = SQLITE_ERROR; return; }
    walMethods = (sqlite3_io_methods){
        .iVersion = 3, .xClose = walClose, .xRead = walRead, .xWrite = walWrite, .xTruncate = walTruncate,
        .xSync = walSync, .xFileSize = walFileSize, .xLock = walLock, .xUnlock = walUnlock,
        .xCheckReservedLock = walCheckReservedLock, .xFileControl = walFileControl, .xSectorSize = walSectorSize,
        .xDeviceCharacteristics = walDeviceCharacteristics, .xShmMap = walShmMap, .xShmLock = walShmLock,
        .xShmBarrier = walShmBarrier, .xShmUnmap = walShmUnmap, .xFetch = walFetch, .xUnfetch = walUnfetch,
    };
    dbMethods = (sqlite3_io_methods){
        .iVersion = 3, .xClose = dbClose, .xRead = dbRead, .xWrite = dbWrite, .xTruncate = dbTruncate,
        .xSync = dbSync, .xFileSize = dbFileSize, .xLock = dbLock, .xUnlock = dbUnlock,
        .xCheckReservedLock = dbCheckReservedLock, .xFileControl = dbFileControl, .xSectorSize = dbSectorSize,
        .xDeviceCharacteristics = dbDeviceCharacteristics, .xShmMap = dbShmMap, .xShmLock = dbShmLock,
        .xShmBarrier = dbShmBarrier, .xShmUnmap = dbShmUnmap, .xFetch = dbFetch, .xUnfetch = dbUnfetch,
    };
    int wrapper = sizeof(WalFile) > sizeof(DbFile) ? (int)sizeof(WalFile) : (int)sizeof(DbFile);
    int size = wrapper + wrapped->szOsFile;
    shim = (sqlite3_vfs){
        .iVersion = wrapped->iVersion < 2 ? wrapped->iVersion : 2, .szOsFile = size, .mxPathname = wrapped->mxPathname,
        .zName = "herald-wal", .xOpen = shimOpen, .xDelete = shimDelete, .xAccess = shimAccess,
        .xFullPathname = shimFullPathname, .xDlOpen = shimDlOpen, .xDlError = shimDlError, .xDlSym = shimDlSym,
        .xDlClose = shimDlClose, .xRandomness = shimRandomness, .xSleep = shimSleep, .xCurrentTime = shimCurrentTime,
        .xGetLastError = shimGetLastError, .xCurrentTimeInt64 = shimCurrentTimeInt64,
    };
    installResult = sqlite3_vfs_register(&shim, 1);
}

int herald_wal_buffer_install(void) {
    pthread_once(&once, install);
    return installResult;
}

void herald_wal_buffer_counts(long long *appends, long long *writes) {
    *appends = atomic_load(&appendCount);
    *writes = atomic_load(&writeCount);
}

void herald_database_copy_begin(long long bytesPerSecond) {
    copying = 1;
    copyRate = bytesPerSecond > 0 ? bytesPerSecond : 0;
    copyWritten = 0;
    clock_gettime(CLOCK_MONOTONIC, &copyBegan);
}

void herald_database_copy_end(void) {
    copying = 0;
}

long long herald_database_copy_chunks(void) {
    return chunkCount;
}

long long herald_database_copy_writes(void) {
    return copyWriteCount;
}
