import Foundation
import HeraldCore
import HeraldTesting
import Testing

/// `herald routes test` and `herald render`, run as the real binary against
/// `examples/routes.yaml` and against configurations pointing at a local recorder.
@Suite struct PreviewCommandTests {
    static var example: String { HeraldProcess.repoRoot.appendingPathComponent("examples/routes.yaml").path }

    /// `routes test` also says which reminders an event would schedule (here: too late, since
    /// the sample booking is in the past) and which agenda would list it.
    @Test func routesTestShowsRemindersAndAgendas() async throws {
        let example = HeraldProcess.repoRoot.appendingPathComponent("examples/reminders.yaml").path
        let (status, out) = try await runHerald(["routes", "test", "guest_booked", "-c", example])
        #expect(status == 0, "\(out)")
        #expect(out.contains("remind     desk 1d before the start, at 2026-11-26T05:00:00Z; skipped: its time"), "\(out)")
        #expect(out.contains("remind     desk 1h before the start, at 2026-11-27T04:00:00Z; skipped: its time"), "\(out)")
        #expect(out.contains("agenda     desk lists it in the agenda for 2026-11-27, sent at 2026-11-26T23:00:00Z"), "\(out)")
        let (_, cancelled) = try await runHerald(["routes", "test", "guest_cancelled", "-c", example])
        #expect(cancelled.contains("reminders  cancels the pending reminders of booking bk_7Qx2mZp9"), "\(cancelled)")
        #expect(!cancelled.contains("agenda     "), "\(cancelled)")
    }

    @Test func routesTestNamesMatchesTheConditionThatFailedAndTheNotifiers() async throws {
        let (status, out) = try await runHerald(["routes", "test", "guest_booked", "-c", Self.example])
        #expect(status == 0, "\(out)")
        #expect(out.contains("event      guest_booked evt_0000sample0001 on /hooks/jicoo (source jicoo)"), "\(out)")
        #expect(out.contains("routes[0]  match → audit; continue: true"), "\(out)")
        #expect(out.contains("routes[1]  no match: guestEmail \"*@example.co.jp\" does not hold"), "\(out)")
        #expect(out.contains("routes[2]  match → front-desk; routing stops here"), "\(out)")
        #expect(out.contains("routes[3]  not tried: routes[2] matched without continue: true"), "\(out)")
        #expect(out.contains("notify     audit"), "\(out)")
        #expect(out.contains("notify     front-desk  template pricing, locale ja (routes[2])"), "\(out)")
        // The condition excluded the event from the enterprise notifier.
        #expect(!out.contains("notify     enterprise"), "\(out)")
    }

    @Test func routesTestDecodesABodyAsTheChosenEndpoint() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let toMain = "\(dir)/main.json", toDevelop = "\(dir)/develop.json"
        try Data(#"{"action": "opened", "number": 7, "pull_request": {"draft": false, "base": {"ref": "main"}, "head": {"ref": "feature/rooms"}}}"#.utf8)
            .write(to: URL(fileURLWithPath: toMain))
        try Data(#"{"action": "opened", "number": 8, "pull_request": {"draft": false, "base": {"ref": "develop"}, "head": {"ref": "feature/rooms"}}}"#.utf8)
            .write(to: URL(fileURLWithPath: toDevelop))
        let arguments = ["routes", "test", "-c", Self.example, "--endpoint", "/hooks/github", "--header", "X-GitHub-Event: pull_request"]

        let (status, out) = try await runHerald(arguments + ["--body", toMain])
        #expect(status == 0, "\(out)")
        #expect(out.contains("event      pull_request "), "\(out)")
        #expect(out.contains("routes[0]  no match: events [\"guest_*\", \"host_*\"] do not name pull_request"), "\(out)")
        #expect(out.contains("notify     releases"), "\(out)")

        let (_, excluded) = try await runHerald(arguments + ["--body", toDevelop])
        #expect(excluded.contains("no match: where[0] pull_request.base.ref in [\"main\", \"release\"] does not hold"), "\(excluded)")
        #expect(excluded.contains("no notifier gets this event"), "\(excluded)")
    }

    @Test func renderShowsTheEmailWithItsInvitation() async throws {
        let (status, out) = try await runHerald(["render", "guest_booked", "--notifier", "front-desk", "-c", Self.example])
        #expect(status == 0, "\(out)")
        #expect(out.contains("route     routes[2], template pricing, locale ja"), "\(out)")
        #expect(out.contains("title     料金のご相談: 山田 太郎 様"), "\(out)")
        #expect(out.contains("── SMTP smtp.example.com:587 (starttls)"), "\(out)")
        #expect(out.contains("RCPT TO: <desk@example.com>"), "\(out)")
        #expect(out.contains("── message (message/rfc822)"), "\(out)")
        #expect(out.contains("Subject: =?UTF-8?"), "\(out)")
        #expect(out.contains("── invite.ics (text/calendar; method=REQUEST)"), "\(out)")
        #expect(out.contains("BEGIN:VCALENDAR"), "\(out)")
        #expect(out.contains("DTSTART:20261127T050000Z"), "\(out)")
    }

    @Test func renderOfAnExcludedEventSaysSoUnlessARouteIsNamed() async throws {
        let (status, out) = try await runHerald(["render", "guest_booked", "--notifier", "enterprise", "-c", Self.example])
        #expect(status == 1)
        #expect(out.contains("no route sends guest_booked to enterprise"), "\(out)")

        let (forced, line) = try await runHerald(["render", "guest_booked", "--notifier", "enterprise", "--route", "1",
                                            "-c", Self.example, "--format", "json"])
        #expect(forced == 0, "\(line)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(json["route"] as? Int == 1)
        let payload = try #require(json["payload"] as? [String: Any])
        #expect((payload["destination"] as? String)?.hasSuffix("examples/enterprise.jsonl") == true)
        let part = try #require((payload["parts"] as? [[String: Any]])?.first)
        #expect(part["name"] as? String == "line")
        let written = try #require(try JSONSerialization.jsonObject(with: Data((part["content"] as? String ?? "").utf8)) as? [String: Any])
        #expect(written["event"] as? String == "guest_booked")
        #expect(written["notifier"] as? String == "enterprise")
        #expect(!FileManager.default.fileExists(atPath: HeraldProcess.repoRoot.appendingPathComponent("examples/enterprise.jsonl").path))
    }

    /// A plugin without `preview(_:)` (the custom example) gets the default: its notification
    /// is shown, its payload is null.
    @Test func aPluginWithoutPreviewShowsItsNotification() async throws {
        let config = HeraldProcess.repoRoot.appendingPathComponent("examples/CustomNotifier/herald.yaml").path
        let (status, out) = try await runHerald(["render", "guest_booked", "--notifier", "sheet", "-c", config, "--format", "json"],
                                          binary: HeraldProcess.executable("custom-herald"))
        #expect(status == 0, "\(out)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        #expect(json["kind"] as? String == "csv")
        #expect((json["title"] as? String)?.hasPrefix("New booking: 山田 太郎") == true)
        #expect(json["payload"] is NSNull)
        let (_, text) = try await runHerald(["render", "guest_booked", "--notifier", "sheet", "-c", config],
                                      binary: HeraldProcess.executable("custom-herald"))
        #expect(text.contains("(the csv plugin does not show its payload: it implements no preview)"), "\(text)")
    }

    /// Each chat kind shows its real request; the recorder standing in for the services
    /// proves nothing was sent, and the secrets in the URLs and tokens never print.
    @Test func renderShowsChatRequestsWithoutSendingOrPrintingSecrets() async throws {
        try await HTTPRecorder.with { server in
            let dir = tempDir()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let secret = "T0SECRETPART/B0SECRETPART/xoxSecretToken123"
            let yaml = """
                endpoints: [{ path: /hooks/jicoo, secrets: [local-secret] }]
                notifiers:
                  slack: { kind: slack, webhookURL: "\(server.base)/services/\(secret)" }
                  line: { kind: line, token: lineSecretToken456, to: U123, apiBaseURL: "\(server.base)" }
                  hook: { kind: webhook, url: "\(server.base)/in/hookSecret789", secret: "whsec_c2VjcmV0LXNpZ25pbmcta2V5" }
                routes:
                  - { events: ["*"], notify: [slack, line, hook] }
                """
            try Data(yaml.utf8).write(to: URL(fileURLWithPath: "\(dir)/herald.yaml"))
            var outputs: [String: String] = [:]
            for notifier in ["slack", "line", "hook"] {
                let (status, out) = try await runHerald(["render", "guest_cancelled", "--notifier", notifier, "-c", "\(dir)/herald.yaml",
                                                   "--format", "json"])
                #expect(status == 0, "\(out)")
                outputs[notifier] = out
                for secret in ["SECRETPART", "xoxSecretToken123", "lineSecretToken456", "hookSecret789", "c2VjcmV0LXNpZ25pbmcta2V5"] {
                    #expect(!out.contains(secret), "\(notifier) printed \(secret)")
                }
            }
            #expect(server.requests.isEmpty)

            func payload(_ notifier: String) throws -> (destination: String, headers: [String: String], body: JSONValue) {
                let json = try #require(try JSONSerialization.jsonObject(with: Data((outputs[notifier] ?? "").utf8)) as? [String: Any])
                let payload = try #require(json["payload"] as? [String: Any])
                let headers = (payload["headers"] as? [[String: String]] ?? []).reduce(into: [:]) { $0[$1["name"] ?? ""] = $1["value"] }
                let part = try #require((payload["parts"] as? [[String: Any]])?.first)
                return (payload["destination"] as? String ?? "", headers, try JSONValue.parse(Data((part["content"] as? String ?? "").utf8)))
            }
            let slack = try payload("slack")
            #expect(slack.destination.hasPrefix("POST \(server.base)"))
            #expect(slack.body["blocks"] != nil)
            let line = try payload("line")
            #expect(line.destination == "POST \(server.base)/v2/bot/message/push")
            #expect(line.headers["Authorization"] == "Bearer <redacted>")
            #expect(line.headers["X-Line-Retry-Key"] != nil)
            #expect(line.body["to"] == .string("U123"))
            let hook = try payload("hook")
            #expect(hook.headers["webhook-signature"]?.hasPrefix("v1,") == true)
            #expect(hook.body["event"] == .string("guest_cancelled"))
        }
    }
}
