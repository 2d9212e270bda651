import Foundation

/// Dates and times in a booking's time zone, without a `DateFormatter` per call.
public enum TimeText {
    /// `24h`, `1h`, `90m`, `45s`, `2d`: a reminder offset as configured.
    public static func shortDuration(_ d: Duration) -> String {
        let s = d.components.seconds
        if s >= 86400, s % 86400 == 0 { return "\(s / 86400)d" }
        if s >= 3600, s % 3600 == 0 { return "\(s / 3600)h" }
        if s >= 60, s % 60 == 0 { return "\(s / 60)m" }
        return "\(s)s"
    }

    /// How far ahead a start is, rounded: `in 1 hour`, `in 30 minutes`, `in 2 days` /
    /// `1時間後`, `30分後`, `2日後`; `now` / `まもなく` under a minute (or past).
    public static func startsIn(_ seconds: TimeInterval, locale: HeraldLocale) -> String {
        let minutes = Int((min(max(0, seconds), 1e9) / 60).rounded())
        let (value, en, ja): (Int, String, String)
        if minutes < 1 { return locale == .ja ? "まもなく" : "now" }
        if minutes < 60 || (minutes < 120 && minutes % 60 != 0) {
            (value, en, ja) = (minutes, "minute", "分")
        } else if minutes < 2 * 1440 {
            (value, en, ja) = ((minutes + 30) / 60, "hour", "時間")
        } else {
            (value, en, ja) = ((minutes + 720) / 1440, "day", "日")
        }
        return locale == .ja ? "\(value)\(ja)後" : "in \(value) \(en)\(value == 1 ? "" : "s")"
    }

    static let enWeekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    static let jaWeekdays = ["日", "月", "火", "水", "木", "金", "土"]
    /// Zone names worked out so far, by zone and daylight-saving time (at most two per zone
    /// ``knownZone(_:)`` found).
    private static let abbreviations = RecentCache<ZoneName, String>(capacity: 2 * zoneCacheCapacity)
    private struct ZoneName: Hashable, Sendable { let zone: String; let dst: Bool }
    /// Zones looked up so far (nil: no such zone): `TimeZone(identifier:)` costs more than
    /// the rest of a time's formatting, and every request and render looks the booking's zone
    /// up. Bounded, since a sender can name any zone: past `zoneCacheCapacity` names, lookups
    /// are made but not kept.
    private static let zones = RecentCache<String, TimeZone?>(capacity: zoneCacheCapacity)
    static let zoneCacheCapacity = 256
    private static let utc = TimeZone(identifier: "UTC")!

    /// A date, a time and a zone label, as shown.
    typealias Parts = (date: String, time: String, zone: String)

    /// The IANA zone named `identifier` (`Asia/Tokyo`), or nil when there is none by that
    /// name (`Mars/Base`, an empty string); times in such a zone are shown in UTC, labelled so.
    public static func knownZone(_ identifier: String) -> TimeZone? {
        zones.value(for: identifier) { TimeZone(identifier: $0) }
    }

    /// The zone times are shown in: `identifier`'s when known, else UTC.
    static func zone(_ identifier: String?) -> TimeZone { identifier.flatMap(knownZone) ?? utc }

    /// `2026-11-27 (金)`, `14:00`, `JST` for an instant in a zone (UTC if the zone is unknown).
    public static func parts(_ date: Date, zone: String?, locale: HeraldLocale) -> (date: String, time: String, zone: String) {
        parts(date, in: self.zone(zone), locale: locale)
    }

    static func parts(_ date: Date, in tz: TimeZone, locale: HeraldLocale) -> Parts {
        let (days, rem) = ISO8601.dayAndSecond(date, offset: tz.secondsFromGMT(for: date))
        let (y, m, d) = ISO8601.civilFromDays(days)
        let weekday = (locale == .ja ? jaWeekdays : enWeekdays)[((days % 7) + 11) % 7]
        let time = String(unsafeUninitializedCapacity: 5) { out in
            ISO8601.putDigits(rem / 3600, width: 2, into: out, at: 0)
            out[2] = UInt8(ascii: ":")
            ISO8601.putDigits(rem % 3600 / 60, width: 2, into: out, at: 3)
            return 5
        }
        // Years 0...9999 by hand (interpolating each number made and joined a string per piece).
        guard (0...9999).contains(y) else {
            return ("\(y)-\(ISO8601.twoDigits(m))-\(ISO8601.twoDigits(d)) (\(weekday))", time, abbreviation(tz, at: date))
        }
        let dateText = String(unsafeUninitializedCapacity: 13 + weekday.utf8.count) { out in
            var i = 0
            func put(_ n: Int, width: Int) {
                ISO8601.putDigits(n, width: width, into: out, at: i)
                i += width
            }
            func put(_ byte: UInt8) { out[i] = byte; i += 1 }
            put(y, width: 4); put(UInt8(ascii: "-")); put(m, width: 2); put(UInt8(ascii: "-")); put(d, width: 2)
            put(UInt8(ascii: " ")); put(UInt8(ascii: "("))
            for byte in weekday.utf8 { put(byte) }
            put(UInt8(ascii: ")"))
            return i
        }
        return (dateText, time, abbreviation(tz, at: date))
    }

    /// `2026-11-27 (金) 14:00–15:00 JST`; both dates when the end is on another day, and both
    /// zone labels when a daylight-saving change falls between the ends
    /// (`2026-03-08 (Sun) 01:30 EST–03:30 EDT`).
    public static func range(_ start: Date?, _ end: Date?, zone: String?, locale: HeraldLocale) -> String? {
        guard let start else { return nil }
        let tz = self.zone(zone)
        let a = parts(start, in: tz, locale: locale)
        guard let end, end >= start else { return range(a, nil) }
        return range(a, parts(end, in: tz, locale: locale))
    }

    /// The same from parts already worked out; `b` nil shows the start alone.
    static func range(_ a: Parts, _ b: Parts?) -> String {
        guard let b else { return String(concatenating: [a.date, " ", a.time, " ", a.zone]) }
        let startZone = a.zone == b.zone ? "" : " " + a.zone
        if a.date == b.date { return String(concatenating: [a.date, " ", a.time, startZone, "–", b.time, " ", b.zone]) }
        return String(concatenating: [a.date, " ", a.time, startZone, " – ", b.date, " ", b.time, " ", b.zone])
    }

    /// A short zone name people recognise (JST, EST, CET), else `GMT+9`-style, else `UTC`.
    static func abbreviation(_ tz: TimeZone, at date: Date) -> String {
        let zone = tz.identifier
        if zone == "UTC" || zone == "GMT" { return "UTC" }
        let key = ZoneName(zone: zone, dst: tz.isDaylightSavingTime(for: date))
        return abbreviations.value(for: key) { _ in
            var best = ""
            for id in ["en_US", "ja_JP", "en_GB", "de_DE", "fr_FR"] {
                let f = DateFormatter()
                f.locale = Locale(identifier: id)
                f.timeZone = tz
                f.dateFormat = "zzz"
                let s = f.string(from: date)
                if best.isEmpty { best = s }
                if !s.hasPrefix("GMT") && !s.hasPrefix("UTC") { best = s; break }
            }
            return best.isEmpty ? tz.identifier : best
        }
    }
}
