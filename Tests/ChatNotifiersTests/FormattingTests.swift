import Foundation
import HeraldCore
import HeraldTesting
import Testing

@testable import ChatNotifiers

@Suite("Shared pieces: limits, escaping, settings, classification")
struct FormattingTests {
    @Test func fitNeverSplitsCharactersOrEscapes() {
        #expect(TextLimit.fit("短い", 10) == "短い")
        #expect(TextLimit.fit("abcdef", 4) == "abc…")
        // 👨‍👩‍👧 is one character of 8 UTF-16 units: it goes whole or not at all.
        #expect(TextLimit.fit("ab👨‍👩‍👧cd", 9) == "ab…")
        #expect(TextLimit.fit("a&b", 6, escaping: .entities) == "a…")
        #expect(TextLimit.fit("a&b", 7, escaping: .entities) == "a&amp;b")
        #expect(TextLimit.fit("word   more", 8) == "word…")
        #expect(TextLimit.fit("abc", 0) == "")
        #expect(TextLimit.fit("日本語", 6, unit: .utf8) == "日…")
        #expect(TextLimit.size("\"\n日", unit: .json) == 7)
    }

    @Test func markdownEscaping() {
        #expect(Escaping.markdown.pieces("# a #b\n  - c\n1. d *e* [f](g)").joined()
            == "\\# a #b\n  \\- c\n1. d \\*e\\* \\[f\\](g)")
    }

    @Test func jsonBuilderWritesUTF8AndEscapes() {
        let value: JSON = ["a": "日本\"\\\n\u{01}", "b": [1, true, .null], "c": .object(["x": nil, "y": 2])]
        #expect(String(decoding: value.data, as: UTF8.self) == #"{"a":"日本\"\\\n\u0001","b":[1,true,null],"c":{"y":2}}"#)
    }

    @Test func redactorRemovesSecretsAndURLParts() {
        let redact = Redactor(secrets: ["https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX", "123:tok/en"])
        #expect(redact("bad hook https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX") == "bad hook <redacted>")
        #expect(redact("path /services/T000/B000/XXXXXXXXXXXXXXXX, segment XXXXXXXXXXXXXXXX") == "path <redacted>, segment <redacted>")
        #expect(redact("token 123:tok/en or 123%3Atok%2Fen") == "token <redacted> or <redacted>")
        #expect(redact("nothing secret") == "nothing secret")
    }

    @Test func retryAfterForms() {
        func after(_ header: String?, _ body: String = "", now: Date = Date()) -> Duration? {
            HTTPSender.retryAfter(header: header, body: Data(body.utf8), now: now)
        }
        let now = Date(timeIntervalSince1970: 784_111_777)
        #expect(after("120") == .seconds(120))
        #expect(after("Sun, 06 Nov 1994 08:49:37 GMT", now: now) == .seconds(0))
        #expect(after("Sun, 06 Nov 1994 08:50:37 GMT", now: now) == .seconds(60))
        #expect(after("Sun, 06 Nov 1994 08:40:37 GMT", now: now) == .zero)
        #expect(after("soon") == nil)
        #expect(after(nil, #"{"retry_after": 0.25}"#) == .milliseconds(250))
        #expect(after(nil, "not json") == nil)
    }

    @Test func settingsDecode() throws {
        let decoder = JSONDecoder()
        let slack = try decoder.decode(WebhookURLSettings.self, from: Data(#"{"webhookURL": "https://x/y", "timeout": "2s", "connectTimeout": 1.5}"#.utf8))
        #expect(slack.webhookURL == "https://x/y")
        #expect(slack.http == HTTPOptions(connectTimeout: .milliseconds(1500), timeout: .seconds(2)))
        let defaults = try decoder.decode(WebhookURLSettings.self, from: Data(#"{"webhookURL": "https://x/y"}"#.utf8))
        #expect(defaults.http == HTTPOptions())

        #expect(throws: ConfigError(key: "webhookURL", "is required")) {
            try decoder.decode(WebhookURLSettings.self, from: Data(#"{"webhookURL": " "}"#.utf8))
        }
        #expect(throws: ConfigError.self) {
            try decoder.decode(WebhookURLSettings.self, from: Data(#"{"webhookURL": "https://x", "timeout": "soon"}"#.utf8))
        }
        for outOfRange in ["0s", "1h", "1000000000000d"] {
            let error = #expect(throws: ConfigError.self) {
                try decoder.decode(WebhookURLSettings.self, from: Data(#"{"webhookURL": "https://x", "connectTimeout": "\#(outOfRange)"}"#.utf8))
            }
            #expect(error?.keyPath == "connectTimeout")
        }
        #expect(throws: ConfigError(key: "timeout", "must be more than 0")) {
            try decoder.decode(WebhookURLSettings.self, from: Data(#"{"webhookURL": "https://x", "timeout": "0s"}"#.utf8))
        }

        let telegram = try decoder.decode(TelegramNotifier.Settings.self, from: Data(#"{"token": "1:a", "chatID": -100123}"#.utf8))
        #expect(telegram.chatID == "-100123" && telegram.apiBaseURL == "https://api.telegram.org")
        let chatwork = try decoder.decode(ChatworkNotifier.Settings.self, from: Data(#"{"token": "t", "roomID": 42}"#.utf8))
        #expect(chatwork.roomID == "42" && chatwork.apiBaseURL == "https://api.chatwork.com/v2" && !chatwork.selfUnread)
        let line = try decoder.decode(LINENotifier.Settings.self, from: Data(#"{"token": "t", "to": "U1", "format": "text"}"#.utf8))
        #expect(line.format == .text && line.apiBaseURL == "https://api.line.me")
        #expect(throws: ConfigError(key: "format", "must be flex or text")) {
            try decoder.decode(LINENotifier.Settings.self, from: Data(#"{"token": "t", "to": "U1", "format": "card"}"#.utf8))
        }
        let discord = try decoder.decode(DiscordNotifier.Settings.self, from: Data(#"{"webhookURL": "https://d/x", "threadID": 123}"#.utf8))
        #expect(discord.threadID == "123")
    }

    @Test func badURLsAreConfigurationErrors() {
        let context = Harness().context
        #expect(throws: ConfigError(key: "webhookURL", "must be an http(s) URL with a host")) {
            try SlackNotifier(settings: .init(webhookURL: "hooks.slack.com/services/x"), context: context)
        }
        #expect(throws: ConfigError.self) {
            try LINENotifier(settings: .init(token: "t", to: "U", apiBaseURL: "not a url"), context: context)
        }
    }

    @Test func kindsAreDistinctWithSecrets() {
        let kinds = ChatNotifierKinds.all.map { $0.kind }
        #expect(kinds == ["slack", "discord", "teams", "googlechat", "mattermost", "chatwork", "line", "telegram", "webhook"])
        #expect(ChatNotifierKinds.all.allSatisfy { !$0.secretKeys.isEmpty })
    }

    @Test func sharedClientIsOnePerProcess() throws {
        let shared = SharedResources()
        let context = PluginContext.testing(name: "a", baseDirectory: "/", shared: shared)
        _ = try SlackNotifier(settings: .init(webhookURL: "https://a/b"), context: context)
        _ = try TelegramNotifier(settings: .init(token: "1:a", chatID: "1"), context: context)
        #expect(shared.all.count == 1)
        #expect(shared.all.first is SharedHTTPClient)
    }
}
