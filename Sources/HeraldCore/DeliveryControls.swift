import Foundation
import Logging
import Synchronization

// What a Dispatcher holds per delivery besides the journal: its log metadata, its slot among
// the notifier's `concurrency`, and the outcomes it handed to the journal without waiting;
// and, for its sweep, the alarm that says when to look in the journal again. Its attempts'
// deadlines are kept by `DeadlineClock`.

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

    /// Whether the caller, holding a slot, may keep it for another delivery: false when a
    /// lowered limit wants it back (the caller then releases it). The only waiter it can pass
    /// is the dispatcher's loop, which would take the same next job with the slot.
    func keep() -> Bool {
        state.withLock { $0.free >= 0 }
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

/// Writes handed to the journal whose callbacks have not run yet, for a dispatcher to wait for
/// before it returns (a continuation, woken by the last one).
final class OutstandingWrites: Sendable {
    private struct State {
        var count = 0
        var waiter: UnsafeContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    func begin() { state.withLock { $0.count += 1 } }

    func end() {
        let waiter = state.withLock { s -> UnsafeContinuation<Void, Never>? in
            s.count -= 1
            guard s.count == 0 else { return nil }
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }

    /// Returns once every write begun has ended. Not cancellable: each ends by itself once the
    /// journal's writer has committed or failed it.
    func drained() async {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                guard s.count > 0 else { return true }
                s.waiter = continuation
                return false
            }
            if now { continuation.resume() }
        }
    }
}

/// When a notifier's sweep looks in the journal again: at the earliest time it knows work
/// comes due (the journal's next due time or lease expiry, a retry or a reminder this instance
/// has just stored), or at once when work due now was stored for it (a request whose delivery
/// the queue had no room for), instead of on a timer. Each sweep's lease answers when to look
/// next; what is stored after the lease rings or schedules the alarm.
final class SweepAlarm: Sendable {
    private struct State {
        /// Work due now was stored since the sweep last looked: the next wait returns at once.
        var rung = false
        /// The earliest due time scheduled since the sweep last looked.
        var earliest: Date?
        var waiter: UnsafeContinuation<Void, Never>?
        /// When the waiter's timer fires.
        var deadline = Date.distantFuture
        var timer: (any DispatchSourceTimer)?
    }

    private let state = Mutex(State())

    /// Work due now was stored: the sweep looks at once.
    func ring() {
        let (waiter, timer) = state.withLock { s -> (UnsafeContinuation<Void, Never>?, (any DispatchSourceTimer)?) in
            guard let waiter = s.waiter else {
                s.rung = true
                return (nil, nil)
            }
            defer { s.waiter = nil; s.timer = nil }
            return (waiter, s.timer)
        }
        timer?.cancel()
        waiter?.resume()
    }

    /// Work was stored that comes due at `at`: the sweep looks then at the latest.
    func schedule(_ at: Date) {
        guard at > Date() else { return ring() }
        state.withLock { s in
            s.earliest = min(s.earliest ?? at, at)
            if s.waiter != nil, at < s.deadline { arm(&s, at) }
        }
    }

    /// The sweep is about to lease: what was stored before now is in the journal and the lease's
    /// next due time covers it.
    func looking() {
        state.withLock { s in
            s.rung = false
            s.earliest = nil
        }
    }

    /// Returns when the alarm rings, at `deadline` or the earliest time scheduled if sooner, or
    /// when the task is cancelled. A continuation and a dispatch timer, both released as the
    /// wait ends, not a `Task.sleep`, which on Linux keeps its timer and task until its
    /// deadline even when cancelled long before.
    func wait(until deadline: Date) async {
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    let at = min(deadline, s.earliest ?? deadline)
                    if s.rung || Task.isCancelled || at <= Date() {
                        s.rung = false
                        return true
                    }
                    s.waiter = continuation
                    arm(&s, at)
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            ring()
            state.withLock { $0.rung = false }
        }
    }

    /// Sets (or moves) the waiter's timer to `at`; no timer for a time that never comes.
    private func arm(_ s: inout State, _ at: Date) {
        s.deadline = at
        guard at < .distantFuture else { return }
        // At most a day ahead: a longer wait is cut short harmlessly, and the nanoseconds never overflow.
        let nanoseconds = Int(min(max(0, at.timeIntervalSinceNow), 86_400) * 1e9)
        let timer = s.timer ?? {
            let made = DispatchSource.makeTimerSource(queue: .global())
            made.setEventHandler { [weak self] in self?.ring() }
            made.resume()
            return made
        }()
        timer.schedule(deadline: .now() + .nanoseconds(nanoseconds))
        s.timer = timer
    }
}
