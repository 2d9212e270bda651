import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Runs one notifier's deliveries: from its queue, through its plugin, into the journal.
///
/// Every delivery in its queue is leased to this instance: fresh ones were stored leased by
/// the request that accepted them, the rest were taken from the journal by the sweep
/// (retries come due, deliveries the queue had no room for, leases whose owner died). A
/// renewal loop keeps the leases of everything queued or running alive, so only a dead or
/// stalled instance's work is ever taken over. Up to `policy.concurrency` deliveries run at
/// once, each cut off after `policy.timeout`; each attempt costs one journal write, its
/// outcome, and concurrent outcomes share a commit.
/// A retryable failure is written back as pending with its next attempt time (full-jitter
/// backoff, or the target's `Retry-After`); a permanent one, or one past `giveUpAfter`,
/// becomes dead. The queue is a fast path, never the only copy.
///
/// On graceful shutdown it stops taking work, gives running deliveries `shutdownGrace` to
/// finish, then cancels them; queued ones are released (pending again, their attempt
/// uncounted), so whatever did not finish is due for the next start.
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
    /// This instance's name in the journal's leases.
    let owner: String
    let logger: Logger
    let leaseTime: Duration
    let deadAfter: Int
    let shutdownGrace: Duration
    /// How soon the sweep looks again when the journal does not say when work comes due (a
    /// journal that leaves ``LeaseResult/nextDue`` nil) or a lease failed.
    let sweepInterval: Duration
    let onFinal: @Sendable () -> Void
    private let stopping = Atomic<Bool>(false)
    /// Plugin calls in progress.
    private let running = Atomic<Int>(0)
    private let slots: DeliverySlots
    private let deadlines = DeadlineClock()
    /// The journal, when it can write an outcome without the delivery's task waiting (SQLite).
    private let recorder: (any RecordingWithoutWaiting)?
    /// Outcomes handed to `recorder` and not yet committed: the dispatcher stops after them.
    private let unwritten = OutstandingWrites()
    /// Queued deliveries whose lease a renewal found taken over: not to be attempted here.
    private let lost = Mutex<Set<Int64>>([])
    /// Metric handles, made once (the metrics system is bootstrapped before any dispatcher):
    /// making one looks it up in the registry under a lock, per delivery until now.
    private let durationTimer: Timer
    private let retries: Counter
    private let results: [String: Counter]

    /// - Parameters:
    ///   - storage: the lease time and how many interruptions set a delivery aside.
    public init(name: String, live: LiveConfigCell, queue: DeliveryQueue, journal: any Journal, owner: String,
                logger: Logger, storage: HeraldConfig.Storage = .init(), shutdownGrace: Duration = .seconds(10),
                sweepInterval: Duration = .milliseconds(500), onFinal: @escaping @Sendable () -> Void = {}) {
        self.name = name
        self.live = live
        self.queue = queue
        self.journal = journal
        recorder = journal as? any RecordingWithoutWaiting
        self.owner = owner
        leaseTime = storage.leaseTime
        deadAfter = storage.deadAfterCrashes
        durationTimer = Timer(label: "herald_delivery_duration_seconds", dimensions: [("notifier", name)],
                              preferredDisplayUnit: .seconds)
        retries = Counter(label: "herald_delivery_retries_total", dimensions: [("notifier", name)])
        results = Dictionary(uniqueKeysWithValues: ["delivered", "dead", "skipped"].map { result in
            (result, Counter(label: "herald_deliveries_total", dimensions: [("notifier", name), ("result", result)]))
        })
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

    // MARK: Running: the consumer, the sweep, lease renewal

    public func run() async throws {
        let consumer = Task { await self.consume() }
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { await self.sweep() }
                    group.addTask { await self.renewLeases() }
                    group.addTask { await self.deadlines.run() }
                    group.addTask { await self.endDeliveriesAfterTheGrace(consumer) }
                    await consumer.value
                    group.cancelAll()
                }
            } onCancel: {
                consumer.cancel()
            }
        } onGracefulShutdown: {
            // Stop taking work now; running deliveries get `shutdownGrace` (see
            // `endDeliveriesAfterTheGrace`).
            self.stopping.store(true, ordering: .relaxed)
            self.queue.finish()
            self.slots.close()
        }
    }

    /// Once a graceful shutdown has begun, waits `shutdownGrace` and cancels the deliveries
    /// still running (each is written back as pending, or left in flight for recovery on the
    /// next start). Ends early, doing nothing, if the dispatcher finishes first.
    private func endDeliveriesAfterTheGrace(_ consumer: Task<Void, Never>) async {
        do {
            try await gracefulShutdown()
            try await Task.sleep(for: shutdownGrace)
        } catch {
            return
        }
        let running = running.load(ordering: .relaxed)
        if running > 0 {
            logger.warning("shutdown deadline reached; \(running) deliveries stay pending for the next start")
            consumer.cancel()
        }
    }

    /// Runs the queue's jobs in order, at most `concurrency` at once: each of the notifier's
    /// slots, once free, takes the next job and runs it in a task of its own, which then goes
    /// on with the jobs queued meanwhile, in order, until none is left, and gives its slot back.
    /// Attempts therefore start in queue order (one at a time with `concurrency: 1`), and what
    /// waits stays in the bounded queue, or in the journal when the queue is full.
    ///
    /// A slot is taken before a job, not after: a job taken first waited in this loop for a
    /// slot, and every delivery that ended handed its slot back here, resuming this task to
    /// start a task for the next job. Under load that was a resume, a task and often a thread
    /// woken per delivery; a task that goes on needs none of them.
    private func consume() async {
        var unstarted: [Int64] = []
        await withDiscardingTaskGroup { group in
            while true {
                // Read per job: a reload may change `concurrency`.
                slots.resize(to: notifier.policy.concurrency)
                guard !stopping.load(ordering: .relaxed), await slots.acquire() else { break }
                guard let job = await queue.next() else {
                    slots.release()
                    break
                }
                guard !stopping.load(ordering: .relaxed) else {
                    slots.release()
                    unstarted.append(job.id)
                    queue.complete(job.id)
                    break
                }
                group.addTask { await self.work(from: job) }
            }
        }
        // Shutting down: what is still queued was never started (the queue is finished, so
        // this ends once it is drained).
        for await job in queue.jobs {
            unstarted.append(job.id)
            queue.complete(job.id)
        }
        // Outcomes still on their way to the journal: the dispatcher has not finished before they are.
        await unwritten.drained()
        // Shutting down with deliveries still queued: give them back as they were, in one write.
        guard !unstarted.isEmpty else { return }
        do {
            _ = try await journal.record(unstarted.map { .released($0) }, owner: owner)
        } catch {
            logger.warning("cannot give \(unstarted.count) queued deliveries back; they are due again once their lease expires: \(error)")
        }
    }

    /// Runs `first`, then the jobs queued meanwhile, holding one slot, which it gives back once
    /// the queue is empty (or shutdown has begun, or the slot is no longer within a lowered
    /// `concurrency`), or as soon as an attempt's outcome must be waited for (see `process`).
    private func work(from first: DeliveryJob) async {
        var job = first
        while true {
            guard await process(job) else { return }
            guard !stopping.load(ordering: .relaxed), !Task.isCancelled, slots.keep(),
                  let next = queue.takeBuffered() else { break }
            job = next
        }
        slots.release()
    }

    /// Feeds due deliveries from the journal: retries, reminders, deliveries the queue had no
    /// room for when they were accepted, and expired leases (an instance died or stalled).
    ///
    /// It looks when work is due, not on a timer: each lease answers when the next delivery
    /// comes due or its lease expires, and the sweep sleeps until then unless its alarm rings
    /// (a request stored a delivery its queue had no room for, a retry or reminder was stored
    /// sooner) or the journal says another process stored work (``Journal/waitForWork(notifier:)``).
    /// It never sleeps longer than a lease time, a safety net for work stored where nothing
    /// says so. While the journal has more due than the queue could take (a backlog after a
    /// burst), it comes back as soon as the queue has drained to half, so a backlog drains at
    /// delivery speed.
    private func sweep() async {
        let alarm = queue.alarm
        while !Task.isCancelled, !stopping.load(ordering: .relaxed) {
            let room = max(0, queue.capacity - queue.depth)
            // A full queue: the sweep comes back once it has room.
            var backlog = room == 0
            var next: Date?
            if room > 0 {
                do {
                    alarm.looking()
                    let now = Date()
                    let taken = try await journal.lease(LeaseRequest(
                        notifier: name, owner: owner, now: now, until: now + leaseTime.seconds, limit: room,
                        deadAfter: deadAfter))
                    report(taken)
                    for item in taken.deliveries {
                        let r = item.record
                        let job = DeliveryJob(id: r.id, eventID: r.eventID, event: nil, attempt: r.attempts,
                                              stored: item.event,
                                              reminder: r.reminderOffset.map { ($0, r.remindAt ?? r.dueAt ?? now) })
                        if queue.offer(job) == .full {
                            // Filled meanwhile by new requests: give it back untouched.
                            _ = try await journal.record([.released(job.id)], owner: owner)
                        }
                    }
                    backlog = taken.deliveries.count + taken.setAside.count >= room
                    // Work due now that this lease did not take is another instance's, being
                    // taken: look again shortly rather than at once.
                    next = taken.nextDue.map { max($0, Date() + 0.1) }
                } catch {
                    // Stopping (the server could not listen, or a shutdown): not a journal fault.
                    if Task.isCancelled || stopping.load(ordering: .relaxed) { return }
                    logger.error("cannot read due deliveries from the journal: \(error)")
                }
            }
            let now = Date()
            // A journal that does not say when (or a failed lease): look again after the sweep
            // interval; a backlog: when the queue has room.
            var deadline = backlog ? Date.distantFuture : next ?? now + sweepInterval.seconds
            deadline = min(deadline, now + leaseTime.seconds)
            await withTaskGroup(of: Void.self) { group in
                if backlog { group.addTask { await self.queue.waitForRoom() } }
                group.addTask { [deadline] in await alarm.wait(until: deadline) }
                // Another instance stored work for this notifier (a shared journal says so).
                group.addTask { [journal, name] in await journal.waitForWork(notifier: name) }
                await group.next()
                group.cancelAll()
            }
        }
    }

    /// Logs what a lease found besides due work: deliveries taken over, and deliveries set aside.
    private func report(_ taken: LeaseResult) {
        if taken.takenOver > 0 {
            logger.notice("took over \(taken.takenOver) deliveries whose lease had expired (their instance stopped or stalled during them)")
        }
        for record in taken.setAside {
            // Most likely this delivery itself made Herald stop: keep it out of the way.
            logger.error("delivery set aside as dead: \(record.lastError ?? "interrupted too often"); `herald deliveries retry \(record.id)` sends it again",
                         metadata: ["delivery": .stringConvertible(record.id), "event": .string(record.eventID)])
            finalResult("dead")
        }
    }

    /// Keeps the leases of every delivery queued or running here alive, every third of the
    /// lease time; one whose lease was taken over meanwhile is not attempted here.
    private func renewLeases() async {
        let interval = leaseTime / 3
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            let held = queue.heldIDs
            guard !held.isEmpty else { continue }
            do {
                let renewed = try await journal.renew(held, owner: owner, until: Date() + leaseTime.seconds)
                // Deliveries that finished meanwhile are reported too: only those still held
                // here were taken over.
                let stillHeld = Set(queue.heldIDs)
                let gone = renewed.filter { stillHeld.contains($0) }
                if !gone.isEmpty {
                    lost.withLock { $0.formUnion(gone) }
                    logger.warning("\(gone.count) deliveries held here were taken over by another instance; they are not attempted here")
                }
            } catch {
                if Task.isCancelled { return }
                logger.error("cannot renew delivery leases in the journal: \(error)")
            }
        }
    }

    // MARK: One delivery

    /// One attempt at one leased delivery, in a task that holds one of the notifier's slots,
    /// and its outcome written to the journal (or handed to it, when it calls back). Returns
    /// whether the task still holds its slot: an attempt's outcome that the task waits for is
    /// written after the slot is given back, so that the next attempt does not wait for the
    /// write (behind other writes, in a journal that serializes them). The rare outcomes
    /// decided before any attempt (the event gone, a reminder too late, quiet hours, an agenda
    /// with nothing to send) are written holding the slot, as they always were.
    func process(_ job: DeliveryJob) async -> Bool {
        // The delivery leaves the queue once its outcome is written (or nothing is to be written;
        // a retry leaves just before its write, see `write`).
        var completesLater = false
        defer { if !completesLater { complete(job) } }
        let log = DeliveryLogger(base: logger, job: job)
        // Nearly always empty: asked first, so the common case hashes nothing.
        if lost.withLock({ !$0.isEmpty && $0.remove(job.id) != nil }) { return true }
        // Until the attempt starts, the current configuration is read without a lease.
        let current = live.snapshot
        guard let event = await loadEvent(job, log, endpoints: current.endpointsByPath) else { return true }
        // Routing runs again for the attempt below: only a reminder needs its route's grace here.
        if let reminder = job.reminder,
           case let grace = current.router.target(for: event, notifier: name)?.remindGrace ?? .seconds(600),
           Reminders.tooLate(remindAt: reminder.remindAt, now: Date(), grace: grace) {
            let reason = "its time (\(ISO8601.format(reminder.remindAt))) passed by more than "
                + "\(TimeText.shortDuration(grace)) before it could be sent"
            if await write(.skipped(job.id, reason: reason), job, log) {
                log.notice("reminder skipped: \(reason)")
                finalResult("skipped")
            }
            return true
        }
        if let quiet = current.notifier(named: name).policy.quietHours, let window = quiet.window(containing: Date()) {
            await keepQuiet(job, quiet.action, until: window.end, log)
            return true
        }
        var agenda: HeraldNotification?
        if event.endpoint == Agenda.endpoint {
            guard let made = await agendaNotification(job, event, current, log) else { return true }
            agenda = made
        }
        // One configuration for the attempt, taken once it can start; its plugin stays up
        // until the lease ends.
        let live = self.live.lease()
        let notifier = live.notifier(named: name)
        let target = live.router.target(for: event, notifier: name)
        var notification = agenda ?? live.renderer.render(
            event, template: job.reminder == nil ? target?.template : target?.reminderTemplate, locale: target?.locale,
            options: target?.options ?? [:], html: type(of: notifier.plugin).usesHTML,
            reminder: job.reminder.map { Renderer.Reminder(offset: .seconds($0.offset)) })
        // A reminder is a message of its own: its key must not collide with the event's.
        let keyID = job.reminder.map { "\(event.id).reminder-\($0.offset)-\(Int($0.remindAt.timeIntervalSince1970))" } ?? event.id
        notification.deliveryKey = HeraldNotification.deliveryKey(eventID: keyID, notifier: name)
        notification.attempt = job.attempt
        running.add(1, ordering: .relaxed)
        let started = ContinuousClock.now
        let (outcome, timedOut) = await attempt(notification, notifier)
        durationTimer.recordNanoseconds(started.duration(to: .now).saturatingNanoseconds)
        running.subtract(1, ordering: .relaxed)
        live.release()
        // The common case: delivered, and a journal that calls back once the outcome is
        // committed. The rest happens on the journal's writer; the task keeps its slot and
        // goes on to the next delivery.
        if case .delivered = outcome, let recorder {
            completesLater = true
            unwritten.begin()
            recorder.record([.delivered(job.id)], owner: owner) { result in
                if self.recorded(result, log) {
                    log.debug("delivered")
                    self.finalResult("delivered")
                } else {
                    // Attempted again once its lease has expired.
                    self.queue.alarm.schedule(Date() + self.leaseTime.seconds)
                }
                self.complete(job)
                self.unwritten.end()
            }
            return true
        }
        slots.release()
        guard timedOut else {
            await record(outcome, job: job, event: event, notifier: notifier, log: log)
            return false
        }
        // The clock cancelled this task to stop the plugin. Writing the outcome must not be cut
        // short by that (PostgreSQL's journal refuses a cancelled caller), so it is written from
        // a task that is not cancelled, awaited here: the only task an attempt makes, and only
        // when it timed out.
        await Task { [self] in await record(outcome, job: job, event: event, notifier: notifier, log: log) }.value
        return false
    }

    /// The delivery's event: the one the request published, else decoded from the journal's
    /// copy; nil (with the delivery written dead when the event is gone or no longer decodes)
    /// when there is none.
    private func loadEvent(_ job: DeliveryJob, _ log: DeliveryLogger, endpoints: [String: HeraldConfig.Endpoint]) async -> Event? {
        if let event = job.event { return event }
        do {
            var stored = job.stored
            if stored == nil { stored = try await journal.event(id: job.eventID) }
            guard let stored else {
                if await write(.dead(job.id, error: "the event is no longer in the journal"), job, log) { finalResult("dead") }
                return nil
            }
            let source = endpoints[stored.endpoint]?.source ?? .generic
            let field = endpoints[stored.endpoint]?.eventField
            do {
                // The stored name: it may have come from a header, which the journal does not keep.
                return try source.decode(body: stored.body, endpoint: stored.endpoint, eventField: field,
                                         eventName: stored.name, id: stored.id, receivedAt: stored.receivedAt)
            } catch {
                if await write(.dead(job.id, error: "the stored body no longer decodes: \(error.reason)"), job, log) {
                    finalResult("dead")
                }
                return nil
            }
        } catch {
            log.error("cannot read the event from the journal: \(error)")
            return nil
        }
    }

    /// The agenda an agenda event stands for, listing the day's bookings from the journal; nil
    /// when there is nothing to send (settings changed, an empty day with `skipEmpty`, or the
    /// journal failed), with the outcome already written.
    private func agendaNotification(_ job: DeliveryJob, _ event: Event, _ current: LiveConfig, _ log: DeliveryLogger) async
        -> HeraldNotification? {
        let schedule = current.notifier(named: name).policy.agenda
        guard let schedule, let at = Agenda.occurrence(of: event, schedule: schedule, notifier: name),
              let day = schedule.listedDay(for: at) else {
            if await write(.skipped(job.id, reason: "the notifier's agenda settings changed since this agenda was due"), job, log) {
                finalResult("skipped")
            }
            return nil
        }
        let bookings: [BookingSnapshot]
        do {
            bookings = try await journal.bookings(startingFrom: day.start, before: day.end).filter {
                !$0.isCancelled && (schedule.eventTypes.isEmpty || schedule.eventTypes.contains($0.eventTypeUid ?? ""))
            }
        } catch {
            await write(.retry(job.id, at: Date() + 5, error: "cannot read the day's bookings: \(error)"), job, log)
            log.error("cannot read the day's bookings from the journal; the agenda is retried: \(error)")
            return nil
        }
        if bookings.isEmpty, schedule.skipEmpty {
            if await write(.skipped(job.id, reason: "no bookings on \(day.date)"), job, log) { finalResult("skipped") }
            return nil
        }
        return current.renderer.renderAgenda(event, bookings: bookings, date: day.date, zone: schedule.zone)
    }

    /// Inside the notifier's quiet hours: the delivery waits for the window's end, or is skipped.
    private func keepQuiet(_ job: DeliveryJob, _ action: QuietHours.Action, until end: Date, _ log: DeliveryLogger) async {
        switch action {
        case .hold:
            let reason = "held for quiet hours until \(ISO8601.format(end))"
            if await write(.postponed(job.id, until: end, reason: reason), job, log) { log.info("\(reason)") }
        case .drop:
            guard await write(.skipped(job.id, reason: "dropped: sent during quiet hours"), job, log) else { return }
            log.info("dropped: inside the notifier's quiet hours")
            finalResult("skipped")
        }
    }

    /// What one plugin call came to.
    enum Outcome { case delivered, failed(DeliveryError), cancelled }

    /// Calls the plugin with the notifier's timeout; the outcome, and whether the timeout
    /// passed. The plugin runs in the delivery's own task (``process(_:)``), which the deadline
    /// clock cancels if the plugin is still running when the timeout passes; the caller then
    /// writes the outcome from a task that is not cancelled. (An `async let` child per attempt,
    /// which kept the cancellation to itself, cost a task and its scheduling on every
    /// delivery for a case that is rare.)
    private func attempt(_ notification: HeraldNotification, _ notifier: HeraldConfig.Notifier) async
        -> (outcome: Outcome, timedOut: Bool) {
        let plugin = notifier.plugin
        let timeout = notifier.policy.timeout
        let (outcome, timedOut) = await deadlines.run(timeout) { () async -> Outcome in
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
        // Delivered after all (the plugin finished despite the cancellation): that is what happened.
        if timedOut, case .delivered = outcome { return (outcome, true) }
        return (timedOut ? .failed(.retryable("timed out after \(timeout)")) : outcome, timedOut)
    }

    /// The delivery is done here, whatever its outcome: its place in the queue is free and its
    /// lease no longer renewed.
    private func complete(_ job: DeliveryJob) {
        queue.complete(job)
        lost.withLock { if !$0.isEmpty { $0.remove(job.id) } }
    }

    // MARK: Outcomes: written to the journal, counted, logged

    /// Writes what an attempt came to: delivered, retried (shutdown), or a failure for ``handle``.
    private func record(_ outcome: Outcome, job: DeliveryJob, event: Event, notifier: HeraldConfig.Notifier,
                        log: DeliveryLogger) async {
        switch outcome {
        case .delivered:
            guard await write(.delivered(job.id), job, log) else { return }
            log.debug("delivered")
            finalResult("delivered")
        case .cancelled:
            guard await write(.retry(job.id, at: Date(), error: "interrupted by shutdown"), job, log) else { return }
            log.info("interrupted by shutdown; will be retried on the next start")
        case .failed(let error):
            await handle(error, job: job, event: event, notifier: notifier, log: log)
        }
    }

    /// A failed attempt: retried at the policy's next time (or the target's `Retry-After`), or
    /// dead when the failure is permanent or the policy gives up.
    private func handle(_ error: DeliveryError, job: DeliveryJob, event: Event, notifier: HeraldConfig.Notifier,
                        log: DeliveryLogger) async {
        // The target's answer may echo a secret (the URL it was called with, a token):
        // nothing below stores or logs the error without this.
        let message = notifier.redact(error.description)
        guard case .retryable(let hint) = error.disposition else {
            guard await write(.dead(job.id, error: message), job, log) else { return }
            log.error("delivery failed for good: \(message)")
            finalResult("dead")
            return
        }
        let now = Date()
        guard let next = notifier.policy.retry.nextAttempt(afterFailure: job.attempt, hint: hint, now: now,
                                                          receivedAt: event.receivedAt) else {
            guard await write(.dead(job.id, error: "gave up after \(job.attempt) attempts: \(message)"), job, log) else { return }
            log.error("delivery gave up after \(job.attempt) attempts: \(message)")
            finalResult("dead")
            return
        }
        guard await write(.retry(job.id, at: next, error: message), job, log) else { return }
        retries.increment()
        log.warning("delivery failed, retrying in \(String(format: "%.1f", next.timeIntervalSince(now))) s: \(message)")
    }

    /// Writes `job`'s outcome; false if it was not written (lease lost, or the journal failed:
    /// the delivery is then attempted again once its lease expires).
    ///
    /// A retry or a postponement leaves the queue before it is written. Once committed, the
    /// delivery is pending, and a sweep may take it at once (its time has come, or the sweep
    /// woke for other work): the queue must not still hold it then, or it would refuse it as
    /// queued already, and the delivery would wait out its new lease.
    @discardableResult
    private func write(_ outcome: DeliveryOutcome, _ job: DeliveryJob, _ log: DeliveryLogger) async -> Bool {
        switch outcome {
        case .retry, .postponed: complete(job)
        case .delivered, .dead, .skipped, .released: break
        }
        let written: Bool
        do {
            written = recorded(.success(try await journal.record([outcome], owner: owner)), log)
        } catch {
            written = recorded(.failure(error), log)
        }
        // The sweep looks for it again when it is due: its next attempt, or, not written, once
        // its lease has expired.
        switch outcome {
        case _ where !written: queue.alarm.schedule(Date() + leaseTime.seconds)
        case .retry(_, let at, _), .postponed(_, let at, _): queue.alarm.schedule(at)
        case .delivered, .dead, .skipped, .released: break
        }
        return written
    }

    /// Whether one outcome was written, given the journal's answer (the ids whose lease was lost).
    private func recorded(_ answer: Result<[Int64], any Error>, _ log: DeliveryLogger) -> Bool {
        switch answer {
        case .success(let lost) where lost.isEmpty:
            return true
        case .success:
            log.warning("another instance took this delivery over; its outcome here is not recorded")
            return false
        case .failure(let error):
            log.error("cannot record the outcome in the journal (the delivery will be attempted again): \(error)")
            return false
        }
    }

    /// Counts a delivery that reached a final state (`herald_deliveries_total`) and tells the
    /// pipeline it is no longer pending.
    private func finalResult(_ result: String) {
        (results[result] ?? Counter(label: "herald_deliveries_total", dimensions: [("notifier", name), ("result", result)]))
            .increment()
        onFinal()
    }
}
