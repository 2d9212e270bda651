import Foundation

/// `date`'s time of day in UTC as `HH:MM:SS`: for writing schedules (quiet hours, agendas)
/// that fall a few seconds ahead in tests, with `zone: UTC`.
public func utcTimeOfDay(_ date: Date) -> String {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: "UTC")!
    let c = calendar.dateComponents([.hour, .minute, .second], from: date)
    return String(format: "%02d:%02d:%02d", c.hour ?? 0, c.minute ?? 0, c.second ?? 0)
}

/// The lines of a text file such as a file notifier's output; none while it does not exist.
public func fileLines(_ path: String) -> [String] {
    ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
}
