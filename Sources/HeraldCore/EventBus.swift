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
    public func reserve(_ notifiers: [String]) -> Set<String> {
        let targets = queues.withLock { q in notifiers.map { ($0, q[$0]) } }
        var reserved = Set<String>()
        for (name, queue) in targets where !reserved.contains(name) {
            if queue?.reserve() == true { reserved.insert(name) }
        }
        return reserved
    }

    /// Gives back reservations that will not be used (the append failed or was a duplicate).
    public func cancel(_ reserved: Set<String>) {
        let targets = queues.withLock { q in reserved.compactMap { q[$0] } }
        for queue in targets { queue.cancelReservation() }
    }

    /// Hands each reserved notifier its delivery of a stored event. A reservation whose
    /// notifier got no delivery id is given back.
    public func publish(_ event: Event, deliveries: [String: Int64], reserved: Set<String>) {
        let targets = queues.withLock { q in reserved.map { ($0, q[$0]) } }
        for (name, queue) in targets {
            guard let queue else { continue }
            guard let id = deliveries[name] else {
                queue.cancelReservation()
                continue
            }
            queue.fulfil(DeliveryJob(id: id, eventID: event.id, event: event, attempt: 1))
        }
    }

    /// Ends every queue: consumers drain what is buffered and stop.
    public func finish() {
        for q in queues.withLock({ Array($0.values) }) { q.finish() }
    }
}

/// A bounded queue of leased deliveries for one notifier that never holds the same delivery
/// twice. Its ids (queued, reserved or running) are the leases its dispatcher keeps renewed.
public final class DeliveryQueue: Sendable {
    public enum OfferResult: Sendable, Equatable { case queued, alreadyQueued, full }

    public let name: String
    public let capacity: Int
    /// The deliveries, in order. One consumer.
    public let jobs: AsyncStream<DeliveryJob>
    private let continuation: AsyncStream<DeliveryJob>.Continuation

    private struct State {
        /// Ids queued or being delivered; released by ``complete(_:)``.
        var held: Set<Int64> = []
        /// Places promised to events being stored.
        var reserved = 0
        /// Waiting for the depth to fall to half the capacity (the sweep waits for room), by ticket.
        var roomWaiters: [UInt64: RoomWaiter] = [:]
        var nextTicket: UInt64 = 0
    }

    private enum RoomWaiter {
        /// The ticket is out; its continuation is not registered yet.
        case registering
        /// Cancelled before its continuation was registered.
        case cancelled
        case waiting(CheckedContinuation<Void, Never>)
    }

    private let state = Mutex(State())

    init(name: String, capacity: Int) {
        self.name = name
        self.capacity = capacity
        (jobs, continuation) = AsyncStream.makeStream(of: DeliveryJob.self, bufferingPolicy: .unbounded)
    }

    /// Queues a delivery unless it is already queued or running, or the queue is full.
    public func offer(_ job: DeliveryJob) -> OfferResult {
        let result = state.withLock { s -> OfferResult in
            if s.held.contains(job.id) { return .alreadyQueued }
            guard s.held.count + s.reserved < capacity else { return .full }
            s.held.insert(job.id)
            return .queued
        }
        if result == .queued { yield(job) }
        return result
    }

    /// Promises a place for a delivery about to be stored; false when the queue is full.
    func reserve() -> Bool {
        state.withLock { s in
            guard s.held.count + s.reserved < capacity else { return false }
            s.reserved += 1
            return true
        }
    }

    /// Gives a reserved place back.
    func cancelReservation() {
        let waiters = state.withLock { s in
            s.reserved = max(0, s.reserved - 1)
            return takeRoomWaiters(&s)
        }
        for w in waiters { w.resume() }
    }

    /// Queues a delivery in a reserved place (the reservation guarantees room).
    func fulfil(_ job: DeliveryJob) {
        let fresh = state.withLock { s in
            s.reserved = max(0, s.reserved - 1)
            return s.held.insert(job.id).inserted
        }
        if fresh { yield(job) }
    }

    private func yield(_ job: DeliveryJob) {
        if case .terminated = continuation.yield(job) { complete(job.id) }
    }

    /// The delivery left the queue and finished (whatever its outcome).
    public func complete(_ id: Int64) {
        let waiters = state.withLock { s in
            s.held.remove(id)
            return takeRoomWaiters(&s)
        }
        for w in waiters { w.resume() }
    }

    private func hasRoom(_ s: State) -> Bool { s.held.count + s.reserved <= capacity / 2 }

    private func takeRoomWaiters(_ s: inout State, all: Bool = false) -> [CheckedContinuation<Void, Never>] {
        guard !s.roomWaiters.isEmpty, all || hasRoom(s) else { return [] }
        var woken: [CheckedContinuation<Void, Never>] = []
        for (ticket, waiter) in s.roomWaiters {
            if case .waiting(let c) = waiter {
                woken.append(c)
                s.roomWaiters[ticket] = nil
            }
        }
        return woken
    }

    /// Returns once the queue has drained to half its capacity, at once if it has, or as soon
    /// as the task is cancelled or the queue finished.
    func waitForRoom() async {
        let ticket = state.withLock { s in
            defer { s.nextTicket += 1 }
            s.roomWaiters[s.nextTicket] = .registering
            return s.nextTicket
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { s in
                    if case .cancelled = s.roomWaiters[ticket] { s.roomWaiters[ticket] = nil; return true }
                    if hasRoom(s) { s.roomWaiters[ticket] = nil; return true }
                    s.roomWaiters[ticket] = .waiting(continuation)
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
                switch s.roomWaiters[ticket] {
                case .waiting(let c):
                    s.roomWaiters[ticket] = nil
                    return c
                case .registering:
                    s.roomWaiters[ticket] = .cancelled
                    return nil
                case .cancelled, nil:
                    return nil
                }
            }
            waiter?.resume()
        }
    }

    /// Wakes whoever waits for room (shutdown).
    func wakeRoomWaiters() {
        let waiters = state.withLock { s in takeRoomWaiters(&s, all: true) }
        for w in waiters { w.resume() }
    }

    /// Deliveries queued, reserved or running.
    public var depth: Int { state.withLock { $0.held.count + $0.reserved } }

    /// The deliveries this queue holds (queued or running): the leases to keep renewed.
    var heldIDs: [Int64] { state.withLock { Array($0.held) } }

    func finish() {
        continuation.finish()
        wakeRoomWaiters()
    }
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
