import Foundation
import Logging
import Metrics
import Synchronization

/// The path of one webhook through Herald, without HTTP: verify, decode, route, journal,
/// publish. The HTTP server maps each ``Outcome`` to a status code; everything that decides
/// whether an event is accepted lives here.
///
/// ```
/// receive(body, headers) ─ verify signature ─ decode ─ route ─ journal.append (durable)
///     └─ 202 ─ bus.publish ─ Dispatcher (per notifier) ─ NotifierPlugin.deliver
/// ```
public final class Pipeline: Sendable {
    /// The configuration in use now: endpoints, routes, templates and notifiers. A reload
    /// (``reload(to:services:)``) replaces it as a whole.
    public let live: LiveConfigCell
    public let journal: any Journal
    /// This instance's name in the journal's leases.
    public let owner: String
    public let bus: EventBus
    /// One per configured notifier; run them in the service group.
    public let dispatchers: [Dispatcher]
    let logger: Logger
    /// While the journal cannot store (a full disk), every request fails alike: one line per interval.
    let journalFailures = LogThrottle()
    /// Anyone can send unsigned requests, as many as they like: one line per interval
    /// (`herald_requests_total` still counts each, by reason).
    let rejections = LogThrottle()
    let undelivered: PendingCounter
    /// Booking time zones already warned about: one warning per zone, not per event.
    let unknownZones = SeenOnce(capacity: 64)
    /// Set while ``reload(to:services:)`` runs: reloads happen one at a time.
    let reloadInProgress = Atomic<Bool>(false)
    /// `herald_requests_total` per endpoint and result, made once each: making a metric
    /// looks it up in the metrics system's registry under a lock, every request. Keys come
    /// from the configuration (endpoint paths) and a fixed set (results), so the table stays
    /// small; past its capacity (only after many reloads with new paths) a counter is looked
    /// up each time.
    let requestCounters = RecentCache<RequestCounterKey, Counter>(capacity: 4096)
    struct RequestCounterKey: Hashable, Sendable { let endpoint: String; let result: String }

    /// The configuration in use now.
    public var config: HeraldConfig { live.snapshot.config }

    /// `server.maxBodyBytes` of the configuration in use now, read without copying the whole
    /// configuration (and retaining each of its strings and arrays), as `config` does: the
    /// server reads it for every webhook.
    public var maxBodyBytes: Int { live.snapshot.config.server.maxBodyBytes }

    /// What happened to a webhook.
    public enum Outcome: Sendable, Equatable {
        /// Stored durably; `deliveries` notifiers will get it.
        case accepted(eventID: String, deliveries: Int)
        /// Seen before at this endpoint; nothing is sent again.
        case duplicate(eventID: String)
        case unknownEndpoint
        case rejected(SignatureFailure)
        case malformed(String)
        /// Herald cannot keep more right now; the sender should retry after some seconds.
        case unavailable(retryAfter: Int, reason: String)
    }

    /// - Parameter queueCapacity: deliveries each notifier holds in memory, decoded and ready;
    ///   more wait in the journal and are read back in batches. 256 kept a loaded server
    ///   under 64 MB and drained a backlog faster than 1,024.
    ///   - owner: this instance's name in the journal's leases (see ``Lease/instanceOwner()``).
    public init(config: HeraldConfig, journal: any Journal, logger: Logger = Logger(label: "herald"),
                shutdownGrace: Duration = .seconds(10), queueCapacity: Int = 256,
                owner: String = Lease.instanceOwner()) async throws {
        let live = LiveConfigCell(try LiveConfig(config: config))
        self.live = live
        self.journal = journal
        self.logger = logger
        self.owner = owner
        bus = EventBus()
        let recovered = try await journal.instanceStarted(owner: owner)
        if recovered > 0 {
            logger.notice("recovered \(recovered) deliveries that were in flight when Herald last stopped")
        }
        let counter = PendingCounter(try await journal.undeliveredCount())
        undelivered = counter
        var dispatchers: [Dispatcher] = []
        for notifier in config.notifiers {
            let queue = bus.subscribe(notifier.name, capacity: queueCapacity)
            dispatchers.append(Dispatcher(
                name: notifier.name, live: live, queue: queue, journal: journal, owner: owner, logger: logger,
                storage: config.storage, shutdownGrace: shutdownGrace,
                onFinal: { counter.value.subtract(1, ordering: .relaxed) }))
        }
        self.dispatchers = dispatchers
    }

    /// The endpoint configured at `path`, if any.
    public func endpoint(path: String) -> HeraldConfig.Endpoint? { live.snapshot.endpointsByPath[path] }

    /// Deliveries accepted but not yet delivered or dead.
    public var undeliveredCount: Int { undelivered.value.load(ordering: .relaxed) }

    /// Takes one webhook from start to durable acceptance.
    ///
    /// - Parameters:
    ///   - header: looks a request header up by name (case-insensitive).
    ///   - now: the time signatures are checked against.
    public func receive(path: String, body: Data, header: (String) -> String?, now: Date = Date()) async -> Outcome {
        // One snapshot for the whole request, so a reload never mixes old and new settings.
        let live = live.snapshot
        guard let endpoint = live.endpointsByPath[path] else { return .unknownEndpoint }
        let outcome = await receive(endpoint: endpoint, body: body, header: header, now: now, live: live)
        count(outcome, path: path)
        return outcome
    }

    /// The same for a journal that answers appends by callback (``AppendingWithoutWaiting``): `done`
    /// gets the outcome once, on the journal's thread after its commit, or on the caller's
    /// before this returns when the request is answered without the journal (a bad signature,
    /// an unknown endpoint). For a server that answers from the thread that read the request,
    /// without a task to resume; `done` must be quick.
    package func receive(path: String, body: Data, header: (String) -> String?, now: Date = Date(),
                         journal: any AppendingWithoutWaiting, done: @escaping @Sendable (Outcome) -> Void) {
        let live = live.snapshot
        guard let endpoint = live.endpointsByPath[path] else { return done(.unknownEndpoint) }
        switch admit(endpoint: endpoint, body: body, header: header, now: now, live: live) {
        case .answered(let outcome):
            count(outcome, path: path)
            done(outcome)
        case .append(let entry, let admitted):
            journal.append(entry) { result in
                let outcome = self.settle(admitted, result)
                self.count(outcome, path: path)
                done(outcome)
            }
        }
    }

    /// Counts a request's outcome in `herald_requests_total`.
    private func count(_ outcome: Outcome, path: String) {
        let result: String
        switch outcome {
        case .accepted: result = "accepted"
        case .duplicate: result = "duplicate"
        case .rejected(let reason): result = reason.rawValue
        case .malformed: result = "malformed"
        case .unavailable: result = "unavailable"
        case .unknownEndpoint: result = "unknown"
        }
        requestCounters.value(for: RequestCounterKey(endpoint: path, result: result)) { key in
            Counter(label: "herald_requests_total", dimensions: [("endpoint", key.endpoint), ("result", key.result)])
        }.increment()
    }

    func receive(endpoint: HeraldConfig.Endpoint, body: Data, header: (String) -> String?, now: Date,
                 live: LiveConfig) async -> Outcome {
        switch admit(endpoint: endpoint, body: body, header: header, now: now, live: live) {
        case .answered(let outcome):
            return outcome
        case .append(let entry, let admitted):
            do {
                return settle(admitted, .success(try await journal.append(entry)))
            } catch {
                return settle(admitted, .failure(error))
            }
        }
    }

    /// What a request came to before the journal: an answer, or the entry to append and what
    /// ``settle(_:_:)`` needs once the journal has answered.
    enum Admission {
        case answered(Outcome)
        case append(JournalEntry, Admitted)
    }

    /// A request admitted for the journal: its event and the queue places reserved for it.
    struct Admitted: Sendable {
        let event: Event
        let reserved: Reservation
        let reminders: [ScheduledReminder]
        let routed: Bool
    }

    /// Verifies, decodes and routes one request, and reserves its deliveries' queue places:
    /// everything before the journal, on the caller's thread.
    private func admit(endpoint: HeraldConfig.Endpoint, body: Data, header: (String) -> String?, now: Date,
                       live: LiveConfig) -> Admission {
        do {
            try endpoint.scheme.verify(body: body, header: header, now: Int64(now.timeIntervalSince1970))
        } catch {
            rejections.log(logger, .info, "rejected webhook", metadata: ["endpoint": .string(endpoint.path), "reason": .string(error.rawValue)])
            return .answered(.rejected(error))
        }
        let event: Event
        do {
            event = try endpoint.decode(body: body, header: header, receivedAt: now)
        } catch {
            return .answered(.malformed(error.reason))
        }
        for warning in event.warnings {
            logger.warning("event field ignored: \(warning)", metadata: ["event": .string(event.id)])
        }
        if let zone = event.booking?.timeZone, TimeText.knownZone(zone) == nil, unknownZones.firstSighting(of: zone) {
            let name = String(zone.prefix(64)).debugDescription
            logger.warning("booking time zone \(name) is not a known IANA time zone; its times are shown in UTC",
                           metadata: ["event": .string(event.id)])
        }
        let routed = live.router.targets(for: event)
        let targets = routed.map(\.notifier)
        let reminders = Reminders.plan(for: event, targets: routed, now: now)
        let maxPending = live.config.storage.maxPending
        if undelivered.value.load(ordering: .relaxed) + targets.count > maxPending {
            return .answered(.unavailable(retryAfter: 30, reason: "\(maxPending) deliveries are waiting; try again later"))
        }
        let dedupeKey = endpoint.dedupe ? endpoint.dedupeKey(for: event, header: header) : nil
        // Deliveries whose notifier has room in memory are stored leased to this instance and
        // attempted at once; the others wait in the journal until their dispatcher has room.
        let reserved = bus.reserve(targets)
        let lease = Lease(owner: owner, until: Date() + live.config.storage.leaseTime.seconds)
        let entry = JournalEntry(
            event: event, dedupeKey: dedupeKey, notifiers: targets, lease: lease, leased: reserved.notifiers,
            bookingKey: reminders.bookingKey, reminders: reminders.reminders, cancelsReminders: reminders.cancels,
            booking: BookingSnapshot(event))
        return .append(entry, Admitted(event: event, reserved: reserved, reminders: reminders.reminders,
                                       routed: !targets.isEmpty))
    }

    /// What the journal's answer to an admitted request means: the deliveries published on
    /// the bus once accepted, the reservations given back otherwise.
    private func settle(_ admitted: Admitted, _ result: Result<AppendResult, any Error>) -> Outcome {
        let event = admitted.event, reserved = admitted.reserved
        switch result {
        case .failure(let error):
            bus.cancel(reserved)
            journalFailures.log(logger, .error, "cannot store the event; answering 503: \(error)")
            return .unavailable(retryAfter: 5, reason: "the journal cannot store events right now")
        case .success(.duplicate(let original)):
            bus.cancel(reserved)
            logger.info("duplicate webhook ignored", metadata: ["event": .string(original)])
            return .duplicate(eventID: original)
        case .success(.accepted(let deliveries)):
            undelivered.value.add(deliveries.count, ordering: .relaxed)
            bus.publish(event, deliveries: deliveries, reserved: reserved)
            for reminder in admitted.reminders where reminder.skipReason == nil {
                bus.stored(for: reminder.notifier, dueAt: reminder.remindAt)
            }
            let overflowed = deliveries.count - reserved.notifiers.count
            if overflowed > 0 {
                // Under load this happens per request: count it, log it only at debug.
                for name in deliveries.keys where !reserved.contains(name) {
                    Counter(label: "herald_queue_overflows_total", dimensions: [("notifier", name)]).increment()
                    bus.stored(for: name)
                }
                logger.debug("queue full, deliveries wait in the journal", metadata: ["event": .string(event.id)])
            }
            if !admitted.routed {
                logger.notice("no route matches this event; stored but sent nowhere", metadata: ["event": .string(event.id), "name": .string(event.name)])
            } else {
                // One line per accepted webhook only at debug: at info it cost more CPU than
                // verifying the request (`herald_requests_total` counts them; failures log).
                logger.debug("accepted", metadata: ["event": .string(event.id), "name": .string(event.name), "deliveries": .stringConvertible(deliveries.count)])
            }
            return .accepted(eventID: event.id, deliveries: deliveries.count)
        }
    }
}

/// Deliveries accepted and not yet final, shared by the pipeline and its dispatchers.
final class PendingCounter: Sendable {
    let value: Atomic<Int>
    init(_ initial: Int) { value = Atomic(initial) }
}

/// Names seen so far, to report something once: thread-safe, and bounded so a sender that
/// makes up a new name for every request cannot grow it without end (past `capacity` names,
/// nothing counts as new).
final class SeenOnce: Sendable {
    private let seen = Mutex<Set<String>>([])
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// True the first time `name` is passed, while fewer than `capacity` names were seen.
    func firstSighting(of name: String) -> Bool {
        seen.withLock { names in
            guard names.count < capacity, !names.contains(name) else { return false }
            names.insert(name)
            return true
        }
    }
}
