import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Testing

/// A hostile target that sends back everything it was sent: the URL, each path segment and
/// query value on its own, every header. Herald must keep none of the secrets in it.
final class EchoTarget: Sendable {
    let port: Int
    private let group: ServiceGroup
    private let task: Task<Void, any Error>

    init() async throws {
        let portBox = PortBox()
        let router = Router()
        router.on("**", method: .post) { request, _ -> Response in
            var echo = "you called \(request.uri) segments:"
            for segment in request.uri.path.split(separator: "/") { echo += " \(segment)" }
            for part in request.uri.path.split(whereSeparator: { $0 == "/" || $0 == ":" }) { echo += " \(part)" }
            for (_, value) in request.uri.queryParameters { echo += " \(value)" }
            for field in request.headers { echo += " \(field.name)=\(field.value)" }
            return Response(status: .badRequest, headers: [.contentType: "text/plain"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: echo)))
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { portBox.value.store($0.localAddress?.port ?? 0, ordering: .relaxed) },
                              logger: Logger(label: "echo"))
        let group = ServiceGroup(configuration: .init(services: [app], logger: Logger(label: "echo")))
        self.group = group
        task = Task { try await group.run() }
        let deadline = ContinuousClock.now + .seconds(10)
        while portBox.value.load(ordering: .relaxed) == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        port = portBox.value.load(ordering: .relaxed)
    }

    var url: String { "http://127.0.0.1:\(port)" }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}

extension IntegrationTests {
    /// Every chat kind configured with known secrets, pointed at a target that echoes them:
    /// no secret, and no secret part, reaches the trace log, the journal file, the CLI or
    /// the metrics.
    @Test func echoedSecretsAreKeptOutOfLogsJournalCLIAndMetrics() async throws {
        let echo = try await EchoTarget()
        let u = echo.url
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
            try cli(["deliveries", "list", "--state", "dead", "--config", path]).1.split(separator: "\n").count >= 10
        })
        var seen = herald.log
        let (_, list) = try cli(["deliveries", "list", "--config", path])
        seen += list
        for id in list.split(separator: "\n").compactMap({ $0.split(separator: " ").first.flatMap { Int($0) } }) {
            let (_, shown) = try cli(["deliveries", "show", String(id), "--config", path])
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
        await echo.stop()
    }
}
