import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Runs one notifier's deliveries: from its queue, through its plugin, into the journal.
///
/// Up to `policy.concurrency` deliveries run at once, each cut off after `policy.timeout`.
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
    private let running = Atomic<Int>(0)

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

    /// Takes jobs off the queue with at most `concurrency` running.
    private func consume() async {
        await withTaskGroup(of: Void.self) { group in
            var inGroup = 0
            for await job in queue.jobs {
                if stopping.load(ordering: .relaxed) { queue.complete(job.id); continue }
                while inGroup >= notifier.policy.concurrency {
                    _ = await group.next()
                    inGroup -= 1
                }
                running.add(1, ordering: .relaxed)
                group.addTask {
                    await self.process(job)
                    self.running.subtract(1, ordering: .relaxed)
                }
                inGroup += 1
            }
            await group.waitForAll()
        }
    }

    /// Feeds due deliveries from the journal: retries, recovered work, queue overflow.
    private func sweep() async {
        while !Task.isCancelled, !stopping.load(ordering: .relaxed) {
            let room = max(0, queue.capacity - queue.depth)
            if room > 0 {
                do {
                    for record in try await journal.due(notifier: notifier.name, now: Date(), limit: room) {
                        _ = queue.offer(DeliveryJob(id: record.id, eventID: record.eventID, event: nil, attempt: record.attempts + 1))
                    }
                } catch {
                    logger.error("cannot read due deliveries from the journal: \(error)")
                }
            }
            try? await Task.sleep(for: sweepInterval)
        }
    }

    /// One attempt at one delivery, and its outcome written to the journal.
    func process(_ job: DeliveryJob) async {
        defer { queue.complete(job.id) }
        var log = logger
        log[metadataKey: "event"] = .string(job.eventID)
        log[metadataKey: "delivery"] = .stringConvertible(job.id)
        log[metadataKey: "attempt"] = .stringConvertible(job.attempt)
        // One configuration for the whole delivery; its plugin stays up until the lease ends.
        let live = self.live.lease()
        defer { live.release() }
        let notifier = live.notifier(named: name)
        guard let event = await loadEvent(job, log, endpoints: live.endpointsByPath) else { return }
        let target = live.router.target(for: event.name, notifier: notifier.name)
        var notification = live.renderer.render(event, template: target?.template, locale: target?.locale,
                                                options: target?.options ?? [:])
        notification.deliveryKey = "\(event.id).\(notifier.name)"
        notification.attempt = job.attempt
        do {
            // A stale copy (the sweep read it as pending just before another attempt finished)
            // finds the delivery no longer pending and stops here: no second delivery.
            guard try await journal.claim(job.id) else { return }
        } catch {
            log.error("cannot record the attempt in the journal, leaving it for the sweep: \(error)")
            return
        }
        let started = ContinuousClock.now
        let outcome = await attempt(notification, notifier)
        Timer(label: "herald_delivery_duration_seconds", dimensions: [("notifier", notifier.name)], preferredDisplayUnit: .seconds)
            .recordNanoseconds(Self.nanoseconds(started.duration(to: .now)))
        await record(outcome, job: job, event: event, notifier: notifier, log: log)
    }

    private func loadEvent(_ job: DeliveryJob, _ log: Logger, endpoints: [String: HeraldConfig.Endpoint]) async -> Event? {
        if let event = job.event { return event }
        do {
            guard let stored = try await journal.event(id: job.eventID) else {
                try await journal.markDead(job.id, error: "the event is no longer in the journal")
                finalResult("dead")
                return nil
            }
            let source = endpoints[stored.endpoint]?.source ?? .generic
            let field = endpoints[stored.endpoint]?.eventField
            do {
                return try source.decode(body: stored.body, endpoint: stored.endpoint, eventField: field,
                                         id: stored.id, receivedAt: stored.receivedAt)
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
                    return .failed(.retryable(String(describing: error)))
                }
            }
            group.addTask {
                do { try await Task.sleep(for: timeout) } catch { return nil }
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
        guard case .retryable(let hint) = error.disposition else {
            try await journal.markDead(job.id, error: error.description)
            log.error("delivery failed for good: \(error)")
            finalResult("dead")
            return
        }
        let policy = notifier.policy.retry
        let delay = policy.delay(forRetry: job.attempt, hint: hint)
        let next = Date().addingTimeInterval(delay.seconds)
        if next.timeIntervalSince(event.receivedAt) > policy.giveUpAfter.seconds {
            try await journal.markDead(job.id, error: "gave up after \(job.attempt) attempts: \(error)")
            log.error("delivery gave up after \(job.attempt) attempts: \(error)")
            finalResult("dead")
            return
        }
        try await journal.markRetry(job.id, next: next, error: error.description)
        Counter(label: "herald_delivery_retries_total", dimensions: [("notifier", notifier.name)]).increment()
        log.warning("delivery failed, retrying in \(String(format: "%.1f", delay.seconds)) s: \(error)")
    }

    static func nanoseconds(_ d: Duration) -> Int64 {
        let (s, atto) = d.components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }

    private func finalResult(_ result: String) {
        Counter(label: "herald_deliveries_total", dimensions: [("notifier", name), ("result", result)]).increment()
        onFinal()
    }
}
