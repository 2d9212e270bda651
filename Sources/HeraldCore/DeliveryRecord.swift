import Foundation

// What a journal hands out and reads back: leases of due work, the outcomes written after an
// attempt, deliveries and events as stored, and counts.

/// What ``Journal/lease(_:)`` asks for.
public struct LeaseRequest: Sendable {
    public var notifier: String
    public var owner: String
    /// Due means due at or before this time; leases that end at or before it have expired.
    public var now: Date
    /// The end of the leases taken.
    public var until: Date
    public var limit: Int
    /// Interruptions after which a delivery is set aside as dead instead of taken.
    public var deadAfter: Int

    public init(notifier: String, owner: String, now: Date, until: Date, limit: Int, deadAfter: Int) {
        self.notifier = notifier
        self.owner = owner
        self.now = now
        self.until = until
        self.limit = limit
        self.deadAfter = deadAfter
    }
}

/// What ``Journal/lease(_:)`` took.
public struct LeaseResult: Sendable {
    /// Now leased to the caller, oldest due first, each with its stored event (nil if the
    /// event is gone).
    public var deliveries: [DueDelivery]
    /// How many of them were taken over from an expired lease.
    public var takenOver: Int
    /// Deliveries set aside as dead because they were interrupted too often.
    public var setAside: [DeliveryRecord]
    /// When the notifier's next delivery that was not taken becomes due, or its lease expires,
    /// as the lease saw the journal: the dispatcher's sweep sleeps until then unless something
    /// wakes it. `.distantFuture` when nothing is waiting; nil when the journal does not say,
    /// and the sweep then looks again after a short interval, as it did before journals said.
    public var nextDue: Date?

    public init(deliveries: [DueDelivery] = [], takenOver: Int = 0, setAside: [DeliveryRecord] = [],
                nextDue: Date? = nil) {
        self.deliveries = deliveries
        self.takenOver = takenOver
        self.setAside = setAside
        self.nextDue = nextDue
    }
}

/// The outcome of an attempt, as ``Journal/record(_:owner:)`` writes it.
public enum DeliveryOutcome: Sendable, Equatable {
    case delivered(Int64)
    /// Pending again, due at `at`.
    case retry(Int64, at: Date, error: String)
    case dead(Int64, error: String)
    /// Final without being sent, by rule (not an error).
    case skipped(Int64, reason: String)
    /// The attempt never started (shutdown): pending and due now, its attempt uncounted.
    case released(Int64)
    /// Not attempted now by rule (quiet hours): pending and due at `until`, its attempt
    /// uncounted, `reason` shown as its last error.
    case postponed(Int64, until: Date, reason: String)

    public var id: Int64 {
        switch self {
        case .delivered(let id), .retry(let id, _, _), .dead(let id, _), .skipped(let id, _), .released(let id),
             .postponed(let id, _, _): id
        }
    }
}

/// The interruption rule shared by every journal.
public enum Interruptions {
    /// The reason stored on a delivery set aside after `count` interruptions.
    public static func reason(_ count: Int) -> String {
        "the process stopped during this delivery \(count) times"
    }
}

/// Which deliveries ``Journal/deliveries(_:)`` lists.
public struct DeliveryQuery: Sendable, Equatable {
    public var id: Int64?
    public var state: DeliveryState?
    public var notifier: String?
    public var limit: Int

    public init(id: Int64? = nil, state: DeliveryState? = nil, notifier: String? = nil, limit: Int = 100) {
        self.id = id
        self.state = state
        self.notifier = notifier
        self.limit = limit
    }
}

/// Which deliveries ``Journal/retry(_:)`` revives.
public enum RetrySelection: Sendable, Equatable {
    case ids([Int64])
    case allDead
}

public enum DeliveryState: String, Sendable, CaseIterable, Codable {
    /// Waiting until its due time.
    case pending
    /// Held by an instance that is attempting it (or about to).
    case leased
    case delivered
    /// Failed for good; `herald deliveries retry` sends it again.
    case dead
    /// Final without being sent, by rule.
    case skipped

    /// Delivered, dead or skipped: nothing more will happen unless someone retries it.
    public var isFinal: Bool { self == .delivered || self == .dead || self == .skipped }
}

public struct DeliveryRecord: Sendable, Equatable {
    public var id: Int64
    public var eventID: String
    public var eventName: String
    public var notifier: String
    public var state: DeliveryState
    /// Attempts started, the one in progress included.
    public var attempts: Int
    /// When a pending delivery is due; nil once final.
    public var dueAt: Date?
    public var lastError: String?
    /// Who holds a leased delivery, and until when.
    public var owner: String?
    public var leaseUntil: Date?
    /// Times its lease was taken over after the owner stopped during an attempt.
    public var interruptions: Int
    /// For a reminder: its booking, how many seconds before the start, and when it is meant
    /// to go out (kept once it is final).
    public var bookingKey: String?
    public var reminderOffset: Int?
    public var remindAt: Date?
    public var receivedAt: Date
    public var updatedAt: Date

    public init(id: Int64, eventID: String, eventName: String, notifier: String, state: DeliveryState,
                attempts: Int, dueAt: Date?, lastError: String?, owner: String? = nil, leaseUntil: Date? = nil,
                interruptions: Int = 0, bookingKey: String? = nil, reminderOffset: Int? = nil, remindAt: Date? = nil,
                receivedAt: Date, updatedAt: Date) {
        self.id = id
        self.eventID = eventID
        self.eventName = eventName
        self.notifier = notifier
        self.state = state
        self.attempts = attempts
        self.dueAt = dueAt
        self.lastError = lastError
        self.owner = owner
        self.leaseUntil = leaseUntil
        self.interruptions = interruptions
        self.bookingKey = bookingKey
        self.reminderOffset = reminderOffset
        self.remindAt = remindAt
        self.receivedAt = receivedAt
        self.updatedAt = updatedAt
    }
}

/// A delivery and the event it delivers (nil if the event is gone).
public struct DueDelivery: Sendable {
    public var record: DeliveryRecord
    public var event: StoredEvent?
    public init(record: DeliveryRecord, event: StoredEvent?) {
        self.record = record
        self.event = event
    }
}

public struct StoredEvent: Sendable, Equatable {
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

extension [DeliveryCount] {
    /// By notifier name, then in ``DeliveryState`` order: the order every journal answers in.
    public func inJournalOrder() -> [DeliveryCount] {
        let rank = { (state: DeliveryState) in DeliveryState.allCases.firstIndex(of: state) ?? 0 }
        return sorted { ($0.notifier, rank($0.state)) < ($1.notifier, rank($1.state)) }
    }
}
