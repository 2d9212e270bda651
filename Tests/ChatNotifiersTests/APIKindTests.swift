import Foundation
import HeraldCore
import HeraldTesting
import Testing

@testable import ChatNotifiers

/// The kinds that call a service's API with a token: Chatwork, LINE, Telegram.
@Suite("Chatwork, LINE, Telegram")
struct APIKindTests {
    static let token = "987654:TOKEN-xyz"

    /// Delivers each notification with the plugin `make` builds for the server.
    func send<P: NotifierPlugin>(_ notifications: [HeraldNotification], reply: HTTPRecorder.Reply = HTTPRecorder.Reply(),
                                 _ make: @escaping @Sendable (String, PluginContext) throws -> P) async throws -> [HTTPRecorder.Request] {
        try await Harness.with { harness in
            try await HTTPRecorder.with(reply: { _ in reply }) { server in
                let plugin = try make(server.base, harness.context)
                for n in notifications { try await plugin.deliver(n) }
                return server.requests
            }
        }
    }

    @Test func chatworkForm() async throws {
        let requests = try await send([try Fixture.notification()]) { base, context in
            try ChatworkNotifier(settings: .init(token: Self.token, roomID: "123456", apiBaseURL: base + "/v2/"), context: context)
        }
        let request = try #require(requests.first)
        #expect(request.method == "POST")
        #expect(request.uri == "/v2/rooms/123456/messages")
        #expect(request.headers["x-chatworktoken"] == Self.token)
        #expect(request.headers["content-type"] == "application/x-www-form-urlencoded")
        #expect(request.form == [
            "body": "[info][title]📅 新しい予約: 山田 太郎 様 🎉[/title]ご予約ありがとうございます。\n<b>料金</b> & *プラン* について\n[hr]"
                + "日時: 2026年11月27日(金) 14:00〜15:00 (JST)\nゲスト: 山田 太郎 <taro.yamada@example.jp>\nご相談内容: 料金プランについて 💴[/info]",
            "self_unread": "0",
        ])
        // Reserved characters are percent-encoded, not sent raw.
        let raw = String(decoding: request.body, as: UTF8.self)
        #expect(raw.hasPrefix("body=%5Binfo%5D%5Btitle%5D%F0%9F%93%85%20") && raw.hasSuffix("&self_unread=0"))
        #expect(!raw.contains("&amp;") && !raw.contains(" "))
    }

    @Test func chatworkDefusesTags() async throws {
        let n = try Fixture.notification(text: "[toall] [To:123] [/info] [リンク] [hr", fields: [], locale: .en)
        let requests = try await send([n]) { base, context in
            try ChatworkNotifier(settings: .init(token: Self.token, roomID: "1", selfUnread: true, apiBaseURL: base), context: context)
        }
        let form = try #require(requests.first).form
        #expect(form["body"] == "[info][title]📅 新しい予約: 山田 太郎 様 🎉[/title][\u{200B}toall] [\u{200B}To:123] [\u{200B}/info] [リンク] [\u{200B}hr[/info]")
        #expect(form["self_unread"] == "1")
        #expect(try #require(requests.first).uri == "/rooms/1/messages")
    }

    @Test func chatworkRejectsBadRoom() {
        #expect(throws: ConfigError.self) {
            try ChatworkNotifier(settings: .init(token: "t", roomID: "rid123"), context: Harness().context)
        }
    }

    @Test func lineFlex() async throws {
        let first = try Fixture.notification()
        let requests = try await send([first, first, try Fixture.notification(deliveryKey: "other")]) { base, context in
            try LINENotifier(settings: .init(token: Self.token, to: "Uabc", notificationDisabled: true, apiBaseURL: base), context: context)
        }
        try #require(requests.count == 3)
        let request = requests[0]
        #expect(request.uri == "/v2/bot/message/push")
        #expect(request.headers["authorization"] == "Bearer \(Self.token)")
        #expect(request.headers["content-type"] == "application/json; charset=utf-8")
        // One retry key per delivery key: the same on a retry, different for another delivery.
        let key = try #require(request.headers["x-line-retry-key"])
        #expect(key.wholeMatch(of: /[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}/) != nil)
        #expect(requests[1].headers["x-line-retry-key"] == key)
        #expect(requests[2].headers["x-line-retry-key"] != key)
        #expect(request.json == json(#"""
        {"to": "Uabc", "notificationDisabled": true, "messages": [{
          "type": "flex",
          "altText": "📅 新しい予約: 山田 太郎 様 🎉\nご予約ありがとうございます。\n<b>料金</b> & *プラン* について",
          "contents": {"type": "bubble",
            "header": {"type": "box", "layout": "vertical", "backgroundColor": "#2EB67D", "contents": [
              {"type": "text", "text": "📅 新しい予約: 山田 太郎 様 🎉", "weight": "bold", "color": "#FFFFFF", "wrap": true}]},
            "body": {"type": "box", "layout": "vertical", "contents": [
              {"type": "text", "text": "ご予約ありがとうございます。\n<b>料金</b> & *プラン* について", "size": "sm", "wrap": true},
              {"type": "separator", "margin": "md"},
              {"type": "box", "layout": "vertical", "spacing": "sm", "margin": "md", "contents": [
                {"type": "box", "layout": "baseline", "spacing": "sm", "contents": [
                  {"type": "text", "text": "日時", "size": "sm", "color": "#8C8C8C", "flex": 2, "wrap": true},
                  {"type": "text", "text": "2026年11月27日(金) 14:00〜15:00 (JST)", "size": "sm", "color": "#333333", "flex": 5, "wrap": true}]},
                {"type": "box", "layout": "baseline", "spacing": "sm", "contents": [
                  {"type": "text", "text": "ゲスト", "size": "sm", "color": "#8C8C8C", "flex": 2, "wrap": true},
                  {"type": "text", "text": "山田 太郎 <taro.yamada@example.jp>", "size": "sm", "color": "#333333", "flex": 5, "wrap": true}]},
                {"type": "box", "layout": "baseline", "spacing": "sm", "contents": [
                  {"type": "text", "text": "ご相談内容", "size": "sm", "color": "#8C8C8C", "flex": 2, "wrap": true},
                  {"type": "text", "text": "料金プランについて 💴", "size": "sm", "color": "#333333", "flex": 5, "wrap": true}]}]}]}}}]}
        """#))
    }

    @Test func lineTextFormatAndLimits() async throws {
        let n = try Fixture.notification(text: String(repeating: "本文😀", count: 3000), fields: [HeraldNotification.Field("空", "")])
        let requests = try await send([n]) { base, context in
            try LINENotifier(settings: .init(token: Self.token, to: "C1", format: .text, apiBaseURL: base), context: context)
        }
        let body = try #require(requests.first?.json)
        #expect(body["notificationDisabled"] == nil)
        guard case .array(let messages)? = body["messages"] else { Issue.record("no messages"); return }
        #expect(messages[0]["type"] == .string("text"))
        let text = messages[0]["text"]?.stringValue ?? ""
        // The text gives way; the field still shows.
        #expect(text.utf16.count <= 5000 && text.utf16.count > 4990 && text.hasSuffix("…\n\n空: ") && text.hasPrefix("📅 新しい予約: 山田 太郎 様 🎉\n\n本文😀"))
        #expect(!text.unicodeScalars.contains { $0.properties.generalCategory == .surrogate })
    }

    @Test func lineFlexLimits() async throws {
        let n = try Fixture.notification(text: String(repeating: "あ", count: 40_000), fields: [HeraldNotification.Field("空", "")])
        let requests = try await send([n]) { base, context in
            try LINENotifier(settings: .init(token: Self.token, to: "C1", apiBaseURL: base), context: context)
        }
        guard case .array(let messages)? = try #require(requests.first?.json)["messages"] else { Issue.record("no messages"); return }
        let alt = messages[0]["altText"]?.stringValue ?? ""
        #expect(alt.utf16.count == 1500 && alt.hasSuffix("…"))
        let bubble = try #require(messages[0]["contents"])
        let size = try JSONEncoder().encode(bubble).count
        #expect(size <= 30_000 && size > 28_000)
        guard case .array(let rows)? = bubble["body"]?["contents"] else { Issue.record("no body"); return }
        #expect(rows.last?["contents"] == json(#"""
        [{"type": "box", "layout": "baseline", "spacing": "sm", "contents": [
          {"type": "text", "text": "空", "size": "sm", "color": "#8C8C8C", "flex": 2, "wrap": true},
          {"type": "text", "text": "-", "size": "sm", "color": "#333333", "flex": 5, "wrap": true}]}]
        """#))
    }

    @Test func lineConflictMeansAlreadyDelivered() async throws {
        let requests = try await send([try Fixture.notification()], reply: HTTPRecorder.Reply(status: 409, body: #"{"message": "The retry key is already accepted"}"#)) { base, context in
            try LINENotifier(settings: .init(token: Self.token, to: "Uabc", apiBaseURL: base), context: context)
        }
        #expect(requests.count == 1)
    }

    @Test func telegramHTML() async throws {
        let requests = try await send([try Fixture.notification()]) { base, context in
            try TelegramNotifier(settings: .init(token: Self.token, chatID: "-1001234567890", messageThreadID: 7, apiBaseURL: base),
                                 context: context)
        }
        let request = try #require(requests.first)
        #expect(request.uri == "/bot\(Self.token)/sendMessage")
        #expect(request.json == json(#"""
        {"chat_id": -1001234567890, "message_thread_id": 7,
         "text": "<b>📅 新しい予約: 山田 太郎 様 🎉</b>\n\nご予約ありがとうございます。\n&lt;b&gt;料金&lt;/b&gt; &amp; *プラン* について\n\n<b>日時</b>: 2026年11月27日(金) 14:00〜15:00 (JST)\n<b>ゲスト</b>: 山田 太郎 &lt;taro.yamada@example.jp&gt;\n<b>ご相談内容</b>: 料金プランについて 💴",
         "parse_mode": "HTML", "link_preview_options": {"is_disabled": true}}
        """#))
    }

    @Test func telegramLimitCountsVisibleText() async throws {
        let fields = (1...3).map { HeraldNotification.Field("<項目\($0)>", String(repeating: "&", count: 1500)) }
        let n = try Fixture.notification(text: String(repeating: "<文>", count: 2000), fields: fields)
        let requests = try await send([n]) { base, context in
            try TelegramNotifier(settings: .init(token: Self.token, chatID: "@herald_test", disableNotification: true, apiBaseURL: base),
                                 context: context)
        }
        let body = try #require(requests.first?.json)
        #expect(body["chat_id"] == .string("@herald_test"))
        #expect(body["disable_notification"] == .bool(true))
        let html = body["text"]?.stringValue ?? ""
        // What Telegram counts: the text with tags removed and entities decoded.
        let visible = html.replacingOccurrences(of: "<b>", with: "").replacingOccurrences(of: "</b>", with: "")
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&amp;", with: "&")
        #expect(visible.utf16.count <= 4096 && visible.utf16.count > 4000)
        #expect(html.contains("<b>&lt;項目3&gt;</b>: &amp;&amp;"))
        #expect(html.contains("…\n\n<b>&lt;項目1&gt;</b>: &amp;"))
        #expect(!html.contains("&amp;amp;"))
    }

    @Test func telegramRejectsTokenWithSlash() {
        #expect(throws: ConfigError.self) {
            try TelegramNotifier(settings: .init(token: "123/../x", chatID: "1"), context: Harness().context)
        }
    }
}
