import Foundation
import Synchronization

/// Where accepted events and their deliveries are kept until every delivery is done.
///
/// Herald answers 2xx only after ``append(_:)`` returns, so whatever the journal has
/// committed survives a crash. Deliveries are handed out under leases: the instance that
/// accepts an event stores its deliveries already leased to itself (a first attempt then
/// costs one write, its outcome), and everything else — retries, deliveries the in-memory
/// queue could not hold, work whose owner died or stalled — is taken with ``lease(_:)`` once
/// due. The same rules serve one process on SQLite and several on a shared database.
///
/// Implementations: ``SQLiteJournal`` (the default), ``MemoryJournal`` (tests and dry runs;
/// nothing survives the process), and a PostgreSQL journal for several instances. Each
/// passes the same conformance suite.
public protocol Journal: Sendable {
    /// Durably stores the event, its deliveries (one per distinct notifier) and its dedupe key
    /// in one commit, unless the endpoint has seen the same dedupe key within the dedupe TTL.
    /// In the same commit it schedules the entry's reminders (see ``ScheduledReminder``) and,
    /// for a cancellation, skips the booking's pending reminders.
    ///
    /// A delivery whose notifier is in ``JournalEntry/leased`` is stored leased to
    /// ``JournalEntry/lease`` with its first attempt counted, for the caller to attempt at once;
    /// the others are pending, due at ``JournalEntry/receivedAt``. Event ids must be unique: a
    /// second append with a stored id fails.
    func append(_ entry: consuming JournalEntry) async throws -> AppendResult

    /// Takes due work for one notifier: up to ``LeaseRequest/limit`` deliveries that are
    /// pending and due, or leased with an expired lease, oldest due first. Each becomes leased
    /// to the caller, with one more attempt counted, and comes with its stored event.
    ///
    /// Taking over an expired lease counts an interruption (its owner died or stalled during
    /// the attempt). A delivery whose interruptions reach ``LeaseRequest/deadAfter`` is set
    /// aside as dead with ``Interruptions/reason(_:)`` instead, so a delivery that crashes
    /// Herald cannot keep it down. No delivery is handed to two callers at once.
    func lease(_ request: LeaseRequest) async throws -> LeaseResult

    /// Extends the leases `owner` holds on `ids` until `until` (a long attempt, or work that
    /// waits in memory). Returns the ids it no longer holds: taken over by another owner after
    /// their lease expired, or final.
    func renew(_ ids: [Int64], owner: String, until: Date) async throws -> [Int64]

    /// Writes attempts' outcomes, in one commit. An outcome is written only while `owner`
    /// still holds the delivery's lease; returns the ids whose outcome was not written
    /// because the lease was lost.
    func record(_ outcomes: [DeliveryOutcome], owner: String) async throws -> [Int64]

    /// Called once when an instance starts. A journal that one process uses alone (memory,
    /// SQLite) expires every lease that earlier processes left, so work in flight at a crash
    /// is due at once, and returns how many; a shared journal changes nothing and returns 0
    /// (other instances may hold live leases; a dead instance's leases expire by themselves).
    func instanceStarted(owner: String) async throws -> Int

    /// The stored event with its raw body, to render it again after a restart.
    func event(id: String) async throws -> StoredEvent?

    /// Deliveries matching `query`, newest first.
    func deliveries(_ query: DeliveryQuery) async throws -> [DeliveryRecord]

    /// Number of deliveries per notifier and state, by notifier name, then in
    /// ``DeliveryState`` order.
    func counts() async throws -> [DeliveryCount]

    /// Deliveries not yet final (pending or leased): for backpressure and `/metrics`, read at
    /// start and every 30 s. Defaults to summing ``counts()``; a journal that can count only
    /// the undelivered ones without reading every delivery should.
    func undeliveredCount() async throws -> Int

    /// Dead, skipped or pending deliveries become pending and due now. Returns how many
    /// changed (an id listed twice counts twice); leased and delivered ones are left alone.
    func retry(_ selection: RetrySelection) async throws -> Int

    /// Removes events that arrived before `cutoff` and whose deliveries are all final, with
    /// their deliveries, dedupe keys older than the dedupe TTL, and bookings that ended
    /// before ``BookingSnapshot/pruneHorizon(cutoff:now:)``. Returns events removed.
    func prune(before cutoff: Date) async throws -> Int

    /// The latest known state of bookings starting in `[from, before)`, by start then uid:
    /// the bookings projection that appends keep (see ``JournalEntry/booking``), cancelled
    /// ones included.
    func bookings(startingFrom from: Date, before: Date) async throws -> [BookingSnapshot]

    /// Returns when another process may have stored due work for `notifier`, so a dispatcher
    /// can take it before its next sweep (PostgreSQL: LISTEN/NOTIFY). Only a hint: a journal
    /// used by one process never returns (the default), and a lost notification only delays
    /// work until the sweep. Cancellation ends the wait.
    func waitForWork(notifier: String) async
}

/// A journal that can write outcomes without the writing task waiting for the commit.
///
/// A delivery's task has nothing left to do after its outcome but bookkeeping (its place in
/// the queue, a counter). With this, it hands the outcome over and ends; `done` does the
/// bookkeeping once the outcome is committed, on the journal's writer, instead of the task
/// being suspended and resumed only to finish. Journals without it are awaited as usual.
package protocol RecordingWithoutWaiting: Journal {
    /// ``Journal/record(_:owner:)``, answered through `done` (the ids whose lease was lost, or
    /// the error). `done` runs on the writer: it must be quick and must not wait for the journal.
    func record(_ outcomes: [DeliveryOutcome], owner: String,
                then done: @escaping @Sendable (Result<[Int64], any Error>) -> Void)
}

extension Journal {
    /// Waits until cancelled: in a journal no other process writes, nothing arrives unseen.
    ///
    /// A continuation, not a long `Task.sleep`: on Linux a cancelled sleep keeps its timer
    /// and its task until its deadline would have passed, and each dispatcher cancels this
    /// wait on every sweep. An hour's sleep held about 730 bytes for an hour each time: some
    /// 5 MB per notifier when idle, more while a backlog makes the sweeps quicker.
    public func waitForWork(notifier: String) async {
        let wait = CancellationWait()
        await withTaskCancellationHandler {
            await withUnsafeContinuation { wait.park($0) }
        } onCancel: {
            wait.cancel()
        }
    }

    /// One delivery by id.
    public func delivery(id: Int64) async throws -> DeliveryRecord? {
        try await deliveries(DeliveryQuery(id: id)).first
    }

    /// Deliveries not yet final, from ``counts()``.
    public func undeliveredCount() async throws -> Int {
        try await counts().filter { !$0.state.isFinal }.reduce(0) { $0 + $1.count }
    }
}

/// An owner's hold on deliveries until a time: who attempts them, and until when nobody else may.
public struct Lease: Sendable, Equatable {
    /// The instance holding the lease (see ``Lease/instanceOwner()``).
    public var owner: String
    public var until: Date

    public init(owner: String, until: Date) {
        self.owner = owner
        self.until = until
    }

    /// A name for this process among the instances sharing a journal: host, process id and a
    /// random part, so a restarted process on the same host never passes for its predecessor.
    public static func instanceOwner() -> String {
        let host = ProcessInfo.processInfo.hostName.prefix(64)
        let random = UInt32.random(in: .min ... .max)
        return "\(host)/\(ProcessInfo.processInfo.processIdentifier)/\(String(random, radix: 16))"
    }
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
    /// One delivery per distinct notifier name.
    public var notifiers: [String]
    /// Who attempts the deliveries in ``leased``, and until when.
    public var lease: Lease?
    /// Notifiers whose delivery is stored leased to ``lease`` (the caller will attempt it at
    /// once); the others are stored pending. Ignored without a lease.
    public var leased: Set<String>
    /// The booking the event is about (its uid): what its reminders are kept by.
    public var bookingKey: String?
    /// Reminders for the booking, scheduled in the same commit (see ``ScheduledReminder``).
    public var reminders: [ScheduledReminder]
    /// The booking was cancelled or declined: its pending reminders become skipped.
    public var cancelsReminders: Bool
    /// The booking's state as of this event: replaces what the bookings projection holds
    /// for its uid, in the same commit.
    public var booking: BookingSnapshot?

    public init(event: Event, dedupeKey: String?, notifiers: [String], lease: Lease? = nil, leased: Set<String> = [],
                bookingKey: String? = nil, reminders: [ScheduledReminder] = [], cancelsReminders: Bool = false,
                booking: BookingSnapshot? = nil) {
        eventID = event.id
        endpoint = event.endpoint
        eventName = event.name
        receivedAt = event.receivedAt
        body = event.body
        self.dedupeKey = dedupeKey
        self.notifiers = notifiers
        self.lease = lease
        self.leased = leased
        self.bookingKey = bookingKey
        self.reminders = reminders
        self.cancelsReminders = cancelsReminders
        self.booking = booking
    }

    /// Whether `notifier`'s delivery is stored leased.
    public func isLeased(_ notifier: String) -> Bool { lease != nil && leased.contains(notifier) }
}

/// A reminder before a booking: a delivery to `notifier` due at `remindAt` (the booking's
/// start minus `offset`), kept by the entry's booking key.
///
/// Appending it keeps one reminder per booking, notifier and offset: a pending one is moved
/// to the new time and event (a reschedule), one already stored for the same time is left as
/// it is (the same booking announced again), and otherwise a new one is stored, pending, or
/// skipped with `skipReason` when its time had passed too long ago.
public struct ScheduledReminder: Sendable, Equatable {
    public var notifier: String
    /// Seconds before the start.
    public var offset: Int
    public var remindAt: Date
    /// Non-nil: stored as skipped, with this reason.
    public var skipReason: String?

    public init(notifier: String, offset: Int, remindAt: Date, skipReason: String? = nil) {
        self.notifier = notifier
        self.offset = offset
        self.remindAt = remindAt
        self.skipReason = skipReason
    }

    /// The reason stored on pending reminders when their booking is cancelled.
    public static let cancelledReason = "the booking was cancelled"
}

/// A suspension that only cancellation ends (``Journal/waitForWork(notifier:)``).
final class CancellationWait: Sendable {
    private struct State {
        var continuation: UnsafeContinuation<Void, Never>?
        var cancelled = false
    }
    private let state = Mutex(State())

    /// Keeps `continuation` until ``cancel()``; resumes it at once if that came first.
    func park(_ continuation: UnsafeContinuation<Void, Never>) {
        let now = state.withLock { s in
            if s.cancelled { return true }
            s.continuation = continuation
            return false
        }
        if now { continuation.resume() }
    }

    func cancel() {
        let parked = state.withLock { s in
            s.cancelled = true
            defer { s.continuation = nil }
            return s.continuation
        }
        parked?.resume()
    }
}

/// One booking as the bookings projection keeps it: its latest known state.
public struct BookingSnapshot: Sendable, Equatable {
    public var uid: String
    public var status: String?
    public var eventTypeUid: String?
    public var startedAt: Date
    public var endedAt: Date?
    public var timeZone: String?
    public var guestName: String?
    public var guestEmail: String?
    /// The event that last changed it.
    public var eventID: String
    public var eventName: String

    public init(uid: String, status: String?, eventTypeUid: String?, startedAt: Date, endedAt: Date?, timeZone: String?,
                guestName: String?, guestEmail: String?, eventID: String, eventName: String) {
        self.uid = uid
        self.status = status
        self.eventTypeUid = eventTypeUid
        self.startedAt = startedAt
        self.endedAt = endedAt
        self.timeZone = timeZone
        self.guestName = guestName
        self.guestEmail = guestEmail
        self.eventID = eventID
        self.eventName = eventName
    }

    /// Bookings that ended before this (or, without an end, started before it) are pruned:
    /// the prune's `cutoff`, but never later than two days before `now`. An agenda lists
    /// today or tomorrow, and one missed while Herald was down still goes out that day.
    public static func pruneHorizon(cutoff: Date, now: Date) -> Date {
        min(cutoff, now.addingTimeInterval(-2 * 86400))
    }

    /// The snapshot an event gives, if it is about a booking with a uid and a start.
    public init?(_ event: Event) {
        guard let b = event.booking, let uid = b.uid, !uid.isEmpty, let start = b.startedAt else { return nil }
        self.init(uid: uid, status: b.status, eventTypeUid: b.eventTypeUid, startedAt: start, endedAt: b.endedAt,
                  timeZone: b.timeZone, guestName: b.contact?.name, guestEmail: b.contact?.email, eventID: event.id,
                  eventName: event.name)
    }

    /// Cancelled or declined: left out of agendas.
    public var isCancelled: Bool { Self.isCancellation(eventName: eventName, status: status) }

    /// Events after which a booking will not take place.
    public static let cancellingEvents: Set<String> = ["guest_cancelled", "host_cancelled", "host_booking_request_declined"]

    /// Whether an event with this name and booking status says the booking will not take
    /// place: the one rule agendas and reminders share.
    public static func isCancellation(eventName: String, status: String?) -> Bool {
        let s = status?.lowercased()
        return s == "cancel" || s == "cancelled" || s == "declined" || cancellingEvents.contains(eventName)
    }
}

public enum AppendResult: Sendable, Equatable {
    /// Stored; `deliveries` maps notifier name to delivery id.
    case accepted(deliveries: [String: Int64])
    /// Seen before: the id of the event that was stored the first time.
    case duplicate(of: String)
}

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

