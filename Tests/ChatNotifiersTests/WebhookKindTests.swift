import Foundation
import HeraldCore
import HeraldTesting
import Testing

@testable import ChatNotifiers

/// The kinds that post to a webhook URL: the request and the exact body shape.
@Suite("Slack, Discord, Teams, Google Chat, Mattermost")
struct WebhookKindTests {
    /// Delivers `notification` with the plugin `make` builds for the server, returns the request.
    func send(_ notification: HeraldNotification,
              _ make: @escaping @Sendable (String, PluginContext) throws -> @Sendable (HeraldNotification) async throws -> Void)
        async throws -> HTTPRecorder.Request
    {
        try await Harness.with { harness in
            try await HTTPRecorder.with { server in
                let deliver = try make(server.base + "/hooks/abc?x=1", harness.context)
                try await deliver(notification)
                let requests = server.requests
                try #require(requests.count == 1)
                #expect(requests[0].method == "POST")
                #expect(requests[0].headers["content-type"] == "application/json; charset=utf-8")
                return requests[0]
            }
        }
    }

    func slack(_ url: String, _ context: PluginContext) throws -> @Sendable (HeraldNotification) async throws -> Void {
        let p = try SlackNotifier(settings: .init(webhookURL: url), context: context)
        return { try await p.deliver($0) }
    }

    @Test func slackBlockKit() async throws {
        let request = try await send(try Fixture.notification(), slack)
        #expect(request.uri == "/hooks/abc?x=1")
        #expect(request.json == json(#"""
        {"text": "📅 新しい予約: 山田 太郎 様 🎉\nご予約ありがとうございます。\n&lt;b&gt;料金&lt;/b&gt; &amp; *プラン* について",
         "blocks": [
          {"type": "header", "text": {"type": "plain_text", "text": "📅 新しい予約: 山田 太郎 様 🎉", "emoji": true}},
          {"type": "section", "text": {"type": "mrkdwn", "text": "ご予約ありがとうございます。\n&lt;b&gt;料金&lt;/b&gt; &amp; *プラン* について"}},
          {"type": "section", "fields": [
            {"type": "mrkdwn", "text": "*日時*\n2026年11月27日(金) 14:00〜15:00 (JST)"},
            {"type": "mrkdwn", "text": "*ゲスト*\n山田 太郎 &lt;taro.yamada@example.jp&gt;"},
            {"type": "mrkdwn", "text": "*ご相談内容*\n料金プランについて 💴"}]},
          {"type": "context", "elements": [{"type": "mrkdwn", "text": "guest_booked · evt_0000test0001"}]}]}
        """#))
    }

    @Test func slackLimits() async throws {
        let fields = (1...600).map { HeraldNotification.Field("項目\($0)", String(repeating: "値", count: 2500)) }
        let n = try Fixture.notification(title: String(repeating: "長", count: 200), text: String(repeating: "あ&", count: 2000),
                                          fields: fields)
        let body = try #require(try await send(n, slack).json)
        guard case .array(let blocks)? = body["blocks"] else { Issue.record("no blocks"); return }
        #expect(blocks.count == 50)
        let header = blocks[0]["text"]?["text"]?.stringValue ?? ""
        #expect(header.utf16.count == 150 && header.hasSuffix("…") && header.hasPrefix("📅 長長"))
        let text = blocks[1]["text"]?["text"]?.stringValue ?? ""
        #expect(text.utf16.count <= 3000 && text.hasSuffix("…"))
        #expect(text.hasPrefix("あ&amp;あ&amp;") && !text.hasSuffix("&…") && !text.hasSuffix("&amp…"))
        guard case .array(let firstFields)? = blocks[2]["fields"] else { Issue.record("no fields"); return }
        #expect(firstFields.count == 10)
        let field = firstFields[0]["text"]?.stringValue ?? ""
        #expect(field.hasPrefix("*項目1*\n値値") && field.utf16.count == 2000 && field.hasSuffix("…"))
        // 47 field sections hold 470 fields; the rest are counted in the context line.
        #expect(blocks[49]["elements"] == json(#"[{"type": "mrkdwn", "text": "guest_booked · evt_0000test0001 · 他 130 件の項目"}]"#))
        #expect((body["text"]?.stringValue?.utf16.count ?? 0) <= 3000)
    }

    @Test func slackChunksFieldsByTen() async throws {
        let fields = (1...25).map { HeraldNotification.Field("f\($0)", "v", short: true) }
        let body = try await send(try Fixture.notification(text: "", fields: fields), slack).json
        guard case .array(let blocks)? = body?["blocks"] else { Issue.record("no blocks"); return }
        #expect(blocks.map { $0["type"]?.stringValue } == ["header", "section", "section", "section", "context"])
        let counts = blocks[1...3].map { block -> Int in
            if case .array(let f)? = block["fields"] { return f.count }
            return 0
        }
        #expect(counts == [10, 10, 5])
    }

    func discord(_ url: String, _ context: PluginContext) throws -> @Sendable (HeraldNotification) async throws -> Void {
        let p = try DiscordNotifier(settings: .init(webhookURL: url, username: "Herald 📣", threadID: "987"), context: context)
        return { try await p.deliver($0) }
    }

    @Test func discordEmbed() async throws {
        let request = try await send(try Fixture.notification(), discord)
        #expect(request.uri == "/hooks/abc?x=1&wait=true&thread_id=987")
        #expect(request.json == json(#"""
        {"username": "Herald 📣",
         "embeds": [{
           "title": "📅 新しい予約: 山田 太郎 様 🎉",
           "description": "ご予約ありがとうございます。\n\\<b\\>料金\\</b\\> & \\*プラン\\* について",
           "color": 3061373,
           "timestamp": "2026-11-20T01:15:43Z",
           "fields": [
             {"name": "日時", "value": "2026年11月27日(金) 14:00〜15:00 (JST)", "inline": false},
             {"name": "ゲスト", "value": "山田 太郎 \\<taro.yamada@example.jp\\>", "inline": true},
             {"name": "ご相談内容", "value": "料金プランについて 💴", "inline": true}],
           "footer": {"text": "guest_booked"}}],
         "allowed_mentions": {"parse": []}}
        """#))
    }

    @Test func discordLimits() async throws {
        let fields = (1...30).map { _ in HeraldNotification.Field(String(repeating: "名", count: 300), String(repeating: "値", count: 1100)) }
        let n = try Fixture.notification(title: String(repeating: "題", count: 300), text: String(repeating: "本文", count: 3000),
                                          fields: fields, kind: .cancelled, event: "guest_cancelled")
        let body = try await send(n, discord).json
        let embed = try #require(body?["embeds"].flatMap { if case .array(let e) = $0 { e.first } else { nil } })
        let title = embed["title"]?.stringValue ?? ""
        #expect(title.count == 256 && title.hasSuffix("…"))
        guard case .array(let shown)? = embed["fields"] else { Issue.record("no fields"); return }
        let names = shown.compactMap { $0["name"]?.stringValue }
        let values = shown.compactMap { $0["value"]?.stringValue }
        // 25 fields fit once every long part is cut to the same length; the other 5 are counted.
        #expect(shown.count == 25)
        #expect(names.allSatisfy { $0.count < 256 && $0.hasSuffix("…") } && values.allSatisfy { $0.count == names[0].count })
        let description = embed["description"]?.stringValue ?? ""
        #expect(description.count == names[0].count)
        let footer = embed["footer"]?["text"]?.stringValue ?? ""
        let total = title.count + description.count + footer.count + names.joined().count + values.joined().count
        #expect(total <= 6000 && total > 5900)
        #expect(footer == "guest_cancelled · 他 5 件の項目")
        #expect(embed["color"] == .number(JSONNumber(Double(0xE01E5A))))
    }

    @Test func discordEmptyFieldsAndMarkdown() async throws {
        let n = try Fixture.notification(text: "# 見出し\n- item\n> quote\n@everyone [link](https://x) ||spoiler|| `code` ~~s~~ _i_",
                                          fields: [HeraldNotification.Field("", "")])
        let embed = try await send(n, discord).json?["embeds"].flatMap { if case .array(let e) = $0 { e.first } else { nil } }
        #expect(embed?["description"]?.stringValue
            == "\\# 見出し\n\\- item\n\\> quote\n"
            + #"@everyone \[link\](https://x) \|\|spoiler\|\| \`code\` \~\~s\~\~ \_i\_"#)
        #expect(embed?["fields"] == json(#"[{"name": "\u200b", "value": "\u200b", "inline": false}]"#))
    }

    @Test func teamsAdaptiveCard() async throws {
        let request = try await send(try Fixture.notification(kind: .rescheduled, event: "guest_rescheduled")) { url, context in
            let p = try TeamsNotifier(settings: .init(webhookURL: url), context: context)
            return { try await p.deliver($0) }
        }
        #expect(request.uri == "/hooks/abc?x=1")
        #expect(request.json == json(#"""
        {"type": "message", "attachments": [{
          "contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": null,
          "content": {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4",
            "fallbackText": "🔁 新しい予約: 山田 太郎 様 🎉", "msteams": {"width": "Full"},
            "body": [
              {"type": "Container", "style": "warning", "bleed": true, "items": [
                {"type": "TextBlock", "text": "🔁 新しい予約: 山田 太郎 様 🎉", "weight": "Bolder", "size": "Medium", "wrap": true}]},
              {"type": "TextBlock", "text": "ご予約ありがとうございます。\n<b>料金</b> & *プラン* について", "wrap": true},
              {"type": "FactSet", "facts": [
                {"title": "日時", "value": "2026年11月27日(金) 14:00〜15:00 (JST)"},
                {"title": "ゲスト", "value": "山田 太郎 <taro.yamada@example.jp>"},
                {"title": "ご相談内容", "value": "料金プランについて 💴"}]}]}}]}
        """#))
    }

    @Test func teamsStaysUnderSizeLimit() async throws {
        let n = try Fixture.notification(text: String(repeating: "長い本文\"\n", count: 6000))
        let request = try await send(n) { url, context in
            let p = try TeamsNotifier(settings: .init(webhookURL: url), context: context)
            return { try await p.deliver($0) }
        }
        #expect(request.body.count <= TeamsNotifier.sizeLimit && request.body.count > TeamsNotifier.sizeLimit - 200)
        let text = request.json?["attachments"].flatMap { if case .array(let a) = $0 { a.first } else { nil } }?["content"]?["body"]
        guard case .array(let blocks)? = text else { Issue.record("no body"); return }
        #expect(blocks[1]["text"]?.stringValue?.hasSuffix("…") == true)
    }

    @Test func googleChatCard() async throws {
        let request = try await send(try Fixture.notification(kind: .cancelled, event: "host_cancelled")) { url, context in
            let p = try GoogleChatNotifier(settings: .init(webhookURL: url), context: context)
            return { try await p.deliver($0) }
        }
        #expect(request.json == json(#"""
        {"fallbackText": "❌ 新しい予約: 山田 太郎 様 🎉\nご予約ありがとうございます。\n<b>料金</b> & *プラン* について",
         "cardsV2": [{"cardId": "herald", "card": {
           "header": {"title": "❌ 新しい予約: 山田 太郎 様 🎉"},
           "sections": [
             {"header": "<font color=\"#E01E5A\">●</font> host_cancelled",
              "widgets": [{"textParagraph": {"text": "ご予約ありがとうございます。<br>&lt;b&gt;料金&lt;/b&gt; &amp; *プラン* について"}}]},
             {"widgets": [
               {"decoratedText": {"topLabel": "日時", "text": "2026年11月27日(金) 14:00〜15:00 (JST)", "wrapText": true}},
               {"decoratedText": {"topLabel": "ゲスト", "text": "山田 太郎 &lt;taro.yamada@example.jp&gt;", "wrapText": true}},
               {"decoratedText": {"topLabel": "ご相談内容", "text": "料金プランについて 💴", "wrapText": true}}]}]}}]}
        """#))
    }

    @Test func googleChatWidgetLimit() async throws {
        let fields = (1...150).map { HeraldNotification.Field("f\($0)", "v") }
        let body = try await send(try Fixture.notification(fields: fields, locale: .en)) { url, context in
            let p = try GoogleChatNotifier(settings: .init(webhookURL: url), context: context)
            return { try await p.deliver($0) }
        }.json
        let card = body?["cardsV2"].flatMap { if case .array(let c) = $0 { c.first } else { nil } }?["card"]
        guard case .array(let sections)? = card?["sections"], case .array(let widgets)? = sections.last?["widgets"] else {
            Issue.record("no sections")
            return
        }
        // The text paragraph and 98 fields and the note: 100 widgets, the card's limit.
        #expect(widgets.count == 99)
        #expect(widgets.last == json(#"{"textParagraph": {"text": "+52 more fields"}}"#))
    }

    @Test func mattermostAttachment() async throws {
        let request = try await send(try Fixture.notification()) { url, context in
            let p = try MattermostNotifier(settings: .init(webhookURL: url, channel: "予約", username: "herald", iconEmoji: "calendar"),
                                           context: context)
            return { try await p.deliver($0) }
        }
        #expect(request.json == json(#"""
        {"channel": "予約", "username": "herald", "icon_emoji": "calendar",
         "attachments": [{
           "fallback": "📅 新しい予約: 山田 太郎 様 🎉\nご予約ありがとうございます。\n<b>料金</b> & *プラン* について",
           "color": "#2EB67D",
           "title": "📅 新しい予約: 山田 太郎 様 🎉",
           "text": "ご予約ありがとうございます。\n\\<b\\>料金\\</b\\> & \\*プラン\\* について",
           "fields": [
             {"title": "日時", "value": "2026年11月27日(金) 14:00〜15:00 (JST)", "short": false},
             {"title": "ゲスト", "value": "山田 太郎 \\<taro.yamada@example.jp\\>", "short": true},
             {"title": "ご相談内容", "value": "料金プランについて 💴", "short": true}],
           "footer": "guest_booked"}]}
        """#))
    }
}
