import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Wakes the running server's dispatchers when another process stored work in the same
/// SQLite journal: `herald deliveries retry` touches `wake` beside `journal.sqlite` once its
/// change is committed, and the server watches the directory with inotify(7). SQLite itself
/// tells no other process of a commit. Without inotify (another system, or a watch the kernel
/// refuses) nothing wakes early, and the sweep's own safety net finds the work within a lease
/// time.
///
/// The watch is a thread of its own blocked in poll(2), not a dispatch read source: on Linux,
/// libdispatch's bookkeeping of descriptor sources can free a registration epoll still reports
/// when sources on other descriptors are made and cancelled at the same moment
/// (swift-corelibs-libdispatch issue 949), and its manager thread then crashes the process.
/// The test run hit exactly that once, with several servers and child-process pipes starting
/// and stopping together.
final class SQLiteWakeUps: Sendable {
    static let fileName = "wake"

    private struct State {
        var waiters: [UInt64: UnsafeContinuation<Void, Never>] = [:]
        var next: UInt64 = 0
        /// One end of the socket pair the watcher also polls; closing it stops the watcher.
        /// Nil before the first wait, or when inotify is not available.
        var stop: Int32?
        var started = false
    }

    private let directory: String
    private let state = Mutex(State())

    init(directory: String) {
        self.directory = directory
    }

    deinit {
        if let stop = state.withLock({ $0.stop }) { close(stop) }
    }

    /// Says to a server using the journal in `directory` that work was stored: rewrites the
    /// wake file. Best effort: without it the work is found by the sweep's safety net.
    static func ring(directory: String) {
        let path = URL(fileURLWithPath: directory).appendingPathComponent(fileName).path
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        if fd >= 0 { close(fd) }
    }

    /// Returns when another process rings, or when the task is cancelled.
    func wait() async {
        startWatching()
        let id = state.withLock { s in
            defer { s.next += 1 }
            return s.next
        }
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if Task.isCancelled { return true }
                    s.waiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }

    /// From the watcher thread: the wake file was written.
    private func wake() {
        let woken = state.withLock { s in
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for waiter in woken { waiter.resume() }
    }

    /// Makes the inotify watch and its thread, once. The thread owns the inotify descriptor
    /// and the other end of the socket pair and closes both when it ends: when this object is released
    /// (its end of the pair closes) or when polling fails.
    private func startWatching() {
        #if canImport(Glibc)
        state.withLock { s in
            guard !s.started else { return }
            s.started = true
            let watch = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
            guard watch >= 0 else { return }
            var ends: [Int32] = [-1, -1]
            guard inotify_add_watch(watch, directory, UInt32(IN_CLOSE_WRITE | IN_MOVED_TO)) >= 0,
                  socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
                close(watch)
                return
            }
            s.stop = ends[1]
            let stopped = ends[0]
            // A weak reference: the thread must not keep the journal's wake-ups alive, or
            // its end of the pair would never close.
            Thread.detachNewThread { [weak self] in
                Self.watch(watch, until: stopped) { self?.wake() }
            }
        }
        #endif
    }

    #if canImport(Glibc)
    /// Polls the inotify descriptor until the other end of `stopped`'s pair is closed, calling `rung`
    /// whenever the wake file was written; then closes both descriptors.
    private static func watch(_ watch: Int32, until stopped: Int32, rung: () -> Void) {
        defer {
            close(watch)
            close(stopped)
        }
        var fds = [pollfd(fd: watch, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: stopped, events: Int16(POLLIN), revents: 0)]
        while true {
            fds[0].revents = 0
            fds[1].revents = 0
            let ready = poll(&fds, 2, -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return
            }
            // The other end closed (POLLIN at end of file, or POLLHUP): stop.
            if fds[1].revents != 0 { return }
            if fds[0].revents & Int16(POLLIN) != 0 {
                if drain(watch) { rung() }
            } else if fds[0].revents != 0 {
                return
            }
        }
    }

    /// Reads the pending inotify events; whether one is about the wake file.
    private static func drain(_ fd: Int32) -> Bool {
        var rung = false
        let size = 4096
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let count = read(fd, buffer, size)
            guard count > 0 else { return rung }
            var offset = 0
            let header = MemoryLayout<inotify_event>.size
            while offset + header <= count {
                let event = buffer.load(fromByteOffset: offset, as: inotify_event.self)
                let nameLength = Int(event.len)
                guard offset + header + nameLength <= count else { break }
                if nameLength > 0 {
                    let name = buffer.advanced(by: offset + header).assumingMemoryBound(to: CChar.self)
                    if String(cString: name) == fileName { rung = true }
                }
                offset += header + nameLength
            }
        }
    }
    #endif
}
