import Foundation
import Logging
import Synchronization

// What a Dispatcher holds per delivery besides the journal: its log metadata, its slot among
// the notifier's `concurrency`, and its attempt's deadline.

/// The dispatcher's logger for one delivery, with its `event`, `delivery` and `attempt`
/// metadata. The metadata is only attached when a line is actually logged: setting three
/// keys on a `Logger` for every delivery cost 4.5 % of a request's instructions, for lines
/// that are rarely written.
struct DeliveryLogger {
    let base: Logger
    /// What the metadata says; the job itself (its event and body) is not kept here.
    let eventID: String
    let delivery: Int64
    let attempt: Int

    init(base: Logger, job: DeliveryJob) {
        self.base = base
        eventID = job.eventID
        delivery = job.id
        attempt = job.attempt
    }

    /// The logger with the delivery's metadata.
    var logger: Logger {
        var log = base
        log[metadataKey: "event"] = .string(eventID)
        log[metadataKey: "delivery"] = .stringConvertible(delivery)
        log[metadataKey: "attempt"] = .stringConvertible(attempt)
        return log
    }

    func log(_ level: Logger.Level, _ message: @autoclosure () -> Logger.Message) {
        guard base.logLevel <= level else { return }
        logger.log(level: level, message())
    }

    func debug(_ message: @autoclosure () -> Logger.Message) { log(.debug, message()) }
    func info(_ message: @autoclosure () -> Logger.Message) { log(.info, message()) }
    func notice(_ message: @autoclosure () -> Logger.Message) { log(.notice, message()) }
    func warning(_ message: @autoclosure () -> Logger.Message) { log(.warning, message()) }
    func error(_ message: @autoclosure () -> Logger.Message) { log(.error, message()) }
}

/// At most `limit` deliveries of one notifier in their plugin at once; waiters are served
/// in arrival order. After ``close()`` (shutdown) every waiter, and every later caller, is
/// told no.
final class DeliverySlots: Sendable {
    private struct State {
        var limit: Int
        /// Negative after the limit was lowered while slots were taken.
        var free: Int
        var closed = false
        var nextTicket: UInt64 = 0
        var waiters: [(ticket: UInt64, continuation: UnsafeContinuation<Bool, Never>)] = []
        /// Tickets handed out whose waiter is not queued yet.
        var registering: Set<UInt64> = []
        /// Of those, the ones whose task was cancelled meanwhile.
        var cancelled: Set<UInt64> = []
    }

    private let state: Mutex<State>

    init(_ limit: Int) { state = Mutex(State(limit: max(1, limit), free: max(1, limit))) }

    /// Changes the limit (a reload changed `concurrency`): a higher one lets waiters in at
    /// once; a lower one takes effect as running deliveries finish.
    func resize(to limit: Int) {
        let woken = state.withLock { s -> [UnsafeContinuation<Bool, Never>] in
            let limit = max(1, limit)
            guard limit != s.limit else { return [] }
            s.free += limit - s.limit
            s.limit = limit
            let count = min(max(0, s.free), s.waiters.count)
            s.free -= count
            defer { s.waiters.removeFirst(count) }
            return s.waiters.prefix(count).map(\.continuation)
        }
        for w in woken { w.resume(returning: true) }
    }

    /// Waits for a slot; false if closed or the task is cancelled. Call ``release()`` after
    /// a true.
    func acquire() async -> Bool {
        enum Entry: Equatable { case granted, refused, wait(UInt64) }
        let entry = state.withLock { s -> Entry in
            if s.closed { return .refused }
            if s.free > 0, s.waiters.isEmpty { s.free -= 1; return .granted }
            defer { s.nextTicket += 1 }
            s.registering.insert(s.nextTicket)
            return .wait(s.nextTicket)
        }
        guard case .wait(let ticket) = entry else { return entry == .granted }
        return await withTaskCancellationHandler {
            // Each waiter leaves `waiters` under the lock exactly once, by whoever resumes it.
            await withUnsafeContinuation { continuation in
                // Decided again under the lock: a slot may have been freed since the ticket.
                let answer = state.withLock { s -> Bool? in
                    s.registering.remove(ticket)
                    if s.cancelled.remove(ticket) != nil || s.closed { return false }
                    if s.free > 0, s.waiters.isEmpty { s.free -= 1; return true }
                    s.waiters.append((ticket, continuation))
                    return nil
                }
                if let answer { continuation.resume(returning: answer) }
            }
        } onCancel: {
            let waiter = state.withLock { s -> UnsafeContinuation<Bool, Never>? in
                if let i = s.waiters.firstIndex(where: { $0.ticket == ticket }) { return s.waiters.remove(at: i).continuation }
                // Not queued yet: tell the registration. Already answered: nothing to do.
                if s.registering.contains(ticket) { s.cancelled.insert(ticket) }
                return nil
            }
            waiter?.resume(returning: false)
        }
    }

    /// Gives a slot back, to the longest waiter if any.
    func release() {
        let next = state.withLock { s -> UnsafeContinuation<Bool, Never>? in
            if s.free < 0 || s.waiters.isEmpty { s.free += 1; return nil }
            return s.waiters.removeFirst().continuation
        }
        next?.resume(returning: true)
    }

    /// Tickets the state still remembers besides queued waiters (for tests: none once every
    /// caller has its answer).
    var leftovers: Int { state.withLock { $0.registering.count + $0.cancelled.count } }

    /// Refuses every waiter and every later ``acquire()``.
    func close() {
        let waiters = state.withLock { s in
            s.closed = true
            defer { s.waiters.removeAll() }
            return s.waiters.map(\.continuation)
        }
        for w in waiters { w.resume(returning: false) }
    }
}

/// Per-attempt timeouts, from one clock loop per dispatcher instead of a timer task per
/// attempt: on Linux a cancelled `Task.sleep` keeps its timer and task until the deadline
/// would have passed, so with the default 30 s timeout, 5,000 deliveries a second held
/// about 40 MB of finished attempts' timers. Deadlines are checked every ``tick`` while
/// attempts run, and one that passes cancels the task running its attempt. Once none has
/// run for `idleAfter`, the loop waits for the next one to start instead of ticking. Not at
/// once: at a few hundred requests a second attempts come and go between two ticks, and
/// waking the loop for each one cost a thread wake-up per request.
///
/// Before, each attempt raced its plugin call against a waiter on this clock in a task
/// group of two children: 30,000 instructions per delivery, 4.4 % of a request's.
final class AttemptDeadlines: Sendable {
    static let tick: Duration = .milliseconds(50)
    /// Ticks without an attempt before the loop waits instead.
    private let quietTicks: Int

    init(idleAfter: Duration = .seconds(1)) {
        quietTicks = max(0, Int(idleAfter / Self.tick))
    }

    private struct Entry {
        var deadline: ContinuousClock.Instant
        /// The task running the attempt. Only used under the lock, and only while the entry
        /// exists: the task removes it (under the lock) before its attempt returns, so the
        /// task is alive whenever it is cancelled from here.
        var task: TaskHandle
        /// The deadline passed and the task was cancelled.
        var fired = false
    }

    /// The running task, kept past `withUnsafeCurrentTask` under the rule ``Entry`` states.
    private struct TaskHandle: @unchecked Sendable {
        let task: UnsafeCurrentTask
    }

    private struct State {
        var nextTicket: UInt64 = 0
        /// Attempts running; each removes its own entry when it ends.
        var entries: [UInt64: Entry] = [:]
        /// The clock loop, waiting for an attempt to start (none runs).
        var idle: UnsafeContinuation<Void, Never>?
        /// The clock loop was cancelled: it does not wait any more.
        var stopped = false
        /// An attempt started since the last tick.
        var started = false
    }

    private let state = Mutex(State())

    /// Runs `operation` in the calling task and cancels that task if `operation` is still
    /// running once `timeout` has passed. Returns its result, and whether the deadline
    /// cancelled it. Call it in a task of its own (an `async let`): the cancellation stays
    /// with that task.
    func run<T>(_ timeout: Duration, _ operation: () async -> T) async -> (result: T, timedOut: Bool) {
        let deadline = ContinuousClock.now + timeout
        let ticket: UInt64? = withUnsafeCurrentTask { task in
            guard let task else { return nil }
            let handle = TaskHandle(task: task)
            let (ticket, idle) = state.withLock { s in
                defer { s.nextTicket += 1 }
                s.entries[s.nextTicket] = Entry(deadline: deadline, task: handle)
                s.started = true
                defer { s.idle = nil }
                return (s.nextTicket, s.idle)
            }
            idle?.resume()
            return ticket
        }
        let result = await operation()
        guard let ticket else { return (result, false) }
        let fired = state.withLock { $0.entries.removeValue(forKey: ticket)?.fired ?? false }
        return (result, fired)
    }

    /// Attempts still running (for tests).
    var outstanding: Int { state.withLock { $0.entries.count } }

    /// Cancels every attempt whose deadline is at or before `now`. Under the lock: an entry
    /// present means its task has not finished.
    /// Returns whether an attempt ran since the last call (one is running, or one started).
    @discardableResult
    func expire(now: ContinuousClock.Instant = .now) -> Bool {
        state.withLock { s in
            for (ticket, entry) in s.entries where !entry.fired && entry.deadline <= now {
                s.entries[ticket]?.fired = true
                entry.task.task.cancel()
            }
            defer { s.started = false }
            return s.started || !s.entries.isEmpty
        }
    }

    /// Whether the clock loop is waiting for an attempt to start (for tests).
    var isIdle: Bool { state.withLock { $0.idle != nil } }

    /// The clock loop; runs until cancelled, then cancels every attempt still running.
    func run() async {
        var quiet = 0
        while !Task.isCancelled {
            if quiet >= quietTicks {
                await waitForAnAttempt()
                quiet = 0
            }
            try? await Task.sleep(for: Self.tick)
            quiet = expire() ? 0 : quiet + 1
        }
        expire(now: .now + .seconds(365 * 86400))
    }

    /// Returns at once while attempts run; otherwise once one starts or the loop is cancelled.
    private func waitForAnAttempt() async {
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
