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
final class SQLiteWakeUps: Sendable {
    static let fileName = "wake"

    private struct State {
        var waiters: [UInt64: UnsafeContinuation<Void, Never>] = [:]
        var next: UInt64 = 0
        /// The watch, made on the first wait; nil before, or when inotify is not available.
        var source: (any DispatchSourceRead)?
        var started = false
    }

    private let directory: String
    private let state = Mutex(State())

    init(directory: String) {
        self.directory = directory
    }

    deinit {
        state.withLock { $0.source }?.cancel()
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

    private func wakeAll() {
        let woken = state.withLock { s in
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for waiter in woken { waiter.resume() }
    }

    private func startWatching() {
        #if canImport(Glibc)
        state.withLock { s in
            guard !s.started else { return }
            s.started = true
            let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
            guard fd >= 0 else { return }
            guard inotify_add_watch(fd, directory, UInt32(IN_CLOSE_WRITE | IN_MOVED_TO)) >= 0 else {
                close(fd)
                return
            }
            let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: .global())
            source.setEventHandler { [weak self] in
                if Self.drain(fd) { self?.wakeAll() }
            }
            source.setCancelHandler { close(fd) }
            source.resume()
            s.source = source
        }
        #endif
    }

    #if canImport(Glibc)
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
