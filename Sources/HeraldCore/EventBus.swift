import Foundation
import Synchronization

/// One delivery to run: an event for one notifier.
public struct DeliveryJob: Sendable {
    /// The journal's delivery id.
    public var id: Int64
    public var eventID: String
    /// The decoded event when it came straight from a request; nil when read back from the
    /// journal (retries, recovery), in which case the dispatcher decodes the stored body.
    public var event: Event?
    /// 1 for the first attempt.
    public var attempt: Int
    /// The stored event, when the sweep read it along with the delivery.
    public var stored: StoredEvent?

    public init(id: Int64, eventID: String, event: Event?, attempt: Int, stored: StoredEvent? = nil) {
        self.id = id
        self.eventID = eventID
        self.event = event
        self.attempt = attempt
        self.stored = stored
    }
}

/// Fans accepted events out to notifiers, each through its own bounded queue.
///
/// Publishing never waits: a notifier whose queue is full is reported back to the caller
/// instead of slowing everyone else down. Nothing is lost that way, because every delivery
/// is already in the journal and the notifier's dispatcher picks it up from there.
public final class EventBus: Sendable {
    private let queues = Mutex<[String: DeliveryQueue]>([:])

    public init() {}

    /// The queue a notifier consumes from; created on first call.
    public func subscribe(_ notifier: String, capacity: Int) -> DeliveryQueue {
        queues.withLock { q in
            if let existing = q[notifier] { return existing }
            let made = DeliveryQueue(name: notifier, capacity: capacity)
            q[notifier] = made
            return made
        }
    }

    /// Offers each delivery to its notifier's queue. Returns the notifiers whose queue was
    /// full (or missing); those deliveries stay pending in the journal.
    @discardableResult
    public func publish(_ event: Event, deliveries: [String: Int64]) -> [String] {
        let targets = queues.withLock { q in deliveries.map { ($0.key, $0.value, q[$0.key]) } }
        var overflowed: [String] = []
        for (name, id, queue) in targets {
            guard let queue, queue.offer(DeliveryJob(id: id, eventID: event.id, event: event, attempt: 1)) != .full else {
                overflowed.append(name)
                continue
            }
        }
        return overflowed
    }

    /// Ends every queue: consumers drain what is buffered and stop.
    public func finish() {
        for q in queues.withLock({ Array($0.values) }) { q.finish() }
    }
}

/// A bounded queue of deliveries for one notifier that never holds the same delivery twice.
public final class DeliveryQueue: Sendable {
    public enum OfferResult: Sendable, Equatable { case queued, alreadyQueued, full }

    public let name: String
    public let capacity: Int
    /// The deliveries, in order. One consumer.
    public let jobs: AsyncStream<DeliveryJob>
    private let continuation: AsyncStream<DeliveryJob>.Continuation
    /// Ids queued or being delivered; released by ``complete(_:)``.
    private let claimed = Mutex<Set<Int64>>([])

    init(name: String, capacity: Int) {
        self.name = name
        self.capacity = capacity
        (jobs, continuation) = AsyncStream.makeStream(of: DeliveryJob.self, bufferingPolicy: .bufferingOldest(capacity))
    }

    /// Queues a delivery unless it is already queued or running, or the queue is full.
    public func offer(_ job: DeliveryJob) -> OfferResult {
        guard claimed.withLock({ $0.insert(job.id).inserted }) else { return .alreadyQueued }
        switch continuation.yield(job) {
        case .enqueued: return .queued
        case .dropped, .terminated:
            _ = claimed.withLock { $0.remove(job.id) }
            return .full
        @unknown default:
            _ = claimed.withLock { $0.remove(job.id) }
            return .full
        }
    }

    /// The delivery left the queue and finished (whatever its outcome).
    public func complete(_ id: Int64) {
        _ = claimed.withLock { $0.remove(id) }
    }

    /// Deliveries queued or running.
    public var depth: Int { claimed.withLock { $0.count } }

    func finish() { continuation.finish() }
}

/// Which notifiers get an event, with which template: the `routes:` of the configuration.
///
/// Routes are tried in order; a notifier named by several matching routes gets the event
/// once, rendered as the first of them says.
public struct RouteTable: Sendable {
    public struct Target: Sendable, Equatable {
        public var notifier: String
        public var template: String?
        public var locale: HeraldLocale?
        public var options: [String: String]
    }

    public let routes: [HeraldConfig.Route]

    public init(routes: [HeraldConfig.Route]) { self.routes = routes }

    public func targets(for eventName: String) -> [Target] {
        var seen = Set<String>()
        var out: [Target] = []
        for route in routes where route.matches(eventName) {
            for name in route.notify where seen.insert(name).inserted {
                out.append(Target(notifier: name, template: route.template, locale: route.locale, options: route.options))
            }
        }
        return out
    }

    public func target(for eventName: String, notifier: String) -> Target? {
        targets(for: eventName).first { $0.notifier == notifier }
    }
}
