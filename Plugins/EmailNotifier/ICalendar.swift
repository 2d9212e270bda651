import Foundation
import HeraldPlugin

/// A one-event iCalendar object (RFC 5545) sent as an iMIP invitation or cancellation
/// (RFC 5546 / RFC 6047), so that a booking lands in the recipient's calendar.
///
/// The UID comes from the booking uid, so every message about one booking updates the same
/// calendar entry, and SEQUENCE grows with the booking's `updatedAt`, so a reschedule or
/// cancellation supersedes what came before even if messages arrive out of order.
struct ICalendar: Sendable, Equatable {
    /// The iTIP method, also written as `method=` on the MIME part.
    enum Method: String, Sendable {
        case request = "REQUEST"
        case cancel = "CANCEL"
    }

    var method: Method
    var uid: String
    var sequence: Int
    var stamp: Date
    var start: Date
    var end: Date
    var summary: String
    var description: String?
    var organizer: EmailAddress
    var attendees: [EmailAddress]

    static let productID = "-//Herald//Email Notifier//EN"
    /// SEQUENCE counts seconds since this moment, which keeps it within iCalendar's 32-bit
    /// INTEGER until 2088.
    static let sequenceEpoch = Date(timeIntervalSince1970: 1_577_836_800)  // 2020-01-01T00:00:00Z

    /// The calendar object for a notification, or nil when its kind has no calendar meaning
    /// (requested, declined, other) or the booking lacks a uid, start or end.
    init?(notification: HeraldNotification, organizer: EmailAddress, attendees: [EmailAddress]) {
        let method: Method
        switch notification.kind {
        case .booked, .rescheduled, .accepted: method = .request
        case .cancelled: method = .cancel
        case .requested, .declined, .other: return nil
        }
        guard let booking = notification.event.booking, let uid = booking.uid, !uid.isEmpty,
              let start = booking.startedAt, let end = booking.endedAt
        else { return nil }
        let changed = [booking.cancelledAt, booking.updatedAt, booking.createdAt].compactMap { $0 }.max()
            ?? notification.event.occurredAt ?? notification.event.receivedAt
        self.method = method
        self.uid = uid + "@herald"
        self.sequence = max(0, Int(changed.timeIntervalSince(Self.sequenceEpoch).rounded(.down)))
        self.stamp = changed
        self.start = start
        self.end = max(start, end)
        self.summary = notification.title
        self.description = notification.text.isEmpty ? nil : notification.text
        self.organizer = organizer
        var seen = Set<String>()
        self.attendees = attendees.filter { seen.insert($0.address.lowercased()).inserted }
    }

    /// The object as text: CRLF line ends, lines folded at 75 octets (RFC 5545 §3.1).
    func render() -> String {
        var lines = [
            "BEGIN:VCALENDAR",
            "PRODID:\(Self.productID)",
            "VERSION:2.0",
            "CALSCALE:GREGORIAN",
            "METHOD:\(method.rawValue)",
            "BEGIN:VEVENT",
            "UID:\(Self.escapeText(uid))",
            "SEQUENCE:\(sequence)",
            "DTSTAMP:\(Self.utc(stamp))",
            "DTSTART:\(Self.utc(start))",
            "DTEND:\(Self.utc(end))",
            "SUMMARY:\(Self.escapeText(summary))",
        ]
        if let description { lines.append("DESCRIPTION:\(Self.escapeText(description))") }
        lines.append("ORGANIZER\(Self.commonName(organizer)):mailto:\(organizer.address)")
        for attendee in attendees {
            lines.append("ATTENDEE\(Self.commonName(attendee));ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED;RSVP=FALSE:mailto:\(attendee.address)")
        }
        lines += [
            "STATUS:\(method == .cancel ? "CANCELLED" : "CONFIRMED")",
            "TRANSP:OPAQUE",
            "END:VEVENT",
            "END:VCALENDAR",
        ]
        return lines.map(Self.fold).joined()
    }

    /// `20261127T050000Z`.
    static func utc(_ date: Date) -> String {
        ISO8601.format(date).filter { $0 != "-" && $0 != ":" }
    }

    /// TEXT value escaping (RFC 5545 §3.3.11): backslash, semicolon, comma and newlines.
    static func escapeText(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        var previousWasCR = false
        for scalar in text.unicodeScalars {
            defer { previousWasCR = scalar == "\r" }
            switch scalar {
            case "\\": out += "\\\\"
            case ";": out += "\\;"
            case ",": out += "\\,"
            case "\r": out += "\\n"
            case "\n": if !previousWasCR { out += "\\n" }
            default:
                // Other control characters are not allowed in TEXT values.
                if scalar.value < 0x20 && scalar != "\t" || scalar.value == 0x7F { continue }
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// `;CN="…"` for a display name, with what a quoted parameter value cannot hold removed.
    private static func commonName(_ address: EmailAddress) -> String {
        guard let name = address.name else { return "" }
        let clean = String(String.UnicodeScalarView(name.unicodeScalars.filter { $0 != "\"" && $0.value >= 0x20 && $0.value != 0x7F }))
        return clean.isEmpty ? "" : ";CN=\"\(clean)\""
    }

    /// One content line folded into chunks of at most 75 octets, never inside a UTF-8
    /// sequence; continuation lines start with a space. Each physical line ends in CRLF.
    static func fold(_ line: String) -> String {
        var out = ""
        var length = 0
        for scalar in line.unicodeScalars {
            let width = String(scalar).utf8.count
            if length + width > 75 {
                out += "\r\n "
                length = 1
            }
            out.unicodeScalars.append(scalar)
            length += width
        }
        return out + "\r\n"
    }
}
