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
#include "herald_wal.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <pthread.h>

typedef struct {
    sqlite3_file base;
    sqlite3_file *real;       // the wrapped VFS's file, in the same allocation after this struct
    unsigned char *buffer;
    int capacity;
    int used;
    sqlite3_int64 start;      // file offset of buffer[0]
    int commitPending;        // the last appended header was a commit frame's
} WalFile;

static sqlite3_vfs shim;
static sqlite3_vfs *wrapped;
static sqlite3_io_methods walMethods;
static atomic_llong appendCount, writeCount;

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

static int shimOpen(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags, int *outFlags) {
    (void)vfs;
    if (!(flags & SQLITE_OPEN_WAL)) {
        // Not a WAL: the wrapped VFS's file, in place, with its own methods.
        return wrapped->xOpen(wrapped, name, file, flags, outFlags);
    }
    WalFile *f = (WalFile *)file;
    memset(f, 0, sizeof(WalFile));
    f->real = (sqlite3_file *)(f + 1);
    int rc = wrapped->xOpen(wrapped, name, f->real, flags, outFlags);
    if (rc != SQLITE_OK || f->real->pMethods == NULL) {
        f->base.pMethods = NULL;  // SQLite does not close a file whose open failed
        return rc;
    }
    if (f->real->pMethods->iVersion < 3) {
        // An older kind of file (no shared memory or mmap methods to pass on): used as it is.
        f->real->pMethods->xClose(f->real);
        return wrapped->xOpen(wrapped, name, file, flags, outFlags);
    }
    f->base.pMethods = &walMethods;
    return SQLITE_OK;
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
    int size = wrapped->szOsFile;
    if (size < (int)sizeof(WalFile) + wrapped->szOsFile) size = (int)sizeof(WalFile) + wrapped->szOsFile;
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
