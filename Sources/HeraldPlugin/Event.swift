import Foundation
import Synchronization

/// One accepted webhook: its identity, what happened, and the body it arrived with.
///
/// `payload` is the whole body parsed; `booking` is the typed Jicoo view of it when the
/// source is Jicoo. Fields that could not be read (a malformed date) are nil and listed in
/// `warnings`, never a reason to drop the event.
///
/// An immutable value kept in one shared box: an event travels from the request through
/// the journal entry, the delivery job, the notification and the plugin call, and copying
/// it is one reference count instead of one per string, array and body in it.
public struct Event: Sendable, Identifiable {
    @usableFromInline
    final class Storage: Sendable {
        @usableFromInline let id: String
        @usableFromInline let endpoint: String
        @usableFromInline let source: String
        @usableFromInline let name: String
        @usableFromInline let receivedAt: Date
        @usableFromInline let occurredAt: Date?
        @usableFromInline let booking: Booking?
        @usableFromInline let body: Data
        @usableFromInline let warnings: [String]
        /// Whether the payload is a JSON object, known without parsing it.
        let payloadIsObject: Bool
        /// The payload once known: given, or parsed from the body on first use.
        private let parsed: Mutex<JSONValue?>

        init(id: String, endpoint: String, source: String, name: String, receivedAt: Date, occurredAt: Date?,
             booking: Booking?, payload: JSONValue?, payloadIsObject: Bool, body: Data, warnings: [String]) {
            self.id = id
            self.endpoint = endpoint
            self.source = source
            self.name = name
            self.receivedAt = receivedAt
            self.occurredAt = occurredAt
            self.booking = booking
            self.body = body
            self.warnings = warnings
            self.payloadIsObject = payloadIsObject
            parsed = Mutex(payload)
        }

        @usableFromInline var payload: JSONValue {
            parsed.withLock { parsed in
                if let parsed { return parsed }
                // The decoder that left it unparsed had checked the whole body already.
                let value = (try? JSONValue.parse(body)) ?? .null
                parsed = value
                return value
            }
        }
    }

    @usableFromInline let storage: Storage

    /// Herald's id for this event, time-ordered (`evt_…`).
    @inlinable public var id: String { storage.id }
    /// The configured endpoint path it arrived on, e.g. `/hooks/jicoo`.
    @inlinable public var endpoint: String { storage.endpoint }
    /// The source decoder that read it (`jicoo`, `generic`).
    @inlinable public var source: String { storage.source }
    /// The event name, e.g. `guest_booked`. Unknown names are kept as they are.
    @inlinable public var name: String { storage.name }
    /// When Herald accepted it.
    @inlinable public var receivedAt: Date { storage.receivedAt }
    /// When the sender says it happened (`createdAt`), if readable.
    @inlinable public var occurredAt: Date? { storage.occurredAt }
    /// The typed booking for Jicoo events.
    @inlinable public var booking: Booking? { storage.booking }
    /// The body, parsed. A decoder that read what it needed without building the whole tree
    /// leaves this to the first use (a route condition, a template that reads `raw`, a plugin),
    /// once per event.
    @inlinable public var payload: JSONValue { storage.payload }
    /// The body exactly as received.
    @inlinable public var body: Data { storage.body }
    /// What could not be read but did not stop the event, e.g. a malformed date.
    @inlinable public var warnings: [String] { storage.warnings }

    /// Whether ``payload`` is a JSON object, answered without parsing the body.
    package var hasObjectPayload: Bool { storage.payloadIsObject }
    /// Whether the event has a booking. `booking != nil` copies the whole booking into the
    /// generic comparison with nil; a pattern only looks at it.
    package var hasBooking: Bool {
        if case .some = storage.booking { true } else { false }
    }

    /// An event as a source decoder makes it; tests use `SampleEvents` from HeraldTesting.
    public init(
        id: String, endpoint: String, source: String, name: String, receivedAt: Date,
        occurredAt: Date?, booking: Booking?, payload: JSONValue, body: Data, warnings: [String] = []
    ) {
        var isObject = false
        if case .object = payload { isObject = true }
        storage = Storage(id: id, endpoint: endpoint, source: source, name: name, receivedAt: receivedAt,
                          occurredAt: occurredAt, booking: booking, payload: payload, payloadIsObject: isObject,
                          body: body, warnings: warnings)
    }

    /// An event whose ``payload`` is parsed from `objectBody` when first asked for.
    ///
    /// - Parameter objectBody: a body that ``JSONValue/parse(_:)`` reads as a JSON object:
    ///   the decoder has checked all of it (as ``JicooBody/read(_:)`` does).
    package init(
        id: String, endpoint: String, source: String, name: String, receivedAt: Date,
        occurredAt: Date?, booking: Booking?, objectBody: Data, warnings: [String] = []
    ) {
        storage = Storage(id: id, endpoint: endpoint, source: source, name: name, receivedAt: receivedAt,
                          occurredAt: occurredAt, booking: booking, payload: nil, payloadIsObject: true,
                          body: objectBody, warnings: warnings)
    }

    /// A new time-ordered event id: `evt_` + 12 hex digits of milliseconds + 12 random hex digits.
    public static func makeID(at date: Date = Date()) -> String {
        var t = UInt64(max(0, date.timeIntervalSince1970 * 1000))
        var random = nextIDBits() & 0xFFFF_FFFF_FFFF
        return String(unsafeUninitializedCapacity: 28) { out in
            out[0] = UInt8(ascii: "e"); out[1] = UInt8(ascii: "v"); out[2] = UInt8(ascii: "t"); out[3] = UInt8(ascii: "_")
            for i in stride(from: 15, through: 4, by: -1) { out[i] = .lowercaseHexDigit(UInt8(t & 0xF)); t >>= 4 }
            for i in stride(from: 27, through: 16, by: -1) { out[i] = .lowercaseHexDigit(UInt8(random & 0xF)); random >>= 4 }
            return 28
        }
    }

    /// The random part of event ids: SplitMix64 over a counter that starts at a random value
    /// drawn once per process. Event ids must be unique, not secret (nothing is granted by
    /// knowing one); a `getrandom(2)` per event cost more than the rest of the id. Two ids of
    /// the same millisecond repeat only if 48 bits of two distinct SplitMix64 outputs do, the
    /// same odds as with 48 bits drawn from the system, in one process or across several.
    private static let idCounter = Atomic<UInt64>(UInt64.random(in: .min ... .max))

    static func nextIDBits() -> UInt64 {
        var z = idCounter.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A Jicoo booking, read tolerantly: every field is optional.
public struct Booking: Sendable, Equatable {
    /// The guest who booked.
    public struct Contact: Sendable, Equatable {
        /// The guest's name as they typed it, e.g. `山田 太郎`.
        public var name: String?
        /// The guest's e-mail address.
        public var email: String?
    }
    /// A question of the booking form and what the guest answered.
    public struct Answer: Sendable, Equatable {
        /// The question as the form shows it.
        public var question: String
        /// The answer; several values for a multiple-choice question.
        public var content: [String]
    }

    /// Jicoo's booking id, stable across reschedules: a good key for calendar entries.
    public var uid: String?
    /// The booking page (event type) the booking was made on.
    public var eventTypeUid: String?
    /// `open`, `cancel`, `request`, … as Jicoo sends it.
    public var status: String?
    /// The booking's IANA time zone, e.g. `Asia/Tokyo`; render times in it.
    public var timeZone: String?
    /// When the booking was created.
    public var createdAt: Date?
    /// When the booking last changed.
    public var updatedAt: Date?
    /// When the meeting starts.
    public var startedAt: Date?
    /// When the meeting ends.
    public var endedAt: Date?
    /// Why it was cancelled, for cancellations.
    public var cancelReason: String?
    /// When it was cancelled.
    public var cancelledAt: Date?
    /// Who cancelled: `guest` or `host`.
    public var cancelledBy: String?
    /// The guest.
    public var contact: Contact?
    /// The booking form's questions and answers, in order.
    public var answers: [Answer]
    /// UTM parameters of the booking page visit (`utm_source`, …).
    ///
    /// Read from the body's `tracking` object each time it is asked for (a route on tracking,
    /// a template that shows it), not for every event: building the dictionary cost 3 % of a
    /// request's instructions, and most events are never asked.
    public var tracking: [String: String] {
        get { trackingSource.value }
        set { trackingSource = .read(newValue) }
    }
    /// Where ``tracking`` comes from.
    var trackingSource: Tracking
    /// `updatedAt` exactly as sent, for dedupe keys (no round trip through `Date`).
    public var updatedAtText: String?

    /// The tracking parameters, read, or the bytes of a body's `tracking` object, which
    /// ``JicooBody`` has checked as JSON. Equal when their parameters are.
    enum Tracking: Sendable, Equatable {
        case read([String: String])
        case unread(Data)

        var value: [String: String] {
            switch self {
            case .read(let tracking): tracking
            case .unread(let bytes): JicooBody.tracking(in: bytes)
            }
        }

        static func == (a: Tracking, b: Tracking) -> Bool { a.value == b.value }
    }

    /// The members of a Jicoo `object` that a booking is read from, by position.
    enum Member: Int, CaseIterable, Sendable {
        case uid, eventTypeUid, status, timeZone, createdAt, updatedAt, startedAt, endedAt
        case cancelReason, cancelledAt, cancelledBy, contact, answers, tracking
    }

    /// The values of an `object`'s members that a booking is read from, by ``Member``: the
    /// guest and the answers read already (the tracking parameters as their bytes), so that a
    /// reader of the body's bytes builds them without a dictionary per object (see
    /// ``JicooBody``). Stored properties: an `InlineArray` went through unspecialised generic
    /// copies per access.
    package struct Fields: Sendable {
        var uid, eventTypeUid, status, timeZone, createdAt, updatedAt, startedAt, endedAt: JSONValue?
        var cancelReason, cancelledAt, cancelledBy: JSONValue?
        var contact: Contact?
        var answers: [Answer] = []
        var tracking = Tracking.read([:])

        package init() {}

        mutating func set(_ member: Member, _ value: JSONValue) {
            switch member {
            case .uid: uid = value
            case .eventTypeUid: eventTypeUid = value
            case .status: status = value
            case .timeZone: timeZone = value
            case .createdAt: createdAt = value
            case .updatedAt: updatedAt = value
            case .startedAt: startedAt = value
            case .endedAt: endedAt = value
            case .cancelReason: cancelReason = value
            case .cancelledAt: cancelledAt = value
            case .cancelledBy: cancelledBy = value
            case .contact: contact = Booking.contact(value)
            case .answers: answers = Booking.answers(value)
            case .tracking: tracking = .read(Booking.tracking(value))
            }
        }
    }

    /// The guest of a `contact` value: its `name` and `email` strings, when it is an object.
    static func contact(_ value: JSONValue) -> Contact? {
        guard case .object(let c) = value else { return nil }
        return Contact(name: c["name"]?.stringValue, email: c["email"]?.stringValue)
    }

    /// The items of an `answers` array that have a `question` string, in order.
    static func answers(_ value: JSONValue) -> [Answer] {
        guard case .array(let list) = value else { return [] }
        return list.compactMap { item in
            item["question"]?.stringValue.map { Answer(question: $0, content: item["content"].map(content) ?? []) }
        }
    }

    /// An answer's `content`: the strings of an array, or a single string.
    static func content(_ value: JSONValue) -> [String] {
        switch value {
        case .array(let values): values.compactMap(\.stringValue)
        case .string(let s): [s]
        default: []
        }
    }

    /// The string members of a `tracking` object.
    static func tracking(_ value: JSONValue) -> [String: String] {
        guard case .object(let t) = value else { return [:] }
        var tracking: [String: String] = [:]
        tracking.reserveCapacity(t.count)
        for (k, v) in t { if let s = v.stringValue { tracking[k] = s } }
        return tracking
    }

    /// The names of ``Member``, in order, for reading them from a body.
    static let memberNames = JSONKeys(Member.allCases.map { String(describing: $0) })

    /// Reads the `object` of a Jicoo body. Unreadable fields become nil and a warning.
    public init(json object: JSONValue, warnings: inout [String]) {
        var fields = Fields()
        if case .object(let members) = object {
            for (key, value) in members {
                var name = key
                if let position = name.withUTF8({ Self.memberNames.position(of: $0) }), let member = Member(rawValue: position) {
                    fields.set(member, value)
                }
            }
        }
        self.init(fields: fields, warnings: &warnings)
    }

    /// A booking from the values of its `object`'s members (see ``JicooBody``).
    package init(fields: consuming Fields, warnings: inout [String]) {
        func string(_ v: consuming JSONValue?, _ key: String) -> String? {
            guard let v else { return nil }
            switch v {
            case .string(let s): return s
            case .null: return nil
            case .number(let n): return n.text
            default:
                warnings.append("object.\(key): expected a string; ignored")
                return nil
            }
        }
        func parsed(_ text: String?, _ key: String) -> Date? {
            guard let text else { return nil }
            if let d = ISO8601.parse(text) { return d }
            warnings.append("object.\(key): \"\(text.prefix(40))\" is not an ISO 8601 date; ignored")
            return nil
        }
        func date(_ v: consuming JSONValue?, _ key: String) -> Date? { parsed(string(v, key), key) }
        // Each value is moved out of `fields` and read once (updatedAt's text is kept too).
        uid = string(fields.uid.take(), "uid")
        eventTypeUid = string(fields.eventTypeUid.take(), "eventTypeUid")
        status = string(fields.status.take(), "status")
        timeZone = string(fields.timeZone.take(), "timeZone")
        createdAt = date(fields.createdAt.take(), "createdAt")
        updatedAtText = string(fields.updatedAt.take(), "updatedAt")
        updatedAt = parsed(updatedAtText, "updatedAt")
        startedAt = date(fields.startedAt.take(), "startedAt")
        endedAt = date(fields.endedAt.take(), "endedAt")
        cancelReason = string(fields.cancelReason.take(), "cancelReason")
        cancelledAt = date(fields.cancelledAt.take(), "cancelledAt")
        cancelledBy = string(fields.cancelledBy.take(), "cancelledBy")
        contact = fields.contact.take()
        answers = fields.answers
        trackingSource = fields.tracking
    }
}

/// RFC 3339 / ISO 8601 timestamps as Jicoo sends them, parsed without Foundation formatters.
public enum ISO8601 {
    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; nil if anything is off.
    public static func parse(_ text: String) -> Date? {
        var s = text
        return s.withUTF8 { parse(bytes: $0) }
    }

    static func parse(bytes b: UnsafeBufferPointer<UInt8>) -> Date? {
        guard b.count >= 20 else { return nil }
        @inline(__always) func digits(_ at: Int, _ n: Int) -> Int? {
            var v = 0
            for i in at..<(at + n) {
                let c = b[i]
                guard c >= 48, c <= 57 else { return nil }
                v = v * 10 + Int(c - 48)
            }
            return v
        }
        guard let year = digits(0, 4), b[4] == 45, let month = digits(5, 2), b[7] == 45,
              let day = digits(8, 2), b[10] == 84 || b[10] == 116 || b[10] == 32,
              let hour = digits(11, 2), b[13] == 58, let minute = digits(14, 2), b[16] == 58,
              let second = digits(17, 2)
        else { return nil }
        guard (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year),
              hour < 24, minute < 60, second < 61 else { return nil }
        var i = 19
        var fraction = 0.0
        if i < b.count, b[i] == 46 {
            i += 1
            var scale = 0.1
            let start = i
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                fraction += Double(b[i] - 48) * scale
                scale /= 10
                i += 1
            }
            guard i > start else { return nil }
        }
        guard i < b.count else { return nil }
        var offset = 0
        if b[i] == 90 || b[i] == 122 {
            i += 1
        } else if b[i] == 43 || b[i] == 45 {
            guard i + 6 == b.count, let oh = digits(i + 1, 2), b[i + 3] == 58, let om = digits(i + 4, 2) else { return nil }
            offset = (oh * 3600 + om * 60) * (b[i] == 43 ? 1 : -1)
            i += 6
        } else {
            return nil
        }
        guard i == b.count else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        let seconds = Double(days * 86400 + hour * 3600 + minute * 60 + second - offset) + fraction
        return Date(timeIntervalSince1970: seconds)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 (Howard Hinnant's algorithm).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    /// `2026-11-27T05:00:00Z` (UTC, whole seconds).
    public static func format(_ date: Date) -> String {
        let (days, rem) = dayAndSecond(date)
        let (y, m, d) = civilFromDays(days)
        // By hand: String(format:) goes through CFString and was most of a render's date work.
        // Years 0...9999 (every date Herald shows) are written straight into the string's
        // storage, twenty bytes; others keep their sign and all their digits.
        guard (0...9999).contains(y) else {
            let year = String(y.magnitude)
            return "\(y < 0 ? "-" : "")\(String(repeating: "0", count: max(0, 4 - year.count)))\(year)-"
                + "\(twoDigits(m))-\(twoDigits(d))T\(twoDigits(rem / 3600)):\(twoDigits(rem % 3600 / 60)):\(twoDigits(rem % 60))Z"
        }
        return String(unsafeUninitializedCapacity: 20) { out in
            func put(_ n: Int, at index: Int, width: Int) { putDigits(n, width: width, into: out, at: index) }
            put(y, at: 0, width: 4); out[4] = UInt8(ascii: "-"); put(m, at: 5, width: 2); out[7] = UInt8(ascii: "-")
            put(d, at: 8, width: 2); out[10] = UInt8(ascii: "T"); put(rem / 3600, at: 11, width: 2)
            out[13] = UInt8(ascii: ":"); put(rem % 3600 / 60, at: 14, width: 2); out[16] = UInt8(ascii: ":")
            put(rem % 60, at: 17, width: 2); out[19] = UInt8(ascii: "Z")
            return 20
        }
    }

    /// The day since 1970-01-01 and the second of that day of `date`, `offset` seconds (a
    /// zone's) east of UTC. The whole seconds are converted checked: clamped to ±10^15 (some
    /// 30 million years), NaN read as 0, so no date, however it was made, traps here.
    package static func dayAndSecond(_ date: Date, offset: Int = 0) -> (day: Int, second: Int) {
        let seconds = date.timeIntervalSince1970.rounded(.down)
        let t = Int(seconds.isNaN ? 0 : min(max(seconds, -1e15), 1e15)) + offset
        let (day, second) = t.quotientAndRemainder(dividingBy: 86400)
        return second < 0 ? (day - 1, second + 86400) : (day, second)
    }

    /// `n` with a leading zero below 10: `07`, `12`.
    package static func twoDigits(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }

    /// Writes `n` (not negative) as `width` zero-padded decimal digits into `out` from `index`,
    /// for dates written straight into a string's storage.
    package static func putDigits(_ n: Int, width: Int, into out: UnsafeMutableBufferPointer<UInt8>, at index: Int) {
        var n = n
        for i in stride(from: index + width - 1, through: index, by: -1) {
            out[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: n % 10)
            n /= 10
        }
    }

    package static func civilFromDays(_ z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}
