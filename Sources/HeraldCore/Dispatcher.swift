import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Runs one notifier's deliveries: from its queue, through its plugin, into the journal.
///
/// Up to `policy.concurrency` deliveries run at once, each cut off after `policy.timeout`.
/// A job is claimed in the journal as soon as it leaves the queue, and its outcome is
/// written after its slot is free again, so claims and outcomes of many deliveries share
/// a transaction instead of costing one commit each.
/// A retryable failure is written back to the journal as pending with its next attempt
/// time (full-jitter backoff, or the target's `Retry-After`); a permanent one, or one past
/// `giveUpAfter`, becomes dead. A sweep picks due retries and anything the queue could not
/// hold out of the journal, so the queue is a fast path, never the only copy.
///
/// On graceful shutdown it stops taking work, gives running deliveries `shutdownGrace` to
/// finish, then cancels them; whatever did not finish stays pending for the next start.
///
/// The notifier's plugin, policy, routes and templates come from the live configuration,
/// leased once per delivery: a reload applies to the next delivery, and a delivery that is
/// running finishes with the configuration (and plugin instance) it started with.
public final class Dispatcher: Service {
    /// The notifier's name, which stays the same across reloads.
    public let name: String
    let live: LiveConfigCell
    let queue: DeliveryQueue
    let journal: any Journal
    let logger: Logger
    let shutdownGrace: Duration
    let sweepInterval: Duration
    let onFinal: @Sendable () -> Void
    private let stopping = Atomic<Bool>(false)
    /// Plugin calls in progress.
    private let running = Atomic<Int>(0)
    private let slots: DeliverySlots
    private let deadlines = AttemptDeadlines()

    public init(name: String, live: LiveConfigCell, queue: DeliveryQueue, journal: any Journal, logger: Logger,
                shutdownGrace: Duration = .seconds(10), sweepInterval: Duration = .milliseconds(500),
                onFinal: @escaping @Sendable () -> Void = {}) {
        self.name = name
        self.live = live
        self.queue = queue
        self.journal = journal
        var logger = logger
        logger[metadataKey: "notifier"] = .string(name)
        self.logger = logger
        self.shutdownGrace = shutdownGrace
        self.sweepInterval = sweepInterval
        self.onFinal = onFinal
        slots = DeliverySlots(live.snapshot.notifier(named: name).policy.concurrency)
    }

    /// The notifier as the live configuration has it now.
    public var notifier: HeraldConfig.Notifier { live.snapshot.notifier(named: name) }

    /// Deliveries queued or running.
    public var queueDepth: Int { queue.depth }

    public func run() async throws {
        let consumer = Task { await self.consume() }
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await self.sweep() }
                    group.addTask { await self.deadlines.run() }
                    await consumer.value
                    group.cancelAll()
                }
            } onCancel: {
                consumer.cancel()
            }
        } onGracefulShutdown: {
            // Stop taking work now; running deliveries get `shutdownGrace`, then are cancelled
            // (and written back as pending, or left in flight for recovery on the next start).
            self.stopping.store(true, ordering: .relaxed)
            self.queue.finish()
            self.slots.close()
            let grace = self.shutdownGrace
            Task {
                try? await Task.sleep(for: grace)
                let running = self.running.load(ordering: .relaxed)
                if running > 0 {
                    self.logger.warning("shutdown deadline reached; \(running) deliveries stay pending for the next start")
                    consumer.cancel()
                }
            }
        }
    }

    /// Takes jobs off the queue, each in a task of its own that claims it and waits for a
    /// slot. At most ``claimAhead`` are taken at once; the rest wait in the queue, or in the
    /// journal when the queue is full, so memory stays bounded under any backlog.
    private func consume() async {
        await withTaskGroup(of: Void.self) { group in
            var taken = 0
            for await job in queue.jobs {
                if stopping.load(ordering: .relaxed) { queue.complete(job.id); continue }
                // Read per job: a reload may raise `concurrency` past what 64 would feed.
                let claimAhead = max(64, 4 * notifier.policy.concurrency)
                while taken >= claimAhead {
                    await group.next()
                    taken -= 1
                }
                group.addTask { await self.process(job) }
                taken += 1
            }
            await group.waitForAll()
        }
    }

    /// Feeds due deliveries from the journal: retries, recovered work, queue overflow.
    ///
    /// While the journal has more due than the queue could take (a backlog after a burst),
    /// it comes back as soon as the queue has drained to half, instead of every
    /// `sweepInterval`, so a backlog drains at delivery speed.
    private func sweep() async {
        while !Task.isCancelled, !stopping.load(ordering: .relaxed) {
            let room = max(0, queue.capacity - queue.depth)
            var backlog = false
            if room > 0 {
                do {
                    let due = try await journal.dueWithEvents(notifier: notifier.name, now: Date(), limit: room)
                    for item in due {
                        _ = queue.offer(DeliveryJob(id: item.record.id, eventID: item.record.eventID, event: nil,
                                                    attempt: item.record.attempts + 1, stored: item.event))
                    }
                    backlog = due.count == room
                } catch {
                    // Stopping (the server could not listen, or a shutdown): not a journal fault.
                    if Task.isCancelled || stopping.load(ordering: .relaxed) { return }
                    logger.error("cannot read due deliveries from the journal: \(error)")
                }
            }
            if backlog {
                let deadline = ContinuousClock.now + sweepInterval
                while queue.depth > queue.capacity / 2, ContinuousClock.now < deadline, !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(10))
                }
            } else {
                try? await Task.sleep(for: sweepInterval)
            }
        }
    }

    /// One attempt at one delivery, and its outcome written to the journal.
    func process(_ job: DeliveryJob) async {
        defer { queue.complete(job.id) }
        var log = logger
        log[metadataKey: "event"] = .string(job.eventID)
        log[metadataKey: "delivery"] = .stringConvertible(job.id)
        log[metadataKey: "attempt"] = .stringConvertible(job.attempt)
        // Until the attempt starts, the current configuration is read without a lease.
        let current = live.snapshot
        guard let event = await loadEvent(job, log, endpoints: current.endpointsByPath) else { return }
        do {
            // A stale copy (the sweep read it as pending just before another attempt finished)
            // finds the delivery no longer pending and stops here: no second delivery.
            guard try await journal.claim(job.id) else { return }
        } catch {
            log.error("cannot record the attempt in the journal, leaving it for the sweep: \(error)")
            return
        }
        slots.resize(to: current.notifier(named: name).policy.concurrency)
        guard await slots.acquire() else {
            // Shutting down before this attempt started: leave the delivery as it was.
            do { try await journal.release(job.id) } catch {
                log.warning("cannot release the delivery; it will be retried on the next start: \(error)")
            }
            return
        }
        // One configuration for the attempt, taken once it can start; its plugin stays up
        // until the lease ends.
        let live = self.live.lease()
        let notifier = live.notifier(named: name)
        let target = live.router.target(for: event, notifier: name)
        var notification = live.renderer.render(event, template: target?.template, locale: target?.locale,
                                                options: target?.options ?? [:],
                                                html: type(of: notifier.plugin).usesHTML)
        notification.deliveryKey = HeraldNotification.deliveryKey(eventID: event.id, notifier: name)
        notification.attempt = job.attempt
        running.add(1, ordering: .relaxed)
        let started = ContinuousClock.now
        let outcome = await attempt(notification, notifier)
        Timer(label: "herald_delivery_duration_seconds", dimensions: [("notifier", name)], preferredDisplayUnit: .seconds)
            .recordNanoseconds(started.duration(to: .now).saturatingNanoseconds)
        running.subtract(1, ordering: .relaxed)
        live.release()
        slots.release()
        await record(outcome, job: job, event: event, notifier: notifier, log: log)
    }

    private func loadEvent(_ job: DeliveryJob, _ log: Logger, endpoints: [String: HeraldConfig.Endpoint]) async -> Event? {
        if let event = job.event { return event }
        do {
            var stored = job.stored
            if stored == nil { stored = try await journal.event(id: job.eventID) }
            guard let stored else {
                try await journal.markDead(job.id, error: "the event is no longer in the journal")
                finalResult("dead")
                return nil
            }
            let source = endpoints[stored.endpoint]?.source ?? .generic
            let field = endpoints[stored.endpoint]?.eventField
            do {
                // The stored name: it may have come from a header, which the journal does not keep.
                return try source.decode(body: stored.body, endpoint: stored.endpoint, eventField: field,
                                         eventName: stored.name, id: stored.id, receivedAt: stored.receivedAt)
            } catch {
                try await journal.markDead(job.id, error: "the stored body no longer decodes: \(error.reason)")
                finalResult("dead")
                return nil
            }
        } catch {
            log.error("cannot read the event from the journal: \(error)")
            return nil
        }
    }

    enum Outcome { case delivered, failed(DeliveryError), cancelled }

    /// Calls the plugin with the notifier's timeout.
    private func attempt(_ notification: HeraldNotification, _ notifier: HeraldConfig.Notifier) async -> Outcome {
        let plugin = notifier.plugin
        let timeout = notifier.policy.timeout
        return await withTaskGroup(of: Outcome?.self) { group in
            group.addTask {
                do {
                    try await plugin.deliver(notification)
                    return .delivered
                } catch let error as DeliveryError {
                    return .failed(error)
                } catch is CancellationError {
                    return .cancelled
                } catch {
                    return .failed(DeliveryError(treating: error))
                }
            }
            group.addTask {
                guard await self.deadlines.wait(timeout) else { return nil }
                return .failed(.retryable("timed out after \(timeout)"))
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            if let first { return first }
            return Task.isCancelled ? .cancelled : .failed(.retryable("interrupted"))
        }
    }

    private func record(_ outcome: Outcome, job: DeliveryJob, event: Event, notifier: HeraldConfig.Notifier,
                        log: Logger) async {
        do {
            switch outcome {
            case .delivered:
                try await journal.markDelivered(job.id)
                log.debug("delivered")
                finalResult("delivered")
            case .cancelled:
                try await journal.markRetry(job.id, next: Date(), error: "interrupted by shutdown")
                log.info("interrupted by shutdown; will be retried on the next start")
            case .failed(let error):
                try await handle(error, job: job, event: event, notifier: notifier, log: log)
            }
        } catch {
            log.error("cannot record the outcome in the journal (the delivery will be retried): \(error)")
        }
    }

    private func handle(_ error: DeliveryError, job: DeliveryJob, event: Event, notifier: HeraldConfig.Notifier,
                        log: Logger) async throws {
        // The target's answer may echo a secret (the URL it was called with, a token):
        // nothing below stores or logs the error without this.
        let message = notifier.redact(error.description)
        guard case .retryable(let hint) = error.disposition else {
            try await journal.markDead(job.id, error: message)
            log.error("delivery failed for good: \(message)")
            finalResult("dead")
            return
        }
        let now = Date()
        guard let next = notifier.policy.retry.nextAttempt(afterFailure: job.attempt, hint: hint, now: now,
                                                          receivedAt: event.receivedAt) else {
            try await journal.markDead(job.id, error: "gave up after \(job.attempt) attempts: \(message)")
            log.error("delivery gave up after \(job.attempt) attempts: \(message)")
            finalResult("dead")
            return
        }
        try await journal.markRetry(job.id, next: next, error: message)
        Counter(label: "herald_delivery_retries_total", dimensions: [("notifier", notifier.name)]).increment()
        log.warning("delivery failed, retrying in \(String(format: "%.1f", next.timeIntervalSince(now))) s: \(message)")
    }

    private func finalResult(_ result: String) {
        Counter(label: "herald_deliveries_total", dimensions: [("notifier", name), ("result", result)]).increment()
        onFinal()
    }
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
        var waiters: [(ticket: UInt64, continuation: CheckedContinuation<Bool, Never>)] = []
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
        let woken = state.withLock { s -> [CheckedContinuation<Bool, Never>] in
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
            await withCheckedContinuation { continuation in
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
            let waiter = state.withLock { s -> CheckedContinuation<Bool, Never>? in
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
        let next = state.withLock { s -> CheckedContinuation<Bool, Never>? in
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

/// Per-attempt timeouts, from one clock loop per dispatcher instead of a sleeping task per
/// attempt: on Linux a cancelled `Task.sleep` keeps its timer and task until the deadline
/// would have passed, so with the default 30 s timeout, 5,000 deliveries a second held
/// about 40 MB of finished attempts' timers. Deadlines are checked every ``tick``.
final class AttemptDeadlines: Sendable {
    static let tick: Duration = .milliseconds(50)

    private struct Waiter {
        var deadline: ContinuousClock.Instant
        var continuation: CheckedContinuation<Bool, Never>
    }

    private enum Entry {
        /// The ticket is out; its waiter is not registered yet.
        case registering
        /// Cancelled before its waiter was registered.
        case cancelled
        case waiting(Waiter)
    }

    private struct State {
        var nextTicket: UInt64 = 0
        /// Only tickets not yet answered; an answered one leaves no trace.
        var entries: [UInt64: Entry] = [:]
    }

    private let state = Mutex(State())

    /// Returns true once `timeout` has passed, or false as soon as the task is cancelled
    /// (the attempt finished first).
    func wait(_ timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        let ticket = state.withLock { s in
            defer { s.nextTicket += 1 }
            s.entries[s.nextTicket] = .registering
            return s.nextTicket
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let cancelled = state.withLock { s in
                    if case .cancelled = s.entries[ticket] {
                        s.entries[ticket] = nil
                        return true
                    }
                    s.entries[ticket] = .waiting(Waiter(deadline: deadline, continuation: continuation))
                    return false
                }
                if cancelled { continuation.resume(returning: false) }
            }
        } onCancel: {
            let waiter = state.withLock { s -> Waiter? in
                switch s.entries[ticket] {
                case .waiting(let w):
                    s.entries[ticket] = nil
                    return w
                case .registering:
                    s.entries[ticket] = .cancelled
                    return nil
                case .cancelled, nil:
                    return nil
                }
            }
            waiter?.continuation.resume(returning: false)
        }
    }

    /// Tickets not yet answered (for tests).
    var outstanding: Int { state.withLock { $0.entries.count } }

    /// Resumes every waiter whose deadline is at or before `now`.
    func expire(now: ContinuousClock.Instant = .now) {
        let due = state.withLock { s -> [Waiter] in
            var due: [Waiter] = []
            for (ticket, entry) in s.entries {
                if case .waiting(let w) = entry, w.deadline <= now {
                    due.append(w)
                    s.entries[ticket] = nil
                }
            }
            return due
        }
        for w in due { w.continuation.resume(returning: true) }
    }

    /// The clock loop; runs until cancelled, then releases any waiter left as timed out.
    func run() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: Self.tick)
            expire()
        }
        expire(now: .now + .seconds(365 * 86400))
    }
}
