import Foundation

/// Where accepted events and their deliveries are kept until every delivery is done.
///
/// Herald answers 2xx only after ``append(_:)`` returns, so whatever the journal has
/// committed survives a crash; on start, every delivery that is neither delivered nor dead
/// is dispatched again. The default implementation is ``SQLiteJournal``; ``MemoryJournal``
/// keeps nothing across restarts and exists for tests and dry runs.
public protocol Journal: Sendable {
    /// Durably records an event and one pending delivery per notifier, unless the endpoint
    /// has seen the same dedupe key within the dedupe TTL.
    /// Event ids must be unique: a second append with a stored id fails.
    func append(_ entry: JournalEntry) async throws -> AppendResult

    /// Pending deliveries for `notifier` whose next attempt is due at `now`, oldest first.
    func due(notifier: String, now: Date, limit: Int) async throws -> [DeliveryRecord]

    /// ``due(notifier:now:limit:)`` with each delivery's stored event, read together: the
    /// dispatcher's sweep feeds its queue from this (retries, recovery, overflow).
    func dueWithEvents(notifier: String, now: Date, limit: Int) async throws -> [DueDelivery]

    /// The stored event with its raw body, to render it again after a restart.
    func event(id: String) async throws -> StoredEvent?

    /// Starts an attempt: a `pending` delivery becomes `delivering` with attempts + 1.
    /// Returns false, changing nothing, if the delivery is not pending (another attempt
    /// already took it, or it is done): the caller must then not deliver it.
    func claim(_ delivery: Int64) async throws -> Bool
    /// Undoes a claim whose attempt never started (Herald stopped first): `delivering`
    /// becomes `pending` again, attempts − 1, so the delivery looks untouched.
    func release(_ delivery: Int64) async throws
    func markDelivered(_ delivery: Int64) async throws
    /// Back to `pending`, to be tried again at `next`.
    func markRetry(_ delivery: Int64, next: Date, error: String) async throws
    func markDead(_ delivery: Int64, error: String) async throws

    /// After a crash: deliveries left `delivering` were in flight when the process stopped.
    ///
    /// Each one's count of interruptions goes up by one. Those that reach `deadAfter` become
    /// dead with the reason "the process stopped during this delivery N times", so a delivery
    /// that crashes Herald (whatever the cause) cannot keep it down; the rest become
    /// `pending` and due now.
    func recoverInFlight(deadAfter: Int) async throws -> Recovery

    /// Deliveries not yet delivered or dead (for backpressure and `/metrics`).
    func undeliveredCount() async throws -> Int

    /// Deliveries in a state, newest first.
    func deliveries(state: DeliveryState?, notifier: String?, limit: Int) async throws -> [DeliveryRecord]
    func delivery(id: Int64) async throws -> DeliveryRecord?
    /// Dead (or pending) deliveries become pending and due now. Returns how many changed.
    func retry(ids: [Int64]?, allDead: Bool) async throws -> Int
    /// Removes events whose deliveries are all delivered or dead and that arrived before
    /// `cutoff`, and dedupe keys older than the dedupe TTL. Returns events removed.
    func prune(before cutoff: Date) async throws -> Int
    /// Number of deliveries per notifier and state.
    func counts() async throws -> [DeliveryCount]
}

/// What ``Journal/append(_:)`` stores for one accepted webhook.
public struct JournalEntry: Sendable {
    public var eventID: String
    public var endpoint: String
    public var eventName: String
    public var receivedAt: Date
    public var body: Data
    /// nil: never treated as a duplicate.
    public var dedupeKey: String?
    /// One delivery per notifier name.
    public var notifiers: [String]

    public init(event: Event, dedupeKey: String?, notifiers: [String]) {
        eventID = event.id
        endpoint = event.endpoint
        eventName = event.name
        receivedAt = event.receivedAt
        body = event.body
        self.dedupeKey = dedupeKey
        self.notifiers = notifiers
    }
}

/// What ``Journal/recoverInFlight(deadAfter:)`` did.
public struct Recovery: Sendable, Equatable {
    /// Deliveries made pending again.
    public var requeued: Int
    /// Deliveries set aside as dead because the process stopped during them too often.
    public var setAside: [Int64]

    public init(requeued: Int, setAside: [Int64]) {
        self.requeued = requeued
        self.setAside = setAside
    }

    /// The reason stored on a delivery set aside after `count` interruptions.
    public static func reason(interruptions count: Int) -> String {
        "the process stopped during this delivery \(count) times"
    }
}

public enum AppendResult: Sendable, Equatable {
    /// Stored; `deliveries` maps notifier name to delivery id.
    case accepted(deliveries: [String: Int64])
    /// Seen before: the id of the event that was stored the first time.
    case duplicate(of: String)
}

public enum DeliveryState: String, Sendable, CaseIterable, Codable {
    case pending, delivering, delivered, dead
}

public struct DeliveryRecord: Sendable, Equatable {
    public var id: Int64
    public var eventID: String
    public var eventName: String
    public var notifier: String
    public var state: DeliveryState
    public var attempts: Int
    public var nextAttemptAt: Date?
    public var lastError: String?
    public var receivedAt: Date
    public var updatedAt: Date

    public init(id: Int64, eventID: String, eventName: String, notifier: String, state: DeliveryState,
                attempts: Int, nextAttemptAt: Date?, lastError: String?, receivedAt: Date, updatedAt: Date) {
        self.id = id
        self.eventID = eventID
        self.eventName = eventName
        self.notifier = notifier
        self.state = state
        self.attempts = attempts
        self.nextAttemptAt = nextAttemptAt
        self.lastError = lastError
        self.receivedAt = receivedAt
        self.updatedAt = updatedAt
    }
}

/// A due delivery and the event it delivers (nil if the event is gone).
public struct DueDelivery: Sendable {
    public var record: DeliveryRecord
    public var event: StoredEvent?
    public init(record: DeliveryRecord, event: StoredEvent?) {
        self.record = record
        self.event = event
    }
}

public struct StoredEvent: Sendable {
    public var id: String
    public var endpoint: String
    public var name: String
    public var receivedAt: Date
    public var body: Data
    public init(id: String, endpoint: String, name: String, receivedAt: Date, body: Data) {
        self.id = id
        self.endpoint = endpoint
        self.name = name
        self.receivedAt = receivedAt
        self.body = body
    }
}

public struct DeliveryCount: Sendable, Equatable {
    public var notifier: String
    public var state: DeliveryState
    public var count: Int
    public init(notifier: String, state: DeliveryState, count: Int) {
        self.notifier = notifier
        self.state = state
        self.count = count
    }
}

/// A journal in memory: same behaviour as ``SQLiteJournal`` but nothing survives the process.
public actor MemoryJournal: Journal {
    private var events: [String: StoredEvent] = [:]
    private var records: [Int64: DeliveryRecord] = [:]
    private var dedupe: [String: (eventID: String, at: Date)] = [:]
    /// Times the process stopped while a delivery was in flight, by delivery id.
    private var interruptions: [Int64: Int] = [:]
    private var nextID: Int64 = 1
    private let dedupeTTL: TimeInterval
    private let clock: @Sendable () -> Date

    public init(dedupeTTL: Duration = .seconds(7 * 86400), clock: @escaping @Sendable () -> Date = { Date() }) {
        self.dedupeTTL = dedupeTTL.seconds
        self.clock = clock
    }

    public func append(_ entry: JournalEntry) -> AppendResult {
        let now = clock()
        if let key = entry.dedupeKey.map({ entry.endpoint + "\u{0}" + $0 }) {
            if let seen = dedupe[key], now.timeIntervalSince(seen.at) < dedupeTTL { return .duplicate(of: seen.eventID) }
            dedupe[key] = (entry.eventID, now)
        }
        events[entry.eventID] = StoredEvent(id: entry.eventID, endpoint: entry.endpoint, name: entry.eventName,
                                            receivedAt: entry.receivedAt, body: entry.body)
        var ids: [String: Int64] = [:]
        for notifier in entry.notifiers where ids[notifier] == nil {
            let id = nextID
            nextID += 1
            records[id] = DeliveryRecord(id: id, eventID: entry.eventID, eventName: entry.eventName, notifier: notifier,
                                         state: .pending, attempts: 0, nextAttemptAt: entry.receivedAt, lastError: nil,
                                         receivedAt: entry.receivedAt, updatedAt: now)
            ids[notifier] = id
        }
        return .accepted(deliveries: ids)
    }

    public func due(notifier: String, now: Date, limit: Int) -> [DeliveryRecord] {
        let due = records.values.filter {
            $0.notifier == notifier && $0.state == .pending && ($0.nextAttemptAt ?? .distantPast) <= now
        }
        return Array(due.sorted { $0.id < $1.id }.prefix(limit))
    }

    public func dueWithEvents(notifier: String, now: Date, limit: Int) -> [DueDelivery] {
        due(notifier: notifier, now: now, limit: limit).map { DueDelivery(record: $0, event: events[$0.eventID]) }
    }

    public func event(id: String) -> StoredEvent? { events[id] }

    private func update(_ id: Int64, _ change: (inout DeliveryRecord) -> Void) {
        guard var record = records[id] else { return }
        change(&record)
        record.updatedAt = clock()
        records[id] = record
    }

    public func claim(_ delivery: Int64) -> Bool {
        guard records[delivery]?.state == .pending else { return false }
        update(delivery) { $0.state = .delivering; $0.attempts += 1 }
        return true
    }

    public func release(_ delivery: Int64) {
        guard records[delivery]?.state == .delivering else { return }
        update(delivery) { $0.state = .pending; $0.attempts -= 1 }
    }

    public func markDelivered(_ delivery: Int64) {
        update(delivery) { $0.state = .delivered; $0.nextAttemptAt = nil }
    }

    public func markRetry(_ delivery: Int64, next: Date, error: String) {
        update(delivery) { $0.state = .pending; $0.nextAttemptAt = next; $0.lastError = error }
    }

    public func markDead(_ delivery: Int64, error: String) {
        update(delivery) { $0.state = .dead; $0.nextAttemptAt = nil; $0.lastError = error }
    }

    public func recoverInFlight(deadAfter: Int) -> Recovery {
        let now = clock()
        var recovery = Recovery(requeued: 0, setAside: [])
        for id in records.values.filter({ $0.state == .delivering }).map(\.id).sorted() {
            let count = interruptions[id, default: 0] + 1
            interruptions[id] = count
            if count >= deadAfter {
                update(id) { $0.state = .dead; $0.nextAttemptAt = nil; $0.lastError = Recovery.reason(interruptions: count) }
                recovery.setAside.append(id)
            } else {
                update(id) { $0.state = .pending; $0.nextAttemptAt = now }
                recovery.requeued += 1
            }
        }
        return recovery
    }

    public func undeliveredCount() -> Int {
        records.values.count { $0.state == .pending || $0.state == .delivering }
    }

    public func deliveries(state: DeliveryState?, notifier: String?, limit: Int) -> [DeliveryRecord] {
        let list = records.values.filter { (state == nil || $0.state == state) && (notifier == nil || $0.notifier == notifier) }
        return Array(list.sorted { $0.id > $1.id }.prefix(limit))
    }

    public func delivery(id: Int64) -> DeliveryRecord? { records[id] }

    public func retry(ids: [Int64]?, allDead: Bool) -> Int {
        let now = clock()
        let targets = allDead ? records.values.filter { $0.state == .dead }.map(\.id) : (ids ?? [])
        var changed = 0
        for id in targets where records[id].map({ $0.state == .dead || $0.state == .pending }) == true {
            update(id) { $0.state = .pending; $0.nextAttemptAt = now }
            changed += 1
        }
        return changed
    }

    public func prune(before cutoff: Date) -> Int {
        let now = clock()
        dedupe = dedupe.filter { now.timeIntervalSince($0.value.at) < dedupeTTL }
        var removed = 0
        for (id, event) in events where event.receivedAt < cutoff {
            let mine = records.values.filter { $0.eventID == id }
            guard mine.allSatisfy({ $0.state == .delivered || $0.state == .dead }) else { continue }
            for r in mine { records[r.id] = nil; interruptions[r.id] = nil }
            events[id] = nil
            removed += 1
        }
        return removed
    }

    public func counts() -> [DeliveryCount] {
        var table: [String: [DeliveryState: Int]] = [:]
        for r in records.values { table[r.notifier, default: [:]][r.state, default: 0] += 1 }
        return table.keys.sorted().flatMap { n in
            DeliveryState.allCases.compactMap { s in table[n]?[s].map { DeliveryCount(notifier: n, state: s, count: $0) } }
        }
    }
}
