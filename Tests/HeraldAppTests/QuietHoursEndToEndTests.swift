import Foundation
import HeraldCore
import HeraldTesting
import Testing

extension IntegrationTests {
    /// The real binary: a delivery inside the file notifier's quiet hours is held in the
    /// journal, survives a restart, and is written once the window ends, once.
    @Test func quietHoursHoldADeliveryAcrossARestartAndReleaseIt() async throws {
        let dir = tempDir()
        // A window from a minute ago to 10 s from now, in UTC, to the second.
        let now = Date()
        let end = Date(timeIntervalSince1970: (now + 10).timeIntervalSince1970.rounded(.down))
        let window = "from: \"\(utcTimeOfDay(now - 60))\", to: \"\(utcTimeOfDay(end))\", zone: UTC"
        let path = try config(dir, notifiers: """
              audit: { kind: file, path: ./out.jsonl, quietHours: { \(window) } }
            """, route: ["audit"])
        let out = "\(dir)/out.jsonl"
        let lines = { fileLines(out).count }

        var herald = try await HeraldProcess(config: path, environment: ["IT_JICOO_SECRET": secret])
        #expect(try await postSigned("\(herald.url)/hooks/jicoo", body: try event("guest_booked"), secret: secret).0 == 202)
        _ = try await waitUntil { try await cli(["deliveries", "list", "--config", path]).1.contains("held for quiet hours") || Date() >= end }
        if Date() < end - 2 {  // a very slow machine may already be past the window
            #expect(lines() == 0)
            #expect(try await herald.stop() == 0)
            herald = try await HeraldProcess(config: path, environment: ["IT_JICOO_SECRET": secret])
            #expect(try await cli(["deliveries", "list", "--state", "pending", "--config", path]).1.contains("held for quiet hours"))
        }
        #expect(try await waitUntil(.seconds(30)) { lines() == 1 })
        #expect(Date() >= end, "the line was written before the quiet hours ended")
        #expect(try await herald.stop() == 0)
        #expect(lines() == 1)
    }
}
