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
    }

    /// The built-in text lists each field as a `name: value` line; kinds that show the fields
    /// on their own leave those lines out of the text, and nothing else.
    @Test func textWithoutFieldLines() throws {
        let fields = [HeraldNotification.Field("日時", "2026-11-27 (金) 14:00–15:00 JST"),
                      HeraldNotification.Field("ご相談内容", "一行目\n二行目"), HeraldNotification.Field("予約ID", "bk_1")]
        let text = "山田 太郎 様から予約が入りました。\n\n日時: 2026-11-27 (金) 14:00–15:00 JST\nご相談内容: 一行目\n二行目\n予約ID: bk_1"
        #expect(try Fixture.notification(text: text, fields: fields).textWithoutFieldLines == "山田 太郎 様から予約が入りました。")
        let custom = "予約ID: bk_2\n\n\nメモ 予約ID: bk_1 を確認\n予約ID: bk_1\n\n\n以上"
        #expect(try Fixture.notification(text: custom, fields: fields).textWithoutFieldLines == "予約ID: bk_2\n\nメモ 予約ID: bk_1 を確認\n\n以上")
        #expect(try Fixture.notification(text: "a\n\n\nb", fields: fields).textWithoutFieldLines == "a\n\n\nb")
    }

    /// Fitting keeps short pieces whole, cuts long ones to one length, and leaves out trailing
    /// fields only when even short pieces would not fit.
    @Test func fittedMessageSharesTheRoom() {
        let fields = [HeraldNotification.Field("a", "short"), HeraldNotification.Field("b", String(repeating: "x", count: 500)),
                      HeraldNotification.Field("c", String(repeating: "y", count: 500))]
        func size(_ m: FittedMessage) -> Int { m.fields.reduce(m.text.utf16.count) { $0 + $1.name.utf16.count + $1.value.utf16.count } }
        let whole = FittedMessage.fit(text: "lead", fields: fields, nameLimit: 10, within: 2000, measure: size)
        #expect(whole.text == "lead" && whole.fields == fields && whole.omitted == 0)
        let cut = FittedMessage.fit(text: "lead", fields: fields, nameLimit: 10, within: 400, measure: size)
        #expect(cut.text == "lead" && cut.fields[0] == fields[0] && cut.omitted == 0)
        #expect(cut.fields[1].value.count == cut.fields[2].value.count && cut.fields[1].value.hasSuffix("…"))
        #expect(size(cut) <= 400 && size(cut) >= 398)
        let few = FittedMessage.fit(text: "lead", fields: fields, escaping: .entities, nameLimit: 10, within: 30, measure: size)
        #expect(few.text == "lead" && few.fields == [fields[0]] && few.omitted == 2)
    }

    @Test func markdownEscaping() {
        #expect(Escaping.markdown.escape("# a #b\n  - c\n1. d *e* [f](g)")
            == "\\# a #b\n  \\- c\n1. d \\*e\\* \\[f\\](g)")
    }

    @Test func jsonBuilderWritesUTF8AndEscapes() {
        let value: JSON = ["a": "日本\"\\\n\u{01}", "b": [1, true, .null], "c": .object(["x": nil, "y": 2])]
        #expect(String(decoding: value.data, as: UTF8.self) == #"{"a":"日本\"\\\n\u0001","b":[1,true,null],"c":{"y":2}}"#)
    }

    @Test func redactorRemovesSecretsAndURLParts() {
        let redact = SecretRedactor(secrets: ["https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX", "123:tok/en"])
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

    /// Values that once stopped the process ("Double value cannot be converted to Int64"):
    /// any size is clamped to the longest duration Herald takes; the dispatcher caps it again.
    @Test func absurdRetryAfterIsClampedNotATrap() {
        func after(_ header: String?, _ body: String = "") -> Duration? {
            HTTPSender.retryAfter(header: header, body: Data(body.utf8), now: Date(timeIntervalSince1970: 784_111_777))
        }
        #expect(after("99999999999999999999999") == .longest)
        #expect(after("1e20") == .longest)
        #expect(after("1e999") == .longest)
        #expect(after("Fri, 31 Dec 9999 23:59:59 GMT") == .longest)
        #expect(after(nil, #"{"retry_after": 1e300}"#) == .longest)
        #expect(after(nil, #"{"ok":false,"parameters":{"retry_after":99999999999999999999999}}"#) == .longest)
        #expect(after("-5") == nil)
        #expect(after(nil, #"{"retry_after": -1}"#) == nil)
        #expect(after("nan") == nil)
        // Foundation's DateFormatter trapped on this header on Linux (found by fuzz/run.sh).
        #expect(after("S\u{6DC}") == nil)
        #expect(after("Mon, 31 Feb 2026 08:49:37 GMT") == nil)
        #expect(after("Sun, 06 Nov 1994 08:49:37 UTC") == nil)
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
