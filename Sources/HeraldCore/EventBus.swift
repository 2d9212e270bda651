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
/// Routes are tried in order. A route matches an event when one of its `events` patterns
/// matches the event's name and every condition of its filter holds. A matching route sends
/// the event to each notifier it lists that no earlier matching route has named, rendered as
/// that route says: a notifier gets an event once. Routing stops at the first matching route
/// unless that route has `continue: true`, in which case later routes are tried too.
public struct RouteTable: Sendable {
    /// One notifier that gets the event, and how it is rendered.
    public struct Target: Sendable, Equatable {
        public var notifier: String
        public var template: String?
        public var locale: HeraldLocale?
        public var options: [String: String]
        /// The index of the route that chose this notifier.
        public var route: Int
    }

    /// What one route did with an event (``explain(_:)``, for `herald routes test`).
    public enum Step: Sendable, Equatable {
        /// It matched; `added` are the notifiers it listed that no earlier route had named.
        case matched(added: [String], continues: Bool)
        /// None of its `events` patterns matches the event's name.
        case nameDiffers
        /// Its name matched but this condition (as written) does not hold.
        case conditionFailed(String)
        /// An earlier route (this index) matched without `continue: true`.
        case notTried(after: Int)
    }

    public let routes: [HeraldConfig.Route]

    public init(routes: [HeraldConfig.Route]) { self.routes = routes }

    /// The notifiers that get `event`, in route order.
    public func targets(for event: Event) -> [Target] { walk(event, record: nil) }

    /// How `notifier` renders `event`, or nil if no route sends it there.
    public func target(for event: Event, notifier: String) -> Target? {
        targets(for: event).first { $0.notifier == notifier }
    }

    /// The target route `index` would make for `notifier` if it matched; nil if the route
    /// does not list it.
    public func target(route index: Int, notifier: String) -> Target? {
        guard routes.indices.contains(index), routes[index].notify.contains(notifier) else { return nil }
        return Target(route: routes[index], index: index, notifier: notifier)
    }

    /// What every route did with `event`, and the resulting targets.
    public func explain(_ event: Event) -> (steps: [Step], targets: [Target]) {
        var steps: [Step] = []
        let targets = walk(event) { steps.append($0) }
        return (steps, targets)
    }

    /// The one routing loop; `record` hears each route's step in order.
    private func walk(_ event: Event, record: ((Step) -> Void)?) -> [Target] {
        var seen = Set<String>()
        var out: [Target] = []
        for (index, route) in routes.enumerated() {
            guard route.matches(event.name) else {
                record?(.nameDiffers)
                continue
            }
            if !route.filter.isEmpty, let failed = route.filter.firstFailure(for: event) {
                record?(.conditionFailed(failed.description))
                continue
            }
            let before = out.count
            for name in route.notify where seen.insert(name).inserted {
                out.append(Target(route: route, index: index, notifier: name))
            }
            record?(.matched(added: out[before...].map(\.notifier), continues: route.continues))
            if !route.continues {
                if let record { for _ in (index + 1)..<routes.count { record(.notTried(after: index)) } }
                break
            }
        }
        return out
    }
}

extension RouteTable.Target {
    init(route: HeraldConfig.Route, index: Int, notifier: String) {
        self.init(notifier: notifier, template: route.template, locale: route.locale, options: route.options, route: index)
    }
}
