import Foundation
import HeraldTesting
import Testing
@testable import HeraldCore

@Suite("Quiet hours")
struct QuietHoursTests {
    static func at(_ text: String) -> Date { ISO8601.parse(text)! }
    static func quiet(_ from: String, _ to: String, zone: String, days: Set<Int> = Set(1...7)) -> QuietHours {
        QuietHours(from: .init(from)!, to: .init(to)!, zone: TimeZone(identifier: zone)!, days: days)
    }

    @Test func anOvernightWindowRunsPastMidnightInItsZone() {
        let q = Self.quiet("22:00", "08:00", zone: "Asia/Tokyo")
        // 2026-12-01 23:00 JST is 14:00 UTC.
        let w = q.window(containing: Self.at("2026-12-01T14:00:00Z"))
        #expect(w == DateInterval(start: Self.at("2026-12-01T13:00:00Z"), end: Self.at("2026-12-01T23:00:00Z")))
        #expect(q.window(containing: Self.at("2026-12-01T22:59:59Z")) != nil)   // 07:59:59 JST
        #expect(q.window(containing: Self.at("2026-12-01T23:00:00Z")) == nil)   // 08:00 JST
        #expect(q.window(containing: Self.at("2026-12-01T12:59:59Z")) == nil)   // 21:59:59 JST
    }

    @Test func aSameDayWindowAndItsEdges() {
        let q = Self.quiet("12:00", "13:30:15", zone: "UTC")
        #expect(q.window(containing: Self.at("2026-12-01T11:59:59Z")) == nil)
        #expect(q.window(containing: Self.at("2026-12-01T12:00:00Z"))?.end == Self.at("2026-12-01T13:30:15Z"))
        #expect(q.window(containing: Self.at("2026-12-01T13:30:15Z")) == nil)
    }

    /// `days` are the days a window begins on: Friday night runs into Saturday morning.
    @Test func daysAreTheDaysAWindowBegins() {
        let q = Self.quiet("22:00", "08:00", zone: "UTC", days: [6])  // Friday
        #expect(q.window(containing: Self.at("2026-12-04T23:00:00Z")) != nil)   // Friday night
        #expect(q.window(containing: Self.at("2026-12-05T07:00:00Z")) != nil)   // Saturday morning
        #expect(q.window(containing: Self.at("2026-12-05T23:00:00Z")) == nil)   // Saturday night
        #expect(q.window(containing: Self.at("2026-12-04T07:00:00Z")) == nil)   // Friday morning (Thursday's window)
    }

    /// New York springs forward on 2026-03-08 at 02:00 (to 03:00): 02:30 does not exist and
    /// means 03:00 EDT (07:00 UTC).
    @Test func aLocalTimeSkippedBySpringForwardMeansTheNextOne() {
        let q = Self.quiet("02:30", "03:30", zone: "America/New_York")
        let w = q.window(containing: Self.at("2026-03-08T07:10:00Z"))
        #expect(w == DateInterval(start: Self.at("2026-03-08T07:00:00Z"), end: Self.at("2026-03-08T07:30:00Z")))
        #expect(q.window(containing: Self.at("2026-03-08T06:59:59Z")) == nil)
        // Any other day it is an hour long.
        #expect(q.window(containing: Self.at("2026-03-09T07:00:00Z"))?.duration == 3600)
    }

    /// New York falls back on 2026-11-01 at 02:00 (to 01:00): 01:30 happens twice and means
    /// the first, 01:30 EDT (05:30 UTC).
    @Test func aLocalTimeRepeatedByFallBackMeansTheFirst() {
        let q = Self.quiet("00:30", "01:30", zone: "America/New_York")
        let w = q.window(containing: Self.at("2026-11-01T05:00:00Z"))
        #expect(w == DateInterval(start: Self.at("2026-11-01T04:30:00Z"), end: Self.at("2026-11-01T05:30:00Z")))
        #expect(q.window(containing: Self.at("2026-11-01T06:15:00Z")) == nil)  // 01:15 EST, the second time round
    }

    @Test func everyMistakeIsALocatedConfigurationError() throws {
        let yaml = """
            storage: { memory: true }
            endpoints: [{ path: /h, secrets: [x] }]
            notifiers:
              a: { kind: recording, quietHours: { from: "25:00", to: "08:00", zone: UTC } }
              b: { kind: recording, quietHours: { from: "22:00", to: "08:00", zone: Mars/Olympus } }
              c: { kind: recording, quietHours: { from: "22:00", to: "08:00", zone: UTC, days: [mon, funday] } }
              d: { kind: recording, quietHours: { from: "22:00", to: "22:00", zone: UTC } }
              e: { kind: recording, quietHours: { from: "22:00", to: "08:00" } }
              f: { kind: recording, quietHours: { from: "22:00", to: "08:00", zone: UTC, action: mute } }
              g: { kind: recording, quietHours: { from: "22:00", to: "08:00", zone: UTC, unit: s } }
            routes:
              - { events: ["*"], notify: [a, b, c, d, e, f, g] }
            """
        guard case .failure(let found) = try ConfigLoader.testing().check(yaml: yaml, file: "herald.yaml") else {
            Issue.record("expected errors")
            return
        }
        #expect(found.errors.map(\.keyPath) == [
            "notifiers.a.quietHours.from", "notifiers.b.quietHours.zone", "notifiers.c.quietHours.days",
            "notifiers.d.quietHours.to", "notifiers.e.quietHours.zone", "notifiers.f.quietHours.action",
            "notifiers.g.quietHours.unit",
        ])
        let text = found.errors.map(\.description).joined(separator: "\n")
        #expect(text.contains("herald.yaml:4:"))
        #expect(text.contains("expected a local time as HH:MM or HH:MM:SS"))
        #expect(text.contains("unknown time zone \"Mars/Olympus\""))
        #expect(text.contains("unknown day \"funday\""))
        #expect(text.contains("the window would be empty"))
        #expect(text.contains("expected hold or drop"))
    }

    /// A window around now that ends `seconds` from now, in UTC, as configuration text.
    static func windowEnding(in seconds: Int) -> (yaml: String, end: Date) {
        let now = Date()
        let end = now + TimeInterval(seconds)
        // A start a minute ago (not across midnight: the test then waits for the next second).
        return ("from: \"\(utcTimeOfDay(now - 60))\", to: \"\(utcTimeOfDay(end))\", zone: UTC",
                Date(timeIntervalSince1970: end.timeIntervalSince1970.rounded(.down)))
    }

    @Test func heldDeliveriesWaitForTheWindowToEndThenGoInOrder() async throws {
        let journal: any Journal = MemoryJournal()
        let (window, end) = Self.windowEnding(in: 8)
        let endInstant = ContinuousClock.now + .seconds(end.timeIntervalSinceNow)
        let h = try await Harness("  fast: { kind: recording, label: fast, concurrency: 1, quietHours: { \(window) } }",
                                  routes: "  - { events: [\"*\"], notify: [fast] }", journal: journal)
        try await h.running { () async throws in
            for name in ["guest_booked", "guest_cancelled"] {
                let (body, hdr) = try h.signed(name)
                guard case .accepted = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr) else {
                    Issue.record("not accepted"); return
                }
            }
            _ = try await waitUntil {
                try await journal.deliveries(DeliveryQuery(state: .pending)).count == 2 || Date() >= end
            }
            // Both held: each is pending until the window's end, unattempted, saying why. On a
            // very slow machine (the harness took the whole window to start) the window may end
            // between the two first attempts; the second then goes at once, before the held one,
            // and there is no held order to check: only that nothing went early.
            let held = try await journal.deliveries(DeliveryQuery(state: .pending))
            let bothHeld = held.count == 2 && held.allSatisfy {
                $0.dueAt == end && $0.attempts == 0 && $0.lastError?.hasPrefix("held for quiet hours until") == true
            }
            if Date() < end - 1 {  // a second to spare: the sweep has not taken them yet
                #expect(bothHeld, "\(held)")
            }
            #expect(try await waitUntil(.seconds(30)) { h.log.count("fast") == 2 })
            let sent = h.log.entries.withLock { $0 }
            #expect(sent.allSatisfy { $0.at >= endInstant - .milliseconds(200) }, "sent before the window ended")
            if bothHeld {
                #expect(sent.map(\.notification.event.name) == ["guest_booked", "guest_cancelled"])
            }
        }
    }

    @Test func droppedDeliveriesAreSkippedNotSent() async throws {
        let journal: any Journal = MemoryJournal()
        let (window, _) = Self.windowEnding(in: 30)
        let h = try await Harness("  fast: { kind: recording, label: fast, quietHours: { \(window), action: drop } }",
                                  routes: "  - { events: [\"*\"], notify: [fast] }", journal: journal)
        try await h.running { () async throws in
            let (body, hdr) = try h.signed("guest_booked")
            _ = await h.pipeline.receive(path: "/hooks/jicoo", body: body, header: hdr)
            #expect(try await waitUntil { try await journal.deliveries(DeliveryQuery(state: .skipped)).count == 1 })
        }
        #expect(h.log.count("fast") == 0)
        #expect(try await journal.deliveries(DeliveryQuery(state: .skipped)).first?.lastError == "dropped: sent during quiet hours")
        #expect(h.pipeline.undeliveredCount == 0)
    }
}
