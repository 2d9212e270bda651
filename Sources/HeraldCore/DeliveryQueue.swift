import Synchronization

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

    /// The next buffered delivery, without waiting: nil when none is buffered.
    func takeBuffered() -> DeliveryJob? {
        state.withLock { $0.buffer.popFirst() }
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
