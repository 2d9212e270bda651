import Foundation
import HeraldCore
import HeraldTesting
import Testing

/// The real binary: `herald serve`, signed events over real HTTP, lines in a real file.
@Suite("herald serve, end to end", .serialized)
struct EndToEndTests {
    let secret = "e2e-secret-value-0123"

    func writeConfig(_ dir: String, storage: String = "storage: { memory: true }") throws -> String {
        let yaml = """
            \(storage)
            log: { level: info, format: json }
            locale: en
            endpoints:
              - path: /hooks/jicoo
                secrets: ["${E2E_JICOO_SECRET}"]
            notifiers:
              audit: { kind: file, path: ./out.jsonl }
            routes:
              - { events: ["*"], notify: [audit] }
            """
        try yaml.write(toFile: "\(dir)/herald.yaml", atomically: true, encoding: .utf8)
        return "\(dir)/herald.yaml"
    }

    @Test func signedEventsBecomeLinesAndShutdownIsClean() async throws {
        let dir = tempDir()
        let herald = try await HeraldProcess(config: try writeConfig(dir), environment: ["E2E_JICOO_SECRET": secret])
        var accepted: [String] = []
        for name in ["guest_booked", "guest_cancelled", "host_rescheduled", "unknown_event"] {
            let body = try Data(contentsOf: HeraldProcess.sharedVectors.appendingPathComponent("jicoo-events/\(name).json"))
            let (status, text) = try await postSigned("\(herald.url)/hooks/jicoo", body: body, secret: secret)
            #expect(status == 202, "\(name): \(text)")
            let id = (try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])?["id"] as? String
            accepted.append(try #require(id))
        }
        let (bad, _) = try await postSigned("\(herald.url)/hooks/jicoo", body: Data("{}".utf8), secret: "not-the-secret")
        #expect(bad == 401)
        #expect(try await waitUntil { jsonLines("\(dir)/out.jsonl").count == 4 })
        let lines = jsonLines("\(dir)/out.jsonl")
        #expect(Set(lines.compactMap { $0["eventId"] as? String }) == Set(accepted))
        #expect(lines.contains { ($0["title"] as? String)?.hasPrefix("Cancelled by guest: 山田 太郎") == true })
        #expect(lines.contains { $0["event"] as? String == "guest_no_show" })
        #expect(try await herald.stop() == 0)
        #expect(!herald.log.contains(secret), "the secret must never be logged")
        #expect(herald.log.contains("\"message\":\"stopped\""))
    }

    @Test func sendTestCommandPostsASignedSample() async throws {
        let dir = tempDir()
        let herald = try await HeraldProcess(config: try writeConfig(dir), environment: ["E2E_JICOO_SECRET": secret])
        let p = Process()
        p.executableURL = URL(fileURLWithPath: HeraldProcess.binary)
        p.arguments = ["send-test", "host_booking_request_accepted", "--url", "\(herald.url)/hooks/jicoo", "--secret", secret]
        let out = Pipe()
        p.standardOutput = out
        let (status, output) = try await ChildProcess.run(p, output: out)
        #expect(status == 0)
        #expect(String(decoding: output, as: UTF8.self).hasPrefix("202 Accepted"))
        #expect(try await waitUntil { jsonLines("\(dir)/out.jsonl").first?["event"] as? String == "host_booking_request_accepted" })
        #expect(try await herald.stop(signal: SIGINT) == 0)
    }

    @Test func checkCommandReportsEveryErrorWithLineNumbers() async throws {
        let dir = tempDir()
        try """
            endpoints:
              - path: /hooks/jicoo
                secrets: [x]
            notifiers:
              audit: { kind: fax, path: out.jsonl }
              mail: { kind: smtp, host: smtp.example.com, from: bot@example.com, to: [a@example.com], calender: true }
              log: { kind: file, path: out.jsonl, fsnyc: true }
            """.write(toFile: "\(dir)/bad.yaml", atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: HeraldProcess.binary)
        p.arguments = ["check", "--config", "\(dir)/bad.yaml"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        let (status, errors) = try await ChildProcess.run(p, output: err)
        #expect(status == 1)
        let text = String(decoding: errors, as: UTF8.self)
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.count == 4, "\(text)")
        #expect(lines.first?.hasPrefix("\(dir)/bad.yaml:5:") == true)
        #expect(text.contains("notifiers.audit.kind: unknown notifier kind \"fax\""))
        #expect(text.contains("\(dir)/bad.yaml:6:") && text.contains("notifiers.mail.calender: unknown key; did you mean \"calendar\"?"))
        #expect(text.contains("\(dir)/bad.yaml:7:") && text.contains("notifiers.log.fsnyc: unknown key; did you mean \"fsync\"?"))
        #expect(lines.last == "herald: 3 configuration errors")
    }
}

/// The custom plugin example (`examples/CustomNotifier`), built and run as a user would.
@Suite("custom plugin example")
struct CustomPluginTests {
    @Test func csvNotifierRunsNextToBuiltIns() async throws {
        let dir = tempDir()
        try """
            storage: { memory: true }
            endpoints: [{ path: /hooks/jicoo, secrets: [csv-secret] }]
            notifiers:
              sheet: { kind: csv, path: ./bookings.csv }
              audit: { kind: file, path: ./out.jsonl }
            routes:
              - { events: ["*"], notify: [sheet, audit] }
            """.write(toFile: "\(dir)/herald.yaml", atomically: true, encoding: .utf8)
        let herald = try await HeraldProcess(config: "\(dir)/herald.yaml", binary: HeraldProcess.executable("custom-herald"))
        let body = try Data(contentsOf: HeraldProcess.sharedVectors.appendingPathComponent("jicoo-events/guest_cancelled.json"))
        #expect(try await postSigned("\(herald.url)/hooks/jicoo", body: body, secret: "csv-secret").0 == 202)
        #expect(try await waitUntil { ((try? String(contentsOfFile: "\(dir)/bookings.csv", encoding: .utf8)) ?? "").contains("\r\n") && jsonLines("\(dir)/out.jsonl").count == 1 })
        let csv = try String(contentsOfFile: "\(dir)/bookings.csv", encoding: .utf8)
        #expect(csv == "event,date,start,end,guest,email,reason\r\nguest_cancelled,2026-11-27 (Fri),14:00,15:00,山田 太郎,taro.yamada@example.jp,別の予定が入ったため\r\n")
        #expect(try await herald.stop() == 0)
    }
}
