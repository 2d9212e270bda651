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
    /// For a reminder: seconds before the start, and when it was meant to go out.
    public var reminder: (offset: Int, remindAt: Date)?
    /// Which of the queue's holds of this delivery this job is (set when it is queued), so
    /// that finishing it cannot release a later hold of the same delivery.
    var place: UInt64 = 0

    public init(id: Int64, eventID: String, event: Event?, attempt: Int, stored: StoredEvent? = nil,
                reminder: (offset: Int, remindAt: Date)? = nil) {
        self.id = id
        self.eventID = eventID
        self.event = event
        self.attempt = attempt
        self.stored = stored
        self.reminder = reminder
    }
}

/// Fans accepted events out to notifiers, each through its own bounded queue.
///
/// Publishing never waits: a place is reserved in each queue before the event is stored, and
/// a notifier whose queue is full is simply not reserved, instead of slowing everyone else
/// down. Nothing is lost that way: that delivery is stored pending in the journal, and the
/// notifier's dispatcher leases it from there once its queue has room.
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

    /// Reserves a place in each named notifier's queue for an event about to be stored.
    /// Returns the notifiers that got one: their deliveries are stored leased to this
    /// instance and handed over with ``publish(_:deliveries:reserved:)``; the others are
    /// stored pending and reach their dispatcher through the journal.
    public func reserve(_ notifiers: [String]) -> Reservation {
        let targets = queues.withLock { q in notifiers.map { ($0, q[$0]) } }
        var reserved = Reservation()
        for (name, queue) in targets where !reserved.contains(name) {
            if let queue, queue.reserve() {
                reserved.notifiers.append(name)
                reserved.queues.append(queue)
            }
        }
        return reserved
    }

    /// Gives back reservations that will not be used (the append failed or was a duplicate).
    public func cancel(_ reserved: Reservation) {
        for queue in reserved.queues { queue.cancelReservation() }
    }

    /// Hands each reserved notifier its delivery of a stored event. A reservation whose
    /// notifier got no delivery id is given back.
    public func publish(_ event: Event, deliveries: [String: Int64], reserved: Reservation) {
        for (name, queue) in zip(reserved.notifiers, reserved.queues) {
            guard let id = deliveries[name] else {
                queue.cancelReservation()
                continue
            }
            queue.fulfil(DeliveryJob(id: id, eventID: event.id, event: event, attempt: 1))
        }
    }

    /// Says that work for `notifier` was stored in the journal outside its queue, due at `at`
    /// (now when nil): its dispatcher's sweep looks for it then, instead of on a timer.
    public func stored(for notifier: String, dueAt at: Date? = nil) {
        guard let queue = queues.withLock({ $0[notifier] }) else { return }
        if let at { queue.alarm.schedule(at) } else { queue.alarm.ring() }
    }

    /// Ends every queue: consumers drain what is buffered and stop.
    public func finish() {
        for q in queues.withLock({ Array($0.values) }) { q.finish() }
    }
}

/// The places ``EventBus/reserve(_:)`` took for one event: the notifiers, each once, and
/// their queues, so that publishing or cancelling finds each queue without looking its
/// name up again. An event has a handful of notifiers: a list, searched in order, costs
/// less than hashing each name (a set and the bus's table cost 6 string hashes a request).
public struct Reservation: Sendable {
    /// The notifiers that got a place, in the order asked.
    public fileprivate(set) var notifiers: [String] = []
    fileprivate var queues: [DeliveryQueue] = []

    /// No place: every delivery is stored pending.
    public init() {}

    /// Whether `notifier` got a place.
    public func contains(_ notifier: String) -> Bool { notifiers.contains(notifier) }
}
