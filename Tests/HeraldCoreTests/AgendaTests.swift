import Foundation
import HeraldTesting
import ServiceLifecycle
import Logging
import Testing
@testable import HeraldCore

@Suite("Daily agenda")
struct AgendaTests {
    static func at(_ text: String) -> Date { ISO8601.parse(text)! }
    static func schedule(_ time: String, zone: String = "Asia/Tokyo", day: AgendaSchedule.Day = .today) -> AgendaSchedule {
        var s = AgendaSchedule(at: .init(time)!, zone: TimeZone(identifier: zone)!)
        s.day = day
        return s
    }

    @Test func occurrencesAreLocalTimesInTheZone() {
        let s = Self.schedule("08:00")  // 08:00 JST is 23:00 UTC the day before
        #expect(s.latest(atOrBefore: Self.at("2026-12-01T23:00:30Z")) == Self.at("2026-12-01T23:00:00Z"))
        #expect(s.latest(atOrBefore: Self.at("2026-12-01T22:59:59Z")) == Self.at("2026-11-30T23:00:00Z"))
        #expect(s.next(after: Self.at("2026-12-01T22:59:59Z")) == Self.at("2026-12-01T23:00:00Z"))
        #expect(s.next(after: Self.at("2026-12-01T23:00:00Z")) == Self.at("2026-12-02T23:00:00Z"))
        let day = s.listedDay(for: Self.at("2026-12-01T23:00:00Z"))
        #expect(day?.date == "2026-12-02" && day?.start == Self.at("2026-12-01T15:00:00Z") && day?.end == Self.at("2026-12-02T15:00:00Z"))
        #expect(Self.schedule("08:00", day: .tomorrow).listedDay(for: Self.at("2026-12-01T23:00:00Z"))?.date == "2026-12-03")
    }

    @Test func anAgendaEventStandsOnlyForTheScheduleThatMadeIt() throws {
        let s = Self.schedule("08:00")
        let entry = try Agenda.entry(notifier: "desk", schedule: s, occurrence: Self.at("2026-12-01T23:00:00Z"))
        #expect(entry.endpoint == Agenda.endpoint && entry.notifiers == ["desk"] && entry.dedupeKey == "desk|2026-12-01T23:00:00Z")
        let event = try EventSource.generic.decode(body: entry.body, endpoint: Agenda.endpoint, eventName: "agenda")
        #expect(Agenda.occurrence(of: event, schedule: s, notifier: "desk") == Self.at("2026-12-01T23:00:00Z"))
        #expect(Agenda.occurrence(of: event, schedule: Self.schedule("09:00"), notifier: "desk") == nil)
        #expect(Agenda.occurrence(of: event, schedule: s, notifier: "other") == nil)
        #expect(Agenda.occurrence(of: event, schedule: nil, notifier: "desk") == nil)
    }

    @Test func mistakesAreLocated() throws {
        for (keys, path) in [("at: \"8am\", zone: UTC", "notifiers.a.agenda.at"), ("at: \"08:00\"", "notifiers.a.agenda.zone"),
                             ("at: \"08:00\", zone: UTC, day: monday", "notifiers.a.agenda.day"),
                             ("at: \"08:00\", zone: UTC, grace: 1d", "notifiers.a.agenda.grace"),
                             ("at: \"08:00\", zone: UTC, when: now", "notifiers.a.agenda.when")] {
            let yaml = """
                storage: { memory: true }
                endpoints: [{ path: /h, secrets: [x] }]
                notifiers:
                  a: { kind: recording, agenda: { \(keys) } }
                routes:
                  - { events: ["*"], notify: [a] }
                """
            guard case .failure(let found) = try ConfigLoader.testing().check(yaml: yaml, file: "herald.yaml") else {
                Issue.record("expected an error for \(keys)")
                continue
            }
            #expect(found.errors.map(\.keyPath) == [path])
            #expect(found.errors.first?.description.hasPrefix("herald.yaml:4:") == true)
        }
    }

    /// With the scheduler and dispatcher running: the agenda comes due a few seconds ahead and
    /// lists the day's bookings by start, cancelled ones left out; storing it again (another
    /// instance, a restart) sends nothing more.
    @Test func theAgendaListsTheDaysBookingsOnce() async throws {
        let journal: any Journal = MemoryJournal()
        let due = Date(timeIntervalSince1970: (Date() + 3).timeIntervalSince1970.rounded(.down))
        let h = try await Harness("""
              desk: { kind: recording, label: desk, agenda: { at: "\(utcTimeOfDay(due))", zone: UTC } }
            """, routes: "  - { events: [guest_booked, guest_cancelled], notify: [desk] }", journal: journal)
        let day = try #require(h.pipeline.config.notifiers[0].policy.agenda?.listedDay(for: due))
        // Three bookings that day (one then cancelled) and one the next day.
        for (uid, hour) in [("bk_late", 15), ("bk_early", 9), ("bk_gone", 11), ("bk_tomorrow", 24 + 9)] {
            let body = try #require(SampleEvents.jicooBody("guest_booked", booking: uid, startingAt: day.start + Double(hour) * 3600))
            let (b, hdr) = try h.signed("guest_booked") { _ in String(decoding: body, as: UTF8.self) }
            _ = await h.pipeline.receive(path: "/hooks/jicoo", body: b, header: hdr)
        }
        let cancel = try #require(SampleEvents.jicooBody("guest_cancelled", booking: "bk_gone", startingAt: day.start + 11 * 3600))
        let (c, chdr) = try h.signed("guest_cancelled") { _ in String(decoding: cancel, as: UTF8.self) }
        _ = await h.pipeline.receive(path: "/hooks/jicoo", body: c, header: chdr)

        try await h.running { () async throws in
            let sent = try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await AgendaScheduler(pipeline: h.pipeline).run() }
                let sent = try await waitUntil(.seconds(30)) { h.log.count("desk") == 6 }
                group.cancelAll()
                return sent
            }
            #expect(sent)
            // The same agenda stored again sends nothing more.
            let schedule = try #require(h.pipeline.config.notifiers[0].policy.agenda)
            let again = try Agenda.entry(notifier: "desk", schedule: schedule, occurrence: due)
            let stored = try await journal.deliveries(DeliveryQuery(notifier: "desk", limit: 100)).first { $0.eventName == "agenda" }
            let result = try await journal.append(again)
            #expect(result == .duplicate(of: try #require(stored?.eventID)))
            try await Task.sleep(for: .milliseconds(600))
        }
        let agendas = h.log.entries.withLock { $0.filter { $0.notification.event.name == "agenda" } }
        #expect(agendas.count == 1)
        let agenda = try #require(agendas.first?.notification)
        #expect(agenda.title == "\(day.date) の予定 (2件)" || agenda.title == "Bookings for \(day.date) (2)")
        let lines = agenda.text.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.first?.hasPrefix("09:00–10:00") == true && lines.last?.hasPrefix("15:00–16:00") == true)
        #expect(!agenda.text.contains("11:00"))
    }
}
