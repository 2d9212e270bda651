import Foundation

// What goes into a journal: an accepted webhook's entry, the lease its deliveries are stored
// under, its reminders and booking, and what the append answers.

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
    /// once); the others are stored pending. Ignored without a lease. A list: an event has
    /// a handful of notifiers, and searching it costs less than hashing their names.
    public var leased: [String]
    /// The booking the event is about (its uid): what its reminders are kept by.
    public var bookingKey: String?
    /// Reminders for the booking, scheduled in the same commit (see ``ScheduledReminder``).
    public var reminders: [ScheduledReminder]
    /// The booking was cancelled or declined: its pending reminders become skipped.
    public var cancelsReminders: Bool
    /// The booking's state as of this event: replaces what the bookings projection holds
    /// for its uid, in the same commit.
    public var booking: BookingSnapshot?

    public init(event: Event, dedupeKey: String?, notifiers: [String], lease: Lease? = nil, leased: [String] = [],
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
    ///
    /// The booking's fields are read one by one: binding the whole booking (`let b =
    /// event.booking`) copied each of its strings and arrays, and released them again.
    public init?(_ event: Event) {
        guard let uid = event.booking?.uid, !uid.isEmpty, let start = event.booking?.startedAt else { return nil }
        let contact = event.booking?.contact
        self.init(uid: uid, status: event.booking?.status, eventTypeUid: event.booking?.eventTypeUid, startedAt: start,
                  endedAt: event.booking?.endedAt, timeZone: event.booking?.timeZone, guestName: contact?.name,
                  guestEmail: contact?.email, eventID: event.id, eventName: event.name)
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
