import Foundation

/// HTTP dates as services send them in `Retry-After` (RFC 9110 §5.6.7), parsed byte by byte,
/// and as Herald's server sends them in `Date`.
///
/// Only the IMF-fixdate form that every current server sends, `Sun, 06 Nov 1994 08:49:37 GMT`.
/// Foundation's `DateFormatter` is not used: on Linux it traps on some strings a hostile
/// target can send (a fuzzer found `S` followed by a combining mark), and a reply must never
/// be able to stop Herald.
public enum HTTPDate {
    /// The date in `text`, or nil if it is not an IMF-fixdate (or names a day that does not exist).
    public static func parse(_ text: some StringProtocol) -> Date? {
        let b = Array(text.utf8)
        guard b.count == 29, b[3] == UInt8(ascii: ","), b[4] == 32, b[7] == 32, b[11] == 32, b[16] == 32,
              b[19] == UInt8(ascii: ":"), b[22] == UInt8(ascii: ":"), b[25] == 32,
              b[26...28].elementsEqual("GMT".utf8),
              weekdays.contains(where: { $0.elementsEqual(b[0..<3]) }),
              let month = months.firstIndex(where: { $0.elementsEqual(b[8..<11]) }).map({ $0 + 1 }),
              let day = digits(b, 5, 2), let year = digits(b, 12, 4),
              let hour = digits(b, 17, 2), let minute = digits(b, 20, 2), let second = digits(b, 23, 2),
              day >= 1, day <= ISO8601.daysIn(month: month, year: year), hour < 24, minute < 60, second < 61
        else { return nil }
        let days = ISO8601.daysFromCivil(year: year, month: month, day: day)
        return Date(timeIntervalSince1970: Double(days * 86400 + hour * 3600 + minute * 60 + second))
    }

    /// `date` as an IMF-fixdate, whole seconds (a server's `Date` header).
    package static func format(_ date: Date) -> String {
        let (days, second) = ISO8601.dayAndSecond(date)
        let (year, month, day) = ISO8601.civilFromDays(days)
        // 1970-01-01, day 0, was a Thursday: index 3 of `weekdays`.
        let weekday = weekdays[((days + 3) % 7 + 7) % 7]
        let two = ISO8601.twoDigits
        return "\(String(decoding: weekday, as: UTF8.self)), \(two(day)) \(String(decoding: months[month - 1], as: UTF8.self)) "
            + "\(year) \(two(second / 3600)):\(two(second % 3600 / 60)):\(two(second % 60)) GMT"
    }

    private static let weekdays = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].map { Array($0.utf8) }
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .map { Array($0.utf8) }

    private static func digits(_ b: [UInt8], _ at: Int, _ count: Int) -> Int? {
        var value = 0
        for byte in b[at..<(at + count)] {
            guard byte >= 48, byte <= 57 else { return nil }
            value = value * 10 + Int(byte - 48)
        }
        return value
    }
}
