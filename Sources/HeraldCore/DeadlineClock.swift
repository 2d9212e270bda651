import Synchronization

/// Timeouts from one clock loop instead of a timer task each: a dispatcher's attempts
/// (``run(_:_:)``, which cancels the attempt's task) and the PostgreSQL journal's operations
/// (``schedule(at:expire:)``, which calls back).
///
/// On Linux a cancelled `Task.sleep` keeps its timer and task until the deadline would have
/// passed: with the default 30 s delivery timeout, 5,000 deliveries a second held about 40 MB
/// of finished attempts' timers, and 80,000 journal operations within their 5 s timeout held
/// 65 MB. (An event loop's scheduled task, scheduled and cancelled from another thread, wakes
/// that loop twice: 16 µs more CPU per operation.) Deadlines are checked every ``tick`` while
/// any is pending, so one fires up to a tick late. Once none has been pending for `idleAfter`,
/// the loop waits for the next one instead of ticking. Not at once: at a few hundred
/// requests a second attempts come and go between two ticks, and waking the loop for each
/// one cost a thread wake-up per request.
///
/// Before, each attempt raced its plugin call against a waiter on this clock in a task
/// group of two children: 30,000 instructions per delivery, 4.4 % of a request's.
package final class DeadlineClock: Sendable {
    static let tick: Duration = .milliseconds(50)
    /// Ticks without a deadline before the loop waits instead.
    private let quietTicks: Int

    package init(idleAfter: Duration = .seconds(1)) {
        quietTicks = max(0, Int(idleAfter / Self.tick))
    }

    private struct Entry {
        var deadline: ContinuousClock.Instant
        var action: Action
        /// The deadline passed and the task was cancelled.
        var fired = false
    }

    private enum Action {
        /// Cancel the task running an attempt. Only done under the lock, and only while the
        /// entry exists: the task removes it (under the lock) before its attempt returns, so
        /// the task is alive whenever it is cancelled from here.
        case cancel(TaskHandle)
        /// Call back, outside the lock, once; the entry goes when it fires.
        case call(@Sendable () -> Void)
    }

    /// The running task, kept past `withUnsafeCurrentTask` under the rule ``Action/cancel(_:)`` states.
    private struct TaskHandle: @unchecked Sendable {
        let task: UnsafeCurrentTask
    }

    private struct State {
        var nextTicket: UInt64 = 0
        /// Pending deadlines: attempts running (each removes its own entry when it ends) and
        /// callbacks not yet due nor cancelled.
        var entries: [UInt64: Entry] = [:]
        /// The clock loop, waiting for a deadline (none is pending).
        var idle: UnsafeContinuation<Void, Never>?
        /// The clock loop runs: without it no callback would be called.
        var running = false
        /// The clock loop was cancelled: it does not wait any more.
        var stopped = false
        /// A deadline was added since the last tick.
        var started = false
    }

    private let state = Mutex(State())

    /// Runs `operation` in the calling task and cancels that task if `operation` is still
    /// running once `timeout` has passed. Returns its result, and whether the deadline
    /// cancelled it. Call it in a task that does nothing after `operation` that a cancellation
    /// would cut short (the dispatcher runs each delivery in a task of its own).
    func run<T>(_ timeout: Duration, _ operation: () async -> T) async -> (result: T, timedOut: Bool) {
        let deadline = ContinuousClock.now + timeout
        let ticket: UInt64? = withUnsafeCurrentTask { task in
            guard let task else { return nil }
            return add(Entry(deadline: deadline, action: .cancel(TaskHandle(task: task))), onlyWhileRunning: false)
        }
        let result = await operation()
        guard let ticket else { return (result, false) }
        let fired = state.withLock { $0.entries.removeValue(forKey: ticket)?.fired ?? false }
        return (result, fired)
    }

    /// Calls `expire` once `deadline` has passed, unless ``cancel(_:)`` is called first with the
    /// ticket returned. Nil when the clock loop is not running: the caller then needs a timer of
    /// its own. What is still pending when the loop stops expires then.
    package func schedule(at deadline: ContinuousClock.Instant, expire: @escaping @Sendable () -> Void) -> UInt64? {
        add(Entry(deadline: deadline, action: .call(expire)), onlyWhileRunning: true)
    }

    /// Forgets the deadline `ticket` (its operation ended first).
    package func cancel(_ ticket: UInt64) {
        _ = state.withLock { $0.entries.removeValue(forKey: ticket) }
    }

    private func add(_ entry: Entry, onlyWhileRunning: Bool) -> UInt64? {
        let (ticket, idle) = state.withLock { s -> (UInt64?, UnsafeContinuation<Void, Never>?) in
            guard s.running || !onlyWhileRunning else { return (nil, nil) }
            defer { s.nextTicket += 1 }
            s.entries[s.nextTicket] = entry
            s.started = true
            defer { s.idle = nil }
            return (s.nextTicket, s.idle)
        }
        idle?.resume()
        return ticket
    }

    /// Deadlines pending (for tests).
    var outstanding: Int { state.withLock { $0.entries.count } }

    /// Cancels every attempt and calls every callback whose deadline is at or before `now`.
    /// Returns whether a deadline was pending since the last call (one is, or one was added).
    @discardableResult
    func expire(now: ContinuousClock.Instant = .now) -> Bool {
        let (pending, due) = state.withLock { s -> (Bool, [@Sendable () -> Void]) in
            var due: [@Sendable () -> Void] = []
            for (ticket, entry) in s.entries where !entry.fired && entry.deadline <= now {
                switch entry.action {
                case .cancel(let handle):
                    s.entries[ticket]?.fired = true
                    handle.task.cancel()
                case .call(let expire):
                    s.entries[ticket] = nil
                    due.append(expire)
                }
            }
            defer { s.started = false }
            return (s.started || !s.entries.isEmpty, due)
        }
        for expire in due { expire() }
        return pending
    }

    /// Whether the clock loop is waiting for a deadline (for tests).
    var isIdle: Bool { state.withLock { $0.idle != nil } }

    /// The clock loop; runs until cancelled, then cancels every attempt still running and
    /// calls every callback still pending.
    package func run() async {
        state.withLock { $0.running = true }
        var quiet = 0
        while !Task.isCancelled {
            if quiet >= quietTicks {
                await waitForADeadline()
                quiet = 0
            }
            try? await Task.sleep(for: Self.tick)
            quiet = expire() ? 0 : quiet + 1
        }
        state.withLock { $0.running = false }
        expire(now: .now + .seconds(365 * 86400))
    }

    /// Returns at once while a deadline is pending; otherwise once one is added or the loop
    /// is cancelled.
    private func waitForADeadline() async {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let wait = state.withLock { s in
                    guard s.entries.isEmpty, !s.stopped else { return false }
                    s.idle = continuation
                    return true
                }
                if !wait { continuation.resume() }
            }
        } onCancel: {
            let idle = state.withLock { s in
                s.stopped = true
                defer { s.idle = nil }
                return s.idle
            }
            idle?.resume()
        }
    }
}
