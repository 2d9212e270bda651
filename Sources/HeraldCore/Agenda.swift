import Foundation
import Logging
import ServiceLifecycle

/// A notifier's daily agenda: at a local time, one notification listing the day's bookings
/// from the journal's bookings projection (cancelled ones left out, by start).
public struct AgendaSchedule: Sendable, Equatable {
    public enum Day: String, Sendable, Equatable, CaseIterable {
        case today, tomorrow
    }

    /// When it goes out, local time in `zone`.
    public var at: QuietHours.TimeOfDay
    public var zone: TimeZone
    /// Which day it lists, seen from the day it goes out.
    public var day: Day = .today
    /// Only bookings of these event types (`eventTypeUid`); empty: all.
    public var eventTypes: [String] = []
    /// No notification on a day without bookings (recorded as skipped).
    public var skipEmpty = false
    /// After downtime, an agenda whose time passed less than this long ago is still sent,
    /// late; an older one is not.
    public var grace: Duration = .seconds(2 * 3600)

    public init(at: QuietHours.TimeOfDay, zone: TimeZone) {
        self.at = at
        self.zone = zone
    }

    public var calendar: Calendar {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = zone
        return c
    }

    /// The time the agenda goes out on the local day of `date` (a time skipped by a DST
    /// change means the next one).
    public func occurrence(onDayOf date: Date) -> Date? {
        calendar.date(bySettingHour: at.hour, minute: at.minute, second: at.second, of: calendar.startOfDay(for: date),
                      matchingPolicy: .nextTime, repeatedTimePolicy: .first, direction: .forward)
    }

    /// The last time it was due at or before `now`.
    func latest(atOrBefore now: Date) -> Date? {
        guard let today = occurrence(onDayOf: now) else { return nil }
        if today <= now { return today }
        return calendar.date(byAdding: .day, value: -1, to: now).flatMap { occurrence(onDayOf: $0) }
    }

    /// The next time it is due after `now`.
    func next(after now: Date) -> Date? {
        if let today = occurrence(onDayOf: now), today > now { return today }
        return calendar.date(byAdding: .day, value: 1, to: now).flatMap { occurrence(onDayOf: $0) }
    }

    /// The local day an agenda sent at `occurrence` lists: `[start, end)` and its date.
    public func listedDay(for occurrence: Date) -> (start: Date, end: Date, date: String)? {
        let c = calendar
        guard let day = c.date(byAdding: .day, value: self.day == .today ? 0 : 1, to: c.startOfDay(for: occurrence)),
              let end = c.date(byAdding: .day, value: 1, to: day) else { return nil }
        let parts = c.dateComponents([.year, .month, .day], from: day)
        let date = String(format: "%04d-%02d-%02d", parts.year ?? 0, parts.month ?? 0, parts.day ?? 0)
        return (day, end, date)
    }
}

/// Agendas as journal entries: each one due is stored as an event of its own (on the
/// endpoint ``endpoint``) with one delivery to its notifier, deduplicated by notifier and
/// time, so that it goes out once however many instances or restarts try to store it.
public enum Agenda {
    /// The endpoint agenda events are stored under; no HTTP route has it.
    public static let endpoint = "herald:agenda"
    public static let eventName = "agenda"

    /// What an agenda event's body holds: enough to tell, when it is delivered, whether the
    /// notifier still wants this agenda.
    struct Body: Codable, Equatable {
        var notifier: String
        var at: String
        var zone: String
        var day: String
    }

    static func entry(notifier: String, schedule: AgendaSchedule, occurrence: Date) throws -> JournalEntry {
        let body = Body(notifier: notifier, at: ISO8601.format(occurrence), zone: schedule.zone.identifier,
                        day: schedule.day.rawValue)
        let data = try JSONEncoder().encode(body)
        let event = Event(id: "agd_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: ""),
                          endpoint: endpoint, source: "herald", name: eventName, receivedAt: occurrence, occurredAt: occurrence,
                          booking: nil, payload: .null, body: data)
        return JournalEntry(event: event, dedupeKey: "\(notifier)|\(body.at)", notifiers: [notifier])
    }

    /// The occurrence an agenda event stands for, if its notifier's schedule still matches it.
    static func occurrence(of event: Event, schedule: AgendaSchedule?, notifier: String) -> Date? {
        guard let schedule, let body = try? JSONDecoder().decode(Body.self, from: event.body), body.notifier == notifier,
              body.zone == schedule.zone.identifier, body.day == schedule.day.rawValue,
              let at = ISO8601.parse(body.at), schedule.occurrence(onDayOf: at) == at else { return nil }
        return at
    }
}

/// Stores each notifier's agenda in the journal when it comes due (and, after downtime, the
/// last one if it is still within its grace), then sleeps until the next one. Running it in
/// several instances at once is safe: the journal's dedupe key lets one copy through.
public struct AgendaScheduler: Service {
    let pipeline: Pipeline
    let logger: Logger

    public init(pipeline: Pipeline, logger: Logger = Logger(label: "herald.agenda")) {
        self.pipeline = pipeline
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let now = Date()
                var wake = now + 3600  // and re-read the configuration at least hourly
                for notifier in pipeline.config.notifiers {
                    guard let schedule = notifier.policy.agenda else { continue }
                    if let last = schedule.latest(atOrBefore: now), now.timeIntervalSince(last) <= schedule.grace.seconds {
                        await store(notifier.name, schedule, last)
                    }
                    if let next = schedule.next(after: now) { wake = min(wake, next) }
                }
                try? await Task.sleep(for: .seconds(max(0.05, wake.timeIntervalSinceNow)))
            }
        }
    }

    private func store(_ notifier: String, _ schedule: AgendaSchedule, _ occurrence: Date) async {
        do {
            let entry = try Agenda.entry(notifier: notifier, schedule: schedule, occurrence: occurrence)
            if case .accepted = try await pipeline.journal.append(entry) {
                pipeline.undelivered.value.add(1, ordering: .relaxed)
                pipeline.bus.stored(for: notifier)
                logger.info("agenda due", metadata: ["notifier": .string(notifier), "at": .string(ISO8601.format(occurrence))])
            }
        } catch {
            if Task.isCancelled { return }
            logger.error("cannot store the agenda in the journal: \(error)", metadata: ["notifier": .string(notifier)])
        }
    }
}
