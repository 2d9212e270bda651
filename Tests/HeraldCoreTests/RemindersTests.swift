import Foundation
import HeraldTesting
import Testing
@testable import HeraldCore

@Suite("Reminders")
struct RemindersTests {
    static let start = ISO8601.parse("2026-11-27T05:00:00Z")!

    /// The sample `name` event about booking `uid`, starting at `start` (an hour long).
    static func body(_ name: String, uid: String = "bk_7Qx2mZp9", start: Date = start) throws -> String {
        String(decoding: try #require(SampleEvents.jicooBody(name, booking: uid, startingAt: start)), as: UTF8.self)
    }

    static func event(_ name: String, start: Date = start) throws -> Event {
        try EventSource.jicoo.decode(body: Data(try body(name, start: start).utf8), endpoint: "/hooks/jicoo")
    }

    static let targets = [
        RouteTable.Target(notifier: "chat", template: nil, locale: nil, options: [:], route: 0, remind: [.seconds(86400), .seconds(3600)]),
        RouteTable.Target(notifier: "audit", template: nil, locale: nil, options: [:], route: 0),
    ]

    @Test func aBookingPlansOneReminderPerOffsetAndNotifier() throws {
        let plan = Reminders.plan(for: try Self.event("guest_booked"), targets: Self.targets, now: Self.start - 2 * 86400)
        #expect(plan.bookingKey == "bk_7Qx2mZp9" && !plan.cancels)
        #expect(plan.reminders == [
            ScheduledReminder(notifier: "chat", offset: 86400, remindAt: Self.start - 86400),
            ScheduledReminder(notifier: "chat", offset: 3600, remindAt: Self.start - 3600),
        ])
    }

    /// Within the grace a late reminder goes out at once; past it, it is planned as skipped.
    @Test func aReminderPastItsGraceIsPlannedSkipped() throws {
        let plan = Reminders.plan(for: try Self.event("guest_booked"), targets: Self.targets, now: Self.start - 3000)
        #expect(plan.reminders.map(\.skipReason?.isEmpty) == [false, nil])
        #expect(plan.reminders[0].skipReason?.contains("had passed by more than 10m") == true)
        let justLate = Reminders.plan(for: try Self.event("guest_booked"), targets: Self.targets, now: Self.start - 3600 + 599)
        #expect(justLate.reminders[1].skipReason == nil)
        #expect(Reminders.tooLate(remindAt: Self.start, now: Self.start + 601, grace: .seconds(600)))
        #expect(!Reminders.tooLate(remindAt: Self.start, now: Self.start + 600, grace: .seconds(600)))
    }

    @Test func cancellationsAndDeclinesCancelAndPlanNothing() throws {
        for name in ["guest_cancelled", "host_cancelled", "host_booking_request_declined"] {
            let plan = Reminders.plan(for: try Self.event(name), targets: Self.targets, now: Self.start - 86400 * 2)
            #expect(plan.cancels && plan.reminders.isEmpty && plan.bookingKey == "bk_7Qx2mZp9", "\(name)")
        }
        let generic = Event(id: "e", endpoint: "/h", source: "generic", name: "guest_booked", receivedAt: Self.start,
                            occurredAt: nil, booking: nil, payload: .null, body: Data())
        #expect(Reminders.plan(for: generic, targets: Self.targets, now: Self.start) == Reminders.Plan())
    }

    @Test func startsInAndOffsetsReadNaturally() {
        #expect(TimeText.startsIn(3600, locale: .en) == "in 1 hour")
        #expect(TimeText.startsIn(3600, locale: .ja) == "1時間後")
        #expect(TimeText.startsIn(86400, locale: .en) == "in 24 hours")
        #expect(TimeText.startsIn(3 * 86400, locale: .ja) == "3日後")
        #expect(TimeText.startsIn(90 * 60, locale: .en) == "in 90 minutes")
        #expect(TimeText.startsIn(30 * 60 + 20, locale: .ja) == "30分後")
        #expect(TimeText.startsIn(1, locale: .en) == "now")
        #expect(TimeText.startsIn(-300, locale: .ja) == "まもなく")
        #expect(TimeText.shortDuration(.seconds(86400)) == "1d" && TimeText.shortDuration(.seconds(3600)) == "1h")
        #expect(TimeText.shortDuration(.seconds(5400)) == "90m" && TimeText.shortDuration(.seconds(2)) == "2s")
    }

    @Test func theReminderTemplateSaysWhenTheMeetingStarts() throws {
        let renderer = try Renderer(defaultLocale: .ja)
        let event = try Self.event("guest_booked")
        let ja = renderer.render(event, reminder: .init(offset: .seconds(3600), now: Self.start - 3600))
        #expect(ja.title.hasPrefix("リマインダー:") && ja.title.contains("1時間後"))
        #expect(ja.text.contains("1時間後に始まります"))
        let en = renderer.render(event, locale: .en, reminder: .init(offset: .seconds(86400), now: Self.start - 86400))
        #expect(en.title.hasPrefix("Reminder:") && en.title.contains("in 24 hours"))
        let custom = try Renderer(templates: ["r": .init(title: "{{reminder.offset}} before", text: "{{startsIn}}")])
            .render(event, template: "r", locale: .en, reminder: .init(offset: .seconds(86400), now: Self.start - 86400))
        #expect(custom.title == "1d before" && custom.text == "in 24 hours")
    }

    @Test(arguments: [
        ("remind: [1h, 0s]", "routes[0].remind[1]", "between 1s and 366d"),
        ("remind: [1h, 60m]", "routes[0].remind[1]", "listed twice"),
        ("remind: 1h", "routes[0].remind", "expected a list of durations"),
        ("remind: [1h], reminderTemplate: nope", "routes[0].reminderTemplate", "no template named \"nope\""),
        ("remind: [1h], remindGrace: soon", "routes[0].remindGrace", "expected a duration"),
    ])
    func routeKeysAreCheckedWithTheirLocation(keys: String, path: String, message: String) throws {
        let yaml = """
            storage: { memory: true }
            endpoints: [{ path: /h, secrets: [x] }]
            notifiers:
              a: { kind: recording }
            routes:
              - { events: ["*"], notify: [a], \(keys) }
            """
        guard case .failure(let found) = try ConfigLoader.testing().check(yaml: yaml, file: "herald.yaml") else {
            Issue.record("expected errors")
            return
        }
        #expect(found.errors.map(\.keyPath) == [path])
        #expect(found.errors.first?.description.hasPrefix("herald.yaml:6:") == true)
        #expect(found.errors.first?.message.contains(message) == true, "\(found.errors)")
    }

    /// With the dispatcher and a real clock: a reminder two seconds before a start three
    /// seconds ahead goes out about a second later, rendered as a reminder, once; a
    /// cancellation before it leaves none.
    @Test func aReminderGoesOutBeforeTheStartAndACancellationStopsIt() async throws {
        let journal: any Journal = MemoryJournal()
        let h = try await Harness("""
              chat: { kind: recording, label: chat }
            """, routes: """
              - { events: [guest_booked], notify: [chat], remind: [2s] }
              - { events: [guest_cancelled], notify: [chat] }
            """, journal: journal)
        try await h.running { () async throws in
            let start = Date() + 3
            for (uid, cancel) in [("bk_kept", false), ("bk_cancelled", true)] {
                let (body, hdr) = try h.signed("guest_booked") { _ in try! Self.body("guest_booked", uid: uid, start: start) }
                #expect(await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr).isAccepted)
                if cancel {
                    let (c, chdr) = try h.signed("guest_cancelled") { _ in try! Self.body("guest_cancelled", uid: uid, start: start) }
                    #expect(await h.pipeline.receive(path: "/hooks/jicoo", body: c, header: chdr).isAccepted)
                }
            }
            // Two bookings and a cancellation notified at once, then one reminder.
            #expect(try await waitUntil(.seconds(20)) { h.log.count("chat") == 4 })
            let sent = h.log.entries.withLock { $0 }
            let reminders = sent.filter { $0.notification.title.hasPrefix("Reminder") }
            #expect(reminders.count == 1)
            #expect(reminders.first?.notification.event.booking?.uid == "bk_kept")
            #expect(Date() >= start - 2.5, "the reminder went out long before its time")
            let skipped = try await journal.deliveries(DeliveryQuery(state: .skipped))
            #expect(skipped.count == 1 && skipped.first?.lastError == ScheduledReminder.cancelledReason)
        }
    }
}

extension Pipeline.Outcome {
    var isAccepted: Bool { if case .accepted = self { true } else { false } }
}
