import Foundation
import HeraldCore
import HeraldTesting
import Testing

@testable import ChatNotifiers

/// The kinds as Herald's configuration loader builds them from YAML.
@Suite("Configuration through Herald's loader")
struct ConfigTests {
    static let environment = [
        "JICOO_SECRET": "s", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T1/B1/abc",
        "DISCORD_WEBHOOK_URL": "https://discord.com/api/webhooks/1/tok", "TEAMS_WORKFLOW_URL": "https://prod.example.com/workflows/1",
        "GOOGLE_CHAT_WEBHOOK_URL": "https://chat.googleapis.com/v1/spaces/A/messages?key=k&token=t",
        "MATTERMOST_WEBHOOK_URL": "https://mm.example.com/hooks/x", "CHATWORK_API_TOKEN": "cw", "CHATWORK_ROOM_ID": "123",
        "LINE_CHANNEL_ACCESS_TOKEN": "lt", "LINE_TO": "U1", "TELEGRAM_BOT_TOKEN": "1:t", "TELEGRAM_CHAT_ID": "-100",
        "CRM_WEBHOOK_URL": "https://crm.example.com/in", "CRM_WEBHOOK_SECRET": "whsec_c2VjcmV0",
    ]

    static func loader(_ environment: [String: String] = environment) throws -> ConfigLoader {
        ConfigLoader(registry: try PluginRegistry(ChatNotifierKinds.all), environment: environment)
    }

    @Test func exampleLoadsWithEveryKind() throws {
        let config = try Self.loader().load(file: SharedVectors.repositoryRoot.appendingPathComponent("examples/chat.yaml").path)
        #expect(Set(config.notifiers.map(\.kind)) == Set(ChatNotifierKinds.all.map { $0.kind }))
        let telegram = try #require(config.notifiers.first { $0.name == "telegram" })
        #expect(telegram.policy.timeout == .seconds(20))
        let chatwork = try #require(config.notifiers.first { $0.plugin is ChatworkNotifier }?.plugin as? ChatworkNotifier)
        #expect(chatwork.settings.roomID == "123")
    }

    func load(_ notifier: String, files: [String: String] = [:]) throws -> HeraldConfig {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("herald-chat-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for (name, content) in files { try content.write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8) }
        let yaml = """
        endpoints:
          - { path: /hooks/jicoo, secrets: ["s"] }
        notifiers:
          n:
        \(notifier.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
        routes:
          - { events: ["*"], notify: [n] }
        """
        return try Self.loader([:]).load(yaml: yaml, baseDirectory: directory.path)
    }

    @Test func secretFromFile() throws {
        let config = try load("kind: slack\nwebhookURLFile: slack.secret\nconnectTimeout: 3s",
                              files: ["slack.secret": "https://hooks.slack.com/services/T1/B1/fromfile\n"])
        let slack = try #require(config.notifiers.first?.plugin as? SlackNotifier)
        #expect(slack.endpoint.url.absoluteString == "https://hooks.slack.com/services/T1/B1/fromfile")
        #expect(slack.endpoint.sender.options == HTTPOptions(connectTimeout: .seconds(3)))
    }

    @Test func unknownKeysAreErrors() {
        do {
            _ = try load("kind: discord\nwebhookUrl: https://discord.com/api/webhooks/1/t")
            Issue.record("expected an error")
        } catch let error as ConfigError {
            #expect(error.keyPath.hasPrefix("notifiers.n"))
            #expect(error.message.contains("webhookUrl") || error.keyPath.contains("webhookUrl"))
        } catch {
            Issue.record("expected a ConfigError, got \(error)")
        }
    }

    /// One misspelled key per kind, each refused with the key it resembles.
    static let misspellings: [(kind: any NotifierPlugin.Type, settings: String, typo: String, meant: String)] = [
        (SlackNotifier.self, "webhookURL: https://hooks.slack.com/services/T/B/x\nwebhookUrl: x", "webhookUrl", "webhookURL"),
        (DiscordNotifier.self, "webhookURL: https://discord.com/api/webhooks/1/t\nusername: bot\navatarUrl: x", "avatarUrl", "avatarURL"),
        (TeamsNotifier.self, "webhookURL: https://example.com/workflows/1\ntimout: 5s", "timout", "timeout"),
        (GoogleChatNotifier.self, "webhookURL: https://chat.googleapis.com/v1/spaces/A/messages\nconectTimeout: 5s", "conectTimeout", "connectTimeout"),
        (MattermostNotifier.self, "webhookURL: https://mm.example.com/hooks/x\nchanel: town-square", "chanel", "channel"),
        (ChatworkNotifier.self, "token: t\nroomID: 123\nroomId: 124", "roomId", "roomID"),
        (LINENotifier.self, "token: t\nto: U1\nfromat: text", "fromat", "format"),
        (TelegramNotifier.self, "token: 1:t\nchatID: -100\ndisableNotifications: true", "disableNotifications", "disableNotification"),
        (WebhookNotifier.self, "url: https://crm.example.com/in\nheader: { X-Key: k }", "header", "headers"),
    ]

    @Test("Every kind refuses a misspelled key", arguments: 0..<misspellings.count)
    func misspelledKeysAreRefused(_ index: Int) throws {
        let (kind, settings, typo, meant) = Self.misspellings[index]
        func configure<P: NotifierPlugin>(_ type: P.Type) throws {
            _ = try type.configured(settings)
        }
        let error = #expect(throws: ConfigError.self) { try configure(kind) }
        #expect(error?.keyPath == typo)
        #expect(error?.message.hasPrefix("unknown key; did you mean \"\(meant)\"?") == true, "\(kind.kind): \(String(describing: error))")
    }

    @Test func badSettingsAreLocated() {
        do {
            _ = try load("kind: line\ntoken: t\nto: U1\nformat: card")
            Issue.record("expected an error")
        } catch let error as ConfigError {
            #expect(error.keyPath == "notifiers.n.format")
            #expect(error.message == "must be flex or text")
        } catch {
            Issue.record("expected a ConfigError, got \(error)")
        }
    }
}
