import Foundation
import Testing

/// Every configuration under `examples/` is one `herald check` accepts, so what README and
/// the examples show keeps working.
@Suite struct ExampleConfigTests {
    /// Values for the `${VAR}`s the examples read without a default (`examples/chat.yaml`).
    static let environment = [
        "JICOO_SECRET": "example-secret", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T1/B1/abc",
        "DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/1/tok", "TEAMS_WORKFLOW_URL": "https://prod.example.com/workflows/1",
        "GOOGLE_CHAT_WEBHOOK_URL": "https://chat.googleapis.com/v1/spaces/A/messages?key=k&token=t",
        "MATTERMOST_WEBHOOK_URL": "https://mm.example.com/hooks/x", "CHATWORK_API_TOKEN": "cw", "CHATWORK_ROOM_ID": "123",
        "LINE_CHANNEL_ACCESS_TOKEN": "lt", "LINE_TO": "U1", "TELEGRAM_BOT_TOKEN": "1:t", "TELEGRAM_CHAT_ID": "-100",
        "CRM_WEBHOOK_URL": "https://crm.example.com/in", "CRM_WEBHOOK_SECRET": "whsec_c2VjcmV0",
    ]

    @Test func everyExampleConfigurationPassesCheck() async throws {
        let examples = HeraldProcess.repoRoot.appendingPathComponent("examples")
        let files = (FileManager.default.enumerator(atPath: examples.path)?.allObjects as? [String] ?? [])
            .filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
        #expect(files.contains("routes.yaml"))
        #expect(files.count >= 4, "\(files)")
        for file in files {
            // The custom plugin's example needs the binary that registers its kind.
            let binary = file.hasPrefix("CustomNotifier/") ? HeraldProcess.executable("custom-herald") : HeraldProcess.binary
            let (status, out) = try await runHerald(["check", "-c", examples.appendingPathComponent(file).path],
                                              environment: Self.environment, binary: binary)
            #expect(status == 0, "\(file): \(out)")
            #expect(out.contains(": OK"), "\(file): \(out)")
        }
    }
}
