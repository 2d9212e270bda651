import AsyncHTTPClient
import Foundation
import HeraldCore
import HeraldTesting
import NIOCore
import Testing

/// `herald serve` with real notifier targets: Debian's aiosmtpd and a recording HTTP server.
@Suite("notifiers end to end", .serialized)
struct IntegrationTests {
    let secret = "integration-secret-9f8e7d"

    func event(_ name: String) throws -> Data {
        try Data(contentsOf: HeraldProcess.sharedVectors.appendingPathComponent("jicoo-events/\(name).json"))
    }

    /// Writes a configuration with `notifiers` (YAML lines, indented 2) routing every event to `route`.
    func config(_ dir: String, notifiers: String, route: [String], storage: String = "storage: { path: ./journal }",
                level: String = "info") throws -> String {
        try """
            \(storage)
            log: { level: \(level), format: json }
            locale: ja
            endpoints:
              - path: /hooks/jicoo
                secrets: ["${IT_JICOO_SECRET}"]
            notifiers:
            \(notifiers)
            routes:
              - { events: ["*"], notify: [\(route.joined(separator: ", "))] }
            """.write(toFile: "\(dir)/herald.yaml", atomically: true, encoding: .utf8)
        return "\(dir)/herald.yaml"
    }

    func cli(_ arguments: [String]) async throws -> (Int32, String) { try await runHerald(arguments) }

    @Test func bookingMailArrivesAtARealSMTPServer() async throws {
        let smtp = try await SMTPServerProcess()
        defer { smtp.stop() }
        let dir = tempDir()
        let path = try config(dir, notifiers: """
              desk:
                kind: smtp
                host: 127.0.0.1
                port: \(smtp.port)
                security: none
                from: "Herald <bot@example.com>"
                to: ["受付 <desk@example.com>"]
                calendar: true
            """, route: ["desk"])
        let herald = try await HeraldProcess(config: path, environment: ["IT_JICOO_SECRET": secret])
        #expect(try await postSigned("\(herald.url)/hooks/jicoo", body: try event("guest_booked"), secret: secret).0 == 202)
        #expect(try await waitUntil { smtp.messages.count == 1 })
        let mail = try #require(smtp.messages.first)
        #expect(mail["mail_from"] as? String == "bot@example.com")
        #expect(mail["rcpt_tos"] as? [String] == ["desk@example.com"])
        let parsed = try #require(mail["parsed"] as? [String: Any] ?? mail)
        let headers = try #require(parsed["headers"] as? [String: [String]])
        #expect(headers["subject"]?.first == "新しい予約: 山田 太郎 様 — 2026-11-27 (金) 14:00–15:00 JST")
        let types = (parsed["parts"] as? [[String: Any]] ?? []).compactMap { $0["type"] as? String }
        #expect(types.contains("text/plain"))
        #expect(types.contains("text/html"))
        #expect(types.contains("text/calendar"))
        #expect(try await herald.stop() == 0)
    }

    /// The SMTP server is down when the events arrive, and comes up later: every mail arrives.
    @Test func mailsWaitForAnSMTPOutage() async throws {
        // Held until the SMTP server has the port: no server of a test running in parallel
        // can take it meanwhile (Herald would then wait for its greeting, not retry).
        let down = RefusingPort()
        let port = down.port
        let dir = tempDir()
        let path = try config(dir, notifiers: """
              desk:
                kind: smtp
                host: 127.0.0.1
                port: \(port)
                security: none
                from: bot@example.com
                to: [desk@example.com]
                connectTimeout: 1s
                retry: { initial: 200ms, factor: 1.5, max: 1s }
            """, route: ["desk"])
        let herald = try await HeraldProcess(config: path, environment: ["IT_JICOO_SECRET": secret])
        for name in ["guest_booked", "guest_cancelled", "host_rescheduled"] {
            #expect(try await postSigned("\(herald.url)/hooks/jicoo", body: try event(name), secret: secret).0 == 202)
        }
        try await Task.sleep(for: .seconds(2))   // several failed attempts against a closed port
        let (_, pending) = try await cli(["deliveries", "list", "--state", "pending", "--config", path])
        #expect(pending.contains("desk"))
        let smtp = try await SMTPServerProcess(port: port)
        defer { smtp.stop() }
        withExtendedLifetime(down) {}
        #expect(try await waitUntil(.seconds(20)) { smtp.messages.count == 3 }, "\(herald.log)")
        try await Task.sleep(for: .milliseconds(500))
        #expect(smtp.messages.count == 3)
        #expect(try await herald.stop() == 0)
    }

    @Test func cancellationReachesSlackAndChatwork() async throws {
        try await HTTPRecorder.with(reply: { _ in .init(body: #"{"ok":true,"message_id":"1"}"#) }) { recorder in
            let dir = tempDir()
            let path = try config(dir, notifiers: """
                  sales:
                    kind: slack
                    webhookURL: "\(recorder.base)/services/T000/B000/XXXX"
                  office:
                    kind: chatwork
                    token: "${IT_CHATWORK_TOKEN}"
                    roomID: "123456"
                    apiBaseURL: "\(recorder.base)/v2"
                """, route: ["sales", "office"])
            let herald = try await HeraldProcess(config: path, environment: ["IT_JICOO_SECRET": secret, "IT_CHATWORK_TOKEN": "cw-token-abc"])
            #expect(try await postSigned("\(herald.url)/hooks/jicoo", body: try event("guest_cancelled"), secret: secret).0 == 202)
            #expect(try await waitUntil { recorder.requests.count == 2 })
            let slack = try #require(recorder.requests(to: "/services/T000/B000/XXXX").first)
            #expect(slack.headers["content-type"]?.hasPrefix("application/json") == true)
            #expect(slack.json?["text"]?.stringValue?.contains("山田 太郎") == true)
            #expect(slack.json?["blocks"] != nil && slack.json?["blocks"] != .array([]))
            let chatwork = try #require(recorder.requests(to: "/v2/rooms/123456/messages").first)
            #expect(chatwork.headers["x-chatworktoken"] == "cw-token-abc")
            #expect(chatwork.headers["content-type"]?.hasPrefix("application/x-www-form-urlencoded") == true)
            let form = chatwork.text.removingPercentEncoding ?? ""
            #expect(form.contains("[info][title]"))
            #expect(form.contains("別の予定が入ったため"))
            #expect(try await herald.stop() == 0)
            #expect(!herald.log.contains("cw-token-abc"))
        }
    }

    /// 429 with Retry-After: 2, three times, then 200: delivered once, never earlier than asked.
    @Test func rateLimitedChatHonoursRetryAfter() async throws {
        let replies: [HTTPRecorder.Reply] = Array(repeating: .retryAfter(seconds: 2), count: 3) + [.init()]
        try await HTTPRecorder.with(replies: replies) { recorder in
            let dir = tempDir()
            let path = try config(dir, notifiers: """
                  sales: { kind: slack, webhookURL: "\(recorder.base)/hook", retry: { initial: 100ms } }
                """, route: ["sales"])
            let herald = try await HeraldProcess(config: path, environment: ["IT_JICOO_SECRET": secret])
            #expect(try await postSigned("\(herald.url)/hooks/jicoo", body: try event("guest_booked"), secret: secret).0 == 202)
            #expect(try await waitUntil(.seconds(20)) { recorder.requests(to: "/hook").count == 4 })
            try await Task.sleep(for: .milliseconds(800))
            let attempts = recorder.requests(to: "/hook")
            #expect(attempts.count == 4, "delivered once after three 429s")
            for (a, b) in zip(attempts, attempts.dropFirst()) {
                #expect(b.receivedAt - a.receivedAt >= .seconds(1.9), "a retry came \(b.receivedAt - a.receivedAt) after a 429 with Retry-After: 2")
            }
            #expect(try await waitUntil { try await cli(["deliveries", "list", "--config", path]).1.contains("delivered") })
            #expect(try await herald.stop() == 0)
        }
    }

    /// A permanent 400 is dead, listed as such, and `retry` sends it once the endpoint is fixed.
    @Test func deadLetterIsListedAndRetried() async throws {
        try await HTTPRecorder.with(replies: [.init(status: 400, body: #"{"error":"scripted"}"#), .init()]) { recorder in
            let dir = tempDir()
            let path = try config(dir, notifiers: """
                  sales: { kind: slack, webhookURL: "\(recorder.base)/broken" }
                """, route: ["sales"])
            let herald = try await HeraldProcess(config: path, environment: ["IT_JICOO_SECRET": secret])
            #expect(try await postSigned("\(herald.url)/hooks/jicoo", body: try event("guest_booked"), secret: secret).0 == 202)
            var dead = ""
            #expect(try await waitUntil {
                dead = try await cli(["deliveries", "list", "--state", "dead", "--config", path]).1
                return dead.contains("sales")
            })
            #expect(dead.contains("permanent"))
            let id = try #require(dead.split(separator: "\n").dropFirst().first?.split(separator: " ").first.map(String.init))
            let (showStatus, show) = try await cli(["deliveries", "show", id, "--config", path])
            #expect(showStatus == 0)
            #expect(show.contains("guest_booked") && show.contains("bk_7Qx2mZp9"))
            // The endpoint is fixed (it now answers 200); retry from the CLI while the server runs.
            let (status, retried) = try await cli(["deliveries", "retry", "--all-dead", "--config", path])
            #expect(status == 0)
            #expect(retried.hasPrefix("1 delivery queued"))
            #expect(try await waitUntil { recorder.requests(to: "/broken").count == 2 })
            // The outcome is written just after the request: wait for the final state.
            var salesRow: [String]?
            #expect(try await waitUntil {
                let table = try await cli(["status", "--config", path]).1
                salesRow = table.split(separator: "\n").first { $0.hasPrefix("sales") }.map { $0.split(separator: " ").map(String.init) }
                return salesRow == ["sales", "0", "0", "1", "0", "0"]
            })
            #expect(salesRow == ["sales", "0", "0", "1", "0", "0"])
            #expect(try await herald.stop() == 0)
        }
    }

    /// Metrics are exposed, and no secret appears anywhere in a full debug-level run.
    @Test func metricsAndNoSecretInLogs() async throws {
        try await HTTPRecorder.with(reply: { _ in .init(body: #"{"ok":true,"message_id":"1"}"#) }) { recorder in
            let dir = tempDir()
            try "smtp-password-secret-77\n".write(toFile: "\(dir)/smtp.pw", atomically: true, encoding: .utf8)
            let smtp = try await SMTPServerProcess()
            defer { smtp.stop() }
            let path = try config(dir, notifiers: """
                  sales: { kind: slack, webhookURL: "\(recorder.base)/services/TSECRET/BSECRET/tok3n-secret-55" }
                  office: { kind: chatwork, token: chatwork-token-secret-66, roomID: "1", apiBaseURL: "\(recorder.base)/v2" }
                  desk:
                    kind: smtp
                    host: 127.0.0.1
                    port: \(smtp.port)
                    security: none
                    allowPlaintextAuth: true
                    username: bot
                    passwordFile: ./smtp.pw
                    from: bot@example.com
                    to: [desk@example.com]
                """, route: ["sales", "office", "desk"], level: "trace")
            let herald = try await HeraldProcess(config: path, environment: ["IT_JICOO_SECRET": secret])
            #expect(try await postSigned("\(herald.url)/hooks/jicoo", body: try event("guest_booked"), secret: secret).0 == 202)
            #expect(try await postSigned("\(herald.url)/hooks/jicoo", body: try event("guest_cancelled"), secret: "wrong").0 == 401)
            #expect(try await waitUntil { recorder.requests.count == 2 })
            // A delivery is counted after its outcome is in the journal, just after the request.
            var metrics = ""
            #expect(try await waitUntil {
                metrics = try await HTTPGet("\(herald.url)/metrics")
                return metrics.contains("herald_deliveries_total")
            })
            #expect(metrics.contains(#"herald_requests_total{endpoint="/hooks/jicoo",result="accepted"} 1"#))
            #expect(metrics.contains(#"herald_requests_total{endpoint="/hooks/jicoo",result="signature_mismatch"} 1"#))
            #expect(metrics.contains("herald_deliveries_total"))
            #expect(metrics.contains("herald_delivery_duration_seconds"))
            #expect(try await herald.stop() == 0)
            let log = herald.log
            for secret in [secret, "tok3n-secret-55", "chatwork-token-secret-66", "smtp-password-secret-77"] {
                #expect(!log.contains(secret), "\(secret) appeared in the log")
            }
        }
    }
}

func HTTPGet(_ url: String) async throws -> String {
    let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
    return String(buffer: try await response.body.collect(upTo: 1 << 22))
}
