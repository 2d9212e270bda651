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

/// A bounded queue of leased deliveries for one notifier that never holds the same delivery
/// twice. Its ids (queued, reserved or running) are the leases its dispatcher keeps renewed.
public final class DeliveryQueue: Sendable {
    /// Wakes the dispatcher's sweep when work for this notifier is stored in the journal.
    let alarm = SweepAlarm()
    public enum OfferResult: Sendable, Equatable { case queued, alreadyQueued, full }

    public let name: String
    public let capacity: Int

    /// The deliveries, in order, for the queue's one consumer (its dispatcher). The sequence
    /// ends once the queue is finished and drained, or when the consuming task is cancelled.
    public var jobs: Jobs { Jobs(queue: self) }

    /// The queue's deliveries as an asynchronous sequence.
    ///
    /// Not an `AsyncStream`, whose generic storage looked its element and deque types up at
    /// run time on every yield and `next`, beside a deque of its own: here the buffer is part
    /// of the queue's state and the waiting consumer is one continuation under its lock.
    public struct Jobs: AsyncSequence, Sendable {
        let queue: DeliveryQueue

        public struct AsyncIterator: AsyncIteratorProtocol {
            let queue: DeliveryQueue
            public mutating func next() async -> DeliveryJob? { await queue.next() }
        }

        public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(queue: queue) }
    }

    /// Queued deliveries not yet taken by the consumer, first in first out.
    private struct Buffer {
        /// Taken slots are nil (so their events are released) until the front is compacted.
        private var items: [DeliveryJob?] = []
        private var head = 0

        mutating func append(_ job: DeliveryJob) { items.append(job) }

        mutating func popFirst() -> DeliveryJob? {
            guard head < items.count else { return nil }
            let job = items[head]
            items[head] = nil
            head += 1
            if head == items.count {
                items.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 64, head * 2 >= items.count {
                items.removeFirst(head)
                head = 0
            }
            return job
        }
    }

    private struct State {
        /// Ids queued or being delivered, each with the place it was queued in; released by
        /// ``complete(_:)``.
        var held: [Int64: UInt64] = [:]
        var nextPlace: UInt64 = 1
        var buffer = Buffer()
        /// The consumer, waiting for the next delivery.
        var consumer: UnsafeContinuation<DeliveryJob?, Never>?
        /// No more deliveries are taken: the queue was finished, or its consumer cancelled
        /// (which also emptied the buffer).
        var finished = false
        /// Places promised to events being stored.
        var reserved = 0
        /// Waiting for the depth to fall to half the capacity (the sweep waits for room), by ticket.
        var roomWaiters: [UInt64: RoomWaiter] = [:]
        var nextTicket: UInt64 = 0

        /// Holds `id` in a new place.
        mutating func hold(_ id: Int64) -> UInt64 {
            defer { nextPlace += 1 }
            held[id] = nextPlace
            return nextPlace
        }
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
    }

    /// Queues a delivery unless it is already queued or running, or the queue is full.
    public func offer(_ job: DeliveryJob) -> OfferResult {
        var job = job
        let result = state.withLock { s -> OfferResult in
            if s.held[job.id] != nil { return .alreadyQueued }
            guard s.held.count + s.reserved < capacity else { return .full }
            job.place = s.hold(job.id)
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
        var job = job
        let fresh = state.withLock { s in
            s.reserved = max(0, s.reserved - 1)
            guard s.held[job.id] == nil else { return false }
            job.place = s.hold(job.id)
            return true
        }
        if fresh { yield(job) }
    }

    /// Hands `job` to the waiting consumer, or buffers it; once the queue is finished it is
    /// released at once (its lease then lapses and the journal has it due again).
    private func yield(_ job: DeliveryJob) {
        enum Handoff { case buffered, consumer(UnsafeContinuation<DeliveryJob?, Never>), finished }
        let handoff = state.withLock { s -> Handoff in
            if s.finished { return .finished }
            if let consumer = s.consumer {
                s.consumer = nil
                return .consumer(consumer)
            }
            s.buffer.append(job)
            return .buffered
        }
        switch handoff {
        case .buffered: break
        case .consumer(let consumer): consumer.resume(returning: job)
        case .finished: complete(job)
        }
    }

    /// The next delivery: buffered, or the next one yielded; nil once the queue is finished
    /// and drained, or the calling task is cancelled (which ends the sequence).
    func next() async -> DeliveryJob? {
        enum Take { case job(DeliveryJob), end, wait }
        func take(_ s: inout State) -> Take {
            if let job = s.buffer.popFirst() { return .job(job) }
            return s.finished ? .end : .wait
        }
        switch state.withLock({ take(&$0) }) {
        case .job(let job): return job
        case .end: return nil
        case .wait: break
        }
        return await withTaskCancellationHandler {
            // Unsafe, not checked: the continuation is resumed exactly once, by whoever takes
            // it out of `consumer` under the lock (a yield, finish or the cancellation).
            await withUnsafeContinuation { (continuation: UnsafeContinuation<DeliveryJob?, Never>) in
                let now = state.withLock { s -> Take in
                    let now = take(&s)
                    if case .wait = now { s.consumer = continuation }
                    return now
                }
                switch now {
                case .job(let job): continuation.resume(returning: job)
                case .end: continuation.resume(returning: nil)
                case .wait: break
                }
            }
        } onCancel: {
            let (waiting, roomWaiters) = state.withLock { s in
                s.finished = true
                // Nobody will take what is buffered: its leases are no longer renewed here
                // and lapse, so the journal has those deliveries due again.
                while let job = s.buffer.popFirst() { s.held[job.id] = nil }
                defer { s.consumer = nil }
                return (s.consumer, takeRoomWaiters(&s))
            }
            waiting?.resume(returning: nil)
            for w in roomWaiters { w.resume() }
        }
    }

    /// The delivery left the queue and finished (whatever its outcome).
    public func complete(_ id: Int64) {
        release { s in s.held[id] = nil }
    }

    /// The job, as this queue handed it out, left the queue: its place is free. Nothing happens
    /// when its place was already given back, even if the delivery was queued again since (a
    /// retry its dispatcher wrote and the sweep took at once): that later hold is not this
    /// job's to release. Internal: only a job from ``jobs`` carries its place.
    func complete(_ job: DeliveryJob) {
        release { s in if s.held[job.id] == job.place { s.held[job.id] = nil } }
    }

    private func release(_ change: (inout State) -> Void) {
        let waiters = state.withLock { s in
            change(&s)
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
    var heldIDs: [Int64] { state.withLock { Array($0.held.keys) } }

    /// Takes no more deliveries; the consumer drains what is buffered, then its sequence ends.
    func finish() {
        let waiting = state.withLock { s -> UnsafeContinuation<DeliveryJob?, Never>? in
            s.finished = true
            defer { s.consumer = nil }
            return s.consumer
        }
        waiting?.resume(returning: nil)
        wakeRoomWaiters()
    }
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
        /// The route's reminders before a booking's start, their template and grace.
        public var remind: [Duration] = []
        public var reminderTemplate: String?
        public var remindGrace: Duration = .seconds(600)
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

    /// How `notifier` renders `event`, or nil if no route sends it there: the target
    /// ``targets(for:)`` gives it, found by the same walk stopped at the first matching route
    /// that names it, without the targets of the others (the dispatcher asks this once per
    /// delivery).
    public func target(for event: Event, notifier: String) -> Target? {
        for (index, route) in routes.enumerated() where Self.refusal(of: route, for: event) == nil {
            if route.notify.contains(notifier) { return Target(route: route, index: index, notifier: notifier) }
            if !route.continues { return nil }
        }
        return nil
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

    /// Why a route does not take an event: the rule both walks apply.
    private enum Refusal { case name, condition(RouteFilter.Condition) }

    /// Why `route` does not take `event`, or nil when it does: its name matches one of its
    /// patterns and every condition holds.
    private static func refusal(of route: HeraldConfig.Route, for event: Event) -> Refusal? {
        guard route.matches(event.name) else { return .name }
        if !route.filter.isEmpty, let failed = route.filter.firstFailure(for: event) { return .condition(failed) }
        return nil
    }

    /// The one routing loop; `record` hears each route's step in order.
    private func walk(_ event: Event, record: ((Step) -> Void)?) -> [Target] {
        // Notifiers already chosen are looked for in `out` itself while there are few (a set
        // cost an allocation and a hash per notifier on every routing), in a set past 16.
        var out: [Target] = []
        var seen: Set<String>?
        func isNew(_ name: String) -> Bool {
            if seen == nil, out.count < 16 { return !out.contains { $0.notifier == name } }
            if seen == nil { seen = Set(out.map(\.notifier)) }
            return seen!.insert(name).inserted
        }
        for (index, route) in routes.enumerated() {
            switch Self.refusal(of: route, for: event) {
            case .name?:
                record?(.nameDiffers)
                continue
            case .condition(let failed)?:
                record?(.conditionFailed(failed.description))
                continue
            case nil: break
            }
            let before = out.count
            for name in route.notify where isNew(name) {
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
        self.init(notifier: notifier, template: route.template, locale: route.locale, options: route.options, route: index,
                  remind: route.remind, reminderTemplate: route.reminderTemplate, remindGrace: route.remindGrace)
    }
}
