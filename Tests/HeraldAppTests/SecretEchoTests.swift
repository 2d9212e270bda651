import AsyncHTTPClient
import Foundation
import HeraldTesting
import NIOCore
import Testing

/// A hostile target's answer: everything it was sent, the URL, each path segment and query
/// value on its own, every header. Herald must keep none of the secrets in it.
func echo(_ request: HTTPRecorder.Request) -> HTTPRecorder.Reply {
    var text = "you called \(request.uri) segments:"
    for part in request.path.split(whereSeparator: { $0 == "/" || $0 == ":" }) { text += " \(part)" }
    let query = request.uri.split(separator: "?", maxSplits: 1).dropFirst().first ?? ""
    for pair in query.split(separator: "&") { text += " " + (pair.split(separator: "=", maxSplits: 1).last.map(String.init) ?? "") }
    for (name, value) in request.headers { text += " \(name)=\(value)" }
    return HTTPRecorder.Reply(status: 400, headers: ["Content-Type": "text/plain"], body: text)
}

extension IntegrationTests {
    /// Every chat kind configured with known secrets, pointed at a target that echoes them:
    /// no secret, and no secret part, reaches the trace log, the journal file, the CLI or
    /// the metrics.
    @Test func echoedSecretsAreKeptOutOfLogsJournalCLIAndMetrics() async throws {
        try await HTTPRecorder.with(reply: echo) { target in
            let u = target.base
            // Each secret, and each part of it a service might echo on its own.
            let secrets = [
                "T0SLACK1", "B0SLACK2", "slackSecretToken24charsX",
                "112233445566778899", "discordSecretTokenValue",
                "teamsWorkflow123", "teamsSignatureSecret",
                "AAAAgchat42", "gchatKeySecret", "gchatTokenSecret",
                "mattermostHookId9",
                "chatworkTokenSecret", "lineChannelTokenSecret", "telegramSecretHalf",
                "crmUrlTokenSecret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ]
            let dir = tempDir()
            let path = try config(dir, notifiers: """
                  slack: { kind: slack, webhookURL: "\(u)/services/T0SLACK1/B0SLACK2/slackSecretToken24charsX" }
                  discord: { kind: discord, webhookURL: "\(u)/api/webhooks/112233445566778899/discordSecretTokenValue" }
                  teams: { kind: teams, webhookURL: "\(u)/workflows/teamsWorkflow123/triggers/manual/paths/invoke?api-version=2016-06-01&sig=teamsSignatureSecret" }
                  gchat: { kind: googlechat, webhookURL: "\(u)/v1/spaces/AAAAgchat42/messages?key=gchatKeySecret&token=gchatTokenSecret" }
                  mm: { kind: mattermost, webhookURL: "\(u)/hooks/mattermostHookId9" }
                  cw: { kind: chatwork, token: chatworkTokenSecret, roomID: 42, apiBaseURL: "\(u)/v2" }
                  line: { kind: line, token: lineChannelTokenSecret, to: U0123456789abcdef, apiBaseURL: "\(u)" }
                  tg: { kind: telegram, token: "987654321:telegramSecretHalf", chatID: 42, apiBaseURL: "\(u)" }
                  crm: { kind: webhook, url: "\(u)/crm/in?token=crmUrlTokenSecret", secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw }
                """, route: ["slack", "discord", "teams", "gchat", "mm", "cw", "line", "tg", "crm"], level: "trace")
            let herald = try await HeraldProcess(config: path, environment: ["IT_JICOO_SECRET": secret])
            #expect(try await postSigned("\(herald.url)/hooks/jicoo", body: try event("guest_booked"), secret: secret).0 == 202)
            // 400 is permanent: every delivery ends dead, with the target's answer as its error.
            #expect(try await waitUntil(.seconds(20)) {
                try await cli(["deliveries", "list", "--state", "dead", "--config", path]).1.split(separator: "\n").count >= 10
            })
            var seen = herald.log
            let (_, list) = try await cli(["deliveries", "list", "--config", path])
            seen += list
            for id in list.split(separator: "\n").compactMap({ $0.split(separator: " ").first.flatMap { Int($0) } }) {
                let (_, shown) = try await cli(["deliveries", "show", String(id), "--config", path])
                #expect(shown.contains("<redacted>") || !shown.contains("you called"), "delivery \(id) shows the echo without redaction")
                seen += shown
            }
            let metrics = try await HTTPClient.shared.execute(HTTPClientRequest(url: "\(herald.url)/metrics"), timeout: .seconds(10))
            seen += String(buffer: try await metrics.body.collect(upTo: 1 << 22))
            #expect(try await herald.stop() == 0)
            var journal = Data()
            for file in (try? FileManager.default.contentsOfDirectory(atPath: "\(dir)/journal")) ?? [] {
                journal += (try? Data(contentsOf: URL(fileURLWithPath: "\(dir)/journal/\(file)"))) ?? Data()
            }
            #expect(seen.contains("you called"), "the echoes were not recorded anywhere, so the test shows nothing")
            for s in secrets {
                #expect(!seen.contains(s), "\(s) leaked into the log, the CLI or the metrics")
                #expect(journal.range(of: Data(s.utf8)) == nil, "\(s) is stored in the journal")
            }
        }
    }
}
