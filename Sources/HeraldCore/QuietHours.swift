import Foundation

/// A notifier's quiet hours: a daily window, in a time zone, during which its deliveries are
/// held until the window ends (`hold`, the default) or recorded as skipped (`drop`).
///
/// `from` and `to` are local times; a window whose `to` is not after `from` runs past
/// midnight (22:00 → 08:00). `days` are the days on which a window *begins* (a Friday 22:00
/// window ends on Saturday morning). Daylight saving time: a local time that does not exist
/// (02:30 on the day clocks spring forward) means the next time that does (03:00); a local
/// time that happens twice (01:30 on the day clocks fall back) means the first of them.
public struct QuietHours: Sendable, Equatable {
    public enum Action: String, Sendable, Equatable, CaseIterable {
        /// Keep the delivery pending until the window ends, then send it (in order).
        case hold
        /// Record the delivery as skipped.
        case drop
    }

    /// A local time of day.
    public struct TimeOfDay: Sendable, Equatable, Comparable, CustomStringConvertible {
        public var hour: Int
        public var minute: Int
        public var second: Int

        /// `HH:MM` or `HH:MM:SS`, 24-hour; nil for anything else.
        public init?(_ text: String) {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard (2...3).contains(parts.count), parts.allSatisfy({ $0.count == 2 && $0.allSatisfy(\.isASCII) }),
                  let h = Int(parts[0]), let m = Int(parts[1]), (0...23).contains(h), (0...59).contains(m) else { return nil }
            let s = parts.count == 3 ? Int(parts[2]) : 0
            guard let s, (0...59).contains(s) else { return nil }
            (hour, minute, second) = (h, m, s)
        }

        var seconds: Int { hour * 3600 + minute * 60 + second }
        public static func < (a: TimeOfDay, b: TimeOfDay) -> Bool { a.seconds < b.seconds }
        public var description: String {
            second == 0 ? String(format: "%02d:%02d", hour, minute) : String(format: "%02d:%02d:%02d", hour, minute, second)
        }
    }

    /// The day names `days:` accepts, in `Calendar` weekday order (1 = Sunday).
    public static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    public var from: TimeOfDay
    public var to: TimeOfDay
    public var zone: TimeZone
    /// Calendar weekdays (1 = Sunday … 7 = Saturday) on which a window begins.
    public var days: Set<Int>
    public var action: Action

    public init(from: TimeOfDay, to: TimeOfDay, zone: TimeZone, days: Set<Int> = Set(1...7), action: Action = .hold) {
        self.from = from
        self.to = to
        self.zone = zone
        self.days = days
        self.action = action
    }

    /// The window `date` falls in, if any.
    public func window(containing date: Date) -> DateInterval? {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        let today = calendar.startOfDay(for: date)
        // A window that began yesterday may still run (22:00 → 08:00), so look at both days.
        for offset in [-1, 0] {
            guard let day = calendar.date(byAdding: .day, value: offset, to: today),
                  days.contains(calendar.component(.weekday, from: day)),
                  let start = local(from, on: day, calendar),
                  let endDay = to > from ? day : calendar.date(byAdding: .day, value: 1, to: day),
                  let end = local(to, on: endDay, calendar), start < end else { continue }
            if start <= date, date < end { return DateInterval(start: start, end: end) }
        }
        return nil
    }

    private func local(_ time: TimeOfDay, on day: Date, _ calendar: Calendar) -> Date? {
        calendar.date(bySettingHour: time.hour, minute: time.minute, second: time.second, of: day,
                      matchingPolicy: .nextTime, repeatedTimePolicy: .first, direction: .forward)
    }
}
