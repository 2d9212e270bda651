import Foundation
import HeraldCore
import HeraldTesting
import Testing

extension IntegrationTests {
    func bookingBody(_ name: String, uid: String, start: Date) throws -> Data {
        try #require(SampleEvents.jicooBody(name, booking: uid, startingAt: start))
    }

    /// The real binary, killed with SIGKILL between acceptance and the reminder's time: the
    /// reminder still goes out once, not before its time; a cancelled booking gets none.
    @Test func aReminderSurvivesKill9AndACancellationStopsAnother() async throws {
        let dir = tempDir()
        let path = "\(dir)/herald.yaml"
        try """
            storage: { path: ./journal }
            log: { level: info, format: json }
            locale: en
            endpoints:
              - path: /hooks/jicoo
                secrets: ["${IT_JICOO_SECRET}"]
            notifiers:
              audit: { kind: file, path: ./out.jsonl }
            routes:
              - { events: [guest_booked], notify: [audit], remind: [4s] }
              - { events: [guest_cancelled], notify: [audit] }
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let out = "\(dir)/out.jsonl"
        let lines = { fileLines(out) }
        let start = Date(timeIntervalSince1970: (Date() + 8).timeIntervalSince1970.rounded(.down))
        let remindAt = start - 4

        let first = try await HeraldProcess(config: path, environment: ["IT_JICOO_SECRET": secret])
        for uid in ["bk_kept", "bk_dropped"] {
            #expect(try await postSigned("\(first.url)/hooks/jicoo", body: try bookingBody("guest_booked", uid: uid, start: start),
                                         secret: secret).0 == 202)
        }
        #expect(try await postSigned("\(first.url)/hooks/jicoo", body: try bookingBody("guest_cancelled", uid: "bk_dropped", start: start),
                                     secret: secret).0 == 202)
        // Killed once the three notifications are written and recorded (a line written but not
        // yet recorded would be written again after the restart: at-least-once).
        let recorded = try await waitUntil {
            let delivered = try await cli(["deliveries", "list", "--state", "delivered", "--config", path]).1
            return lines().count == 3 && delivered.split(separator: "\n").count == 4  // a header and three rows
        }
        #expect(recorded)
        #expect(try await first.stop(signal: SIGKILL) != 0)

        let second = try await HeraldProcess(config: path, environment: ["IT_JICOO_SECRET": secret])
        #expect(try await waitUntil(.seconds(30)) { lines().count == 4 })
        #expect(Date() >= remindAt, "the reminder was written before its time")
        // Past the start: nothing more comes.
        try await Task.sleep(for: .seconds(max(0, start.timeIntervalSinceNow) + 1))
        let written = lines()
        #expect(written.count == 4)
        let reminders = written.filter { $0.contains("\"title\":\"Reminder: ") }
        #expect(reminders.count == 1)
        #expect(reminders.first?.contains("bk_kept") == true)
        let (_, list) = try await cli(["deliveries", "list", "--state", "skipped", "--config", path])
        #expect(list.contains("the booking was cancelled"))
        #expect(try await second.stop() == 0)
    }
}

extension IntegrationTests {
    /// The example configuration for reminders and quiet hours passes `herald check`.
    @Test func theRemindersExampleChecksClean() async throws {
        let example = HeraldProcess.repoRoot.appendingPathComponent("examples/reminders.yaml").path
        let (status, output) = try await cli(["check", "--config", example])
        #expect(status == 0, "\(output)")
    }
}

extension IntegrationTests {
    /// The real binary: an agenda due a few seconds ahead lists the day's bookings once,
    /// though Herald is killed just before it is due and started again just after.
    @Test func theAgendaIsSentOnceAcrossARestartAtItsTime() async throws {
        let dir = tempDir()
        let path = "\(dir)/herald.yaml"
        let due = Date(timeIntervalSince1970: (Date() + 6).timeIntervalSince1970.rounded(.down))
        try """
            storage: { path: ./journal }
            log: { level: info, format: json }
            locale: en
            endpoints:
              - path: /hooks/jicoo
                secrets: ["${IT_JICOO_SECRET}"]
            notifiers:
              desk: { kind: file, path: ./out.jsonl, agenda: { at: "\(utcTimeOfDay(due))", zone: UTC } }
            routes:
              - { events: [host_cancelled], notify: [desk] }
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let out = "\(dir)/out.jsonl"
        let lines = { fileLines(out) }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let day = calendar.startOfDay(for: due)

        let first = try await HeraldProcess(config: path, environment: ["IT_JICOO_SECRET": secret])
        for (uid, hour) in [("bk_afternoon", 14), ("bk_morning", 9), ("bk_next_day", 33)] {
            let body = try #require(SampleEvents.jicooBody("guest_booked", booking: uid, startingAt: day + Double(hour) * 3600))
            #expect(try await postSigned("\(first.url)/hooks/jicoo", body: body, secret: secret).0 == 202)
        }
        if Date() < due - 1 {  // a very slow machine may be past it already: then no restart in between
            #expect(try await first.stop(signal: SIGKILL) != 0)
            try await Task.sleep(for: .seconds(max(0, due.timeIntervalSinceNow) + 1))
            let second = try await HeraldProcess(config: path, environment: ["IT_JICOO_SECRET": secret])
            #expect(try await waitUntil(.seconds(30)) { lines().count == 1 })
            try await Task.sleep(for: .seconds(1))
            #expect(try await second.stop() == 0)
        } else {
            #expect(try await waitUntil(.seconds(30)) { lines().count == 1 })
            #expect(try await first.stop() == 0)
        }
        let written = lines()
        #expect(written.count == 1)
        let date = ISO8601.format(day).prefix(10)
        #expect(written.first?.contains("\"title\":\"Bookings for \(date) (2)\"") == true, "\(written)")
        #expect(written.first?.contains("09:00–10:00") == true)
    }
}
