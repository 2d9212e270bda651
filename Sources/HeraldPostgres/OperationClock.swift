import Synchronization

/// One clock for the timeouts of all of a journal's operations
/// (``PostgresJournal/first(of:within:)``), run by ``PostgresJournal/run()``.
///
/// A timer per operation cost memory or CPU. A cancelled `Task.sleep` keeps its timer and its
/// task (about 820 bytes) until its deadline: 80,000 operations within the 5 s default held
/// 65 MB. An event loop's scheduled task, scheduled and cancelled from another thread, wakes
/// that loop twice: 16 µs more CPU per operation. This clock looks at the pending deadlines
/// every ``tick`` while an operation is pending (so a timeout fires up to a tick late), and
/// waits on a continuation while none is.
final class OperationClock: Sendable {
    /// How often the pending deadlines are looked at.
    let tick: Duration

    private struct Pending {
        let deadline: ContinuousClock.Instant
        let expire: @Sendable () -> Void
    }

    private struct State {
        var pending: [UInt64: Pending] = [:]
        var nextID: UInt64 = 0
        /// Whether ``run()`` is running: without it nothing would expire.
        var running = false
        /// ``run()`` waiting for the first deadline.
        var idle: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    init(tick: Duration = .milliseconds(50)) {
        self.tick = tick
    }

    /// Calls `expire` once `deadline` has passed, unless ``cancel(_:)`` is called first with the
    /// id returned. Nil when the clock is not running: the caller then needs a timer of its own.
    func schedule(at deadline: ContinuousClock.Instant, expire: @escaping @Sendable () -> Void) -> UInt64? {
        let (id, idle) = state.withLock { s -> (UInt64?, CheckedContinuation<Void, Never>?) in
            guard s.running else { return (nil, nil) }
            let id = s.nextID
            s.nextID &+= 1
            s.pending[id] = Pending(deadline: deadline, expire: expire)
            defer { s.idle = nil }
            return (id, s.idle)
        }
        idle?.resume()
        return id
    }

    /// Forgets the deadline `id` (its operation ended first).
    func cancel(_ id: UInt64) {
        _ = state.withLock { $0.pending.removeValue(forKey: id) }
    }

    /// Expires deadlines until the calling task is cancelled.
    func run() async {
        state.withLock { $0.running = true }
        defer {
            // Whatever is still pending expires now: nothing will look at it any more.
            let left = state.withLock { s -> [Pending] in
                s.running = false
                defer { s.pending = [:] }
                return Array(s.pending.values)
            }
            for pending in left { pending.expire() }
        }
        while !Task.isCancelled {
            let empty = state.withLock { $0.pending.isEmpty }
            if empty {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { continuation in
                        let waiting = state.withLock { s -> Bool in
                            guard s.pending.isEmpty, !Task.isCancelled else { return false }
                            s.idle = continuation
                            return true
                        }
                        if !waiting { continuation.resume() }
                    }
                } onCancel: {
                    state.withLock { s in defer { s.idle = nil }; return s.idle }?.resume()
                }
                continue
            }
            // Not cancelled in the normal course, so this sleep's timer is not left behind.
            try? await Task.sleep(for: tick)
            let now = ContinuousClock.now
            let due = state.withLock { s -> [Pending] in
                let ids = s.pending.compactMap { $0.value.deadline <= now ? $0.key : nil }
                return ids.compactMap { s.pending.removeValue(forKey: $0) }
            }
            for pending in due { pending.expire() }
        }
    }
}
