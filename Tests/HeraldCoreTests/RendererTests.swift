import Foundation
import Testing
@testable import HeraldCore

@Suite("Rendering")
struct RendererTests {
    let renderer = try! Renderer()

    @Test func japaneseBookingInTokyoTime() throws {
        let n = renderer.render(try Fixtures.event("guest_booked"), locale: .ja)
        #expect(n.title == "新しい予約: 山田 太郎 様 — 2026-11-27 (金) 14:00–15:00 JST")
        #expect(n.text.contains("日時: 2026-11-27 (金) 14:00–15:00 JST"))
        #expect(n.text.contains("メール: taro.yamada@example.jp"))
        #expect(n.text.contains("ご相談内容: 料金プランについて"))
        #expect(n.kind == .booked)
        #expect(n.locale == .ja)
        #expect(n.fields.first?.name == "日時")
    }

    @Test func englishAndOtherZones() throws {
        let n = renderer.render(try Fixtures.event("host_cancelled"), locale: .en)
        #expect(n.title == "Cancelled by host: Jane Doe — 2026-11-27 (Fri) 00:00–01:00 EST")
        #expect(n.text.contains("Cancel reason: Host unavailable"))
        #expect(n.text.contains("Cancelled by: host"))
        #expect(n.kind == .cancelled)
    }

    @Test func everyDocumentedEventHasBothLanguages() throws {
        for name in ["guest_booked", "guest_rescheduled", "guest_cancelled", "host_rescheduled", "host_cancelled",
                     "guest_booking_request_created", "host_booking_request_accepted", "host_booking_request_declined"] {
            let event = try Fixtures.event(name)
            for locale in HeraldLocale.allCases {
                let n = renderer.render(event, locale: locale)
                #expect(!n.title.isEmpty && !n.title.contains("{{"), "\(name) \(locale)")
                #expect(n.text.contains(locale == .ja ? "日時" : "When"), "\(name) \(locale)")
                #expect(n.html?.contains("<table") == true)
            }
        }
        let rescheduled = renderer.render(try Fixtures.event("host_rescheduled"), locale: .ja)
        #expect(rescheduled.title.contains("2026-11-29 (日) 16:00–17:00 JST"))
    }

    @Test func unknownEventsStillRender() throws {
        let n = renderer.render(try Fixtures.event("unknown_event"), locale: .en)
        #expect(n.title == "Jicoo event guest_no_show: 山田 太郎")
        #expect(n.kind == .other)
    }

    @Test func cancelReasonAndNonASCIISurviveWithoutEscapingInText() throws {
        let n = renderer.render(try Fixtures.event("guest_cancelled"), locale: .ja)
        #expect(n.text.contains("キャンセル理由: 別の予定が入ったため"))
        let custom = try Renderer(templates: ["t": .init(title: "{{guest.name}} <{{guest.email}}> & co", text: "{{raw.object.tracking.utm_source}}", html: "<b>{{guest.name}} & {{cancelReason}}</b>")])
        let c = custom.render(try Fixtures.event("guest_cancelled"), template: "t")
        #expect(c.title == "山田 太郎 <taro.yamada@example.jp> & co")
        #expect(c.text == "twitter")
        #expect(c.html == "<b>山田 太郎 & 別の予定が入ったため</b>")  // template text is not escaped, variables are
    }

    @Test func htmlIsEscaped() throws {
        var text = try #require(String(data: try Fixtures.eventBody("guest_booked"), encoding: .utf8))
        text = text.replacingOccurrences(of: "山田 太郎", with: "<script>x</script>")
        let event = try EventSource.jicoo.decode(body: Data(text.utf8), endpoint: "/h")
        let n = renderer.render(event, locale: .en)
        #expect(n.html?.contains("<script>") == false)
        #expect(n.html?.contains("&lt;script&gt;") == true)
        #expect(n.title.contains("<script>x</script>"))
    }

    @Test func rangesAcrossMidnightShowBothDates() {
        let start = ISO8601.parse("2026-11-27T14:30:00Z")!
        let end = ISO8601.parse("2026-11-27T15:30:00Z")!
        #expect(TimeText.range(start, end, zone: "Asia/Tokyo", locale: .ja) == "2026-11-27 (金) 23:30 – 2026-11-28 (土) 00:30 JST")
        #expect(TimeText.range(start, nil, zone: nil, locale: .en) == "2026-11-27 (Fri) 14:30 UTC")
    }

    /// One-hour meetings in New York across the 2026 clock changes: each end has its own label.
    @Test func rangesAcrossADaylightSavingChangeLabelEachEnd() throws {
        let spring = (ISO8601.parse("2026-03-08T06:30:00Z")!, ISO8601.parse("2026-03-08T07:30:00Z")!)
        let autumn = (ISO8601.parse("2026-11-01T05:30:00Z")!, ISO8601.parse("2026-11-01T06:30:00Z")!)
        #expect(TimeText.range(spring.0, spring.1, zone: "America/New_York", locale: .en) == "2026-03-08 (Sun) 01:30 EST–03:30 EDT")
        #expect(TimeText.range(spring.0, spring.1, zone: "America/New_York", locale: .ja) == "2026-03-08 (日) 01:30 EST–03:30 EDT")
        #expect(TimeText.range(autumn.0, autumn.1, zone: "America/New_York", locale: .en) == "2026-11-01 (Sun) 01:30 EDT–01:30 EST")
        #expect(TimeText.range(autumn.0, autumn.1, zone: "America/New_York", locale: .ja) == "2026-11-01 (日) 01:30 EDT–01:30 EST")
        // Across midnight and a change (Saturday 23:30 EDT to Sunday 01:30 EST is three hours).
        let overnight = (ISO8601.parse("2026-11-01T03:30:00Z")!, ISO8601.parse("2026-11-01T06:30:00Z")!)
        #expect(TimeText.range(overnight.0, overnight.1, zone: "America/New_York", locale: .en)
            == "2026-10-31 (Sat) 23:30 EDT – 2026-11-01 (Sun) 01:30 EST")

        // The rendered booking and the template variables agree.
        var text = String(decoding: try Fixtures.eventBody("guest_booked"), as: UTF8.self)
        text = text.replacingOccurrences(of: "Asia/Tokyo", with: "America/New_York")
            .replacingOccurrences(of: "2026-11-27T05:00:00.000Z", with: "2026-03-08T06:30:00.000Z")
            .replacingOccurrences(of: "2026-11-27T06:00:00.000Z", with: "2026-03-08T07:30:00.000Z")
        let event = try EventSource.jicoo.decode(body: Data(text.utf8), endpoint: "/h")
        let n = renderer.render(event, locale: .ja)
        #expect(n.title.hasSuffix("2026-03-08 (日) 01:30 EST–03:30 EDT"))
        #expect(n.text.contains("日時: 2026-03-08 (日) 01:30 EST–03:30 EDT"))
        let custom = try Renderer(templates: ["t": .init(title: "t", text: "{{startTime}} {{zone}}–{{endTime}} {{endZone}}")])
        #expect(custom.render(event, template: "t").text == "01:30 EST–03:30 EDT")
    }

    /// A zone that does not exist (or an empty one) shows the times in UTC and says "UTC",
    /// in the text and in the template variables, never the unknown name.
    @Test func unknownZonesSayUTC() throws {
        for zone in ["Mars/Base", ""] {
            let text = String(decoding: try Fixtures.eventBody("guest_booked"), as: UTF8.self)
                .replacingOccurrences(of: "\"Asia/Tokyo\"", with: "\"\(zone)\"")
            let event = try EventSource.jicoo.decode(body: Data(text.utf8), endpoint: "/h")
            #expect(TimeText.knownZone(zone) == nil)
            let n = renderer.render(event, locale: .en)
            #expect(n.text.contains("When: 2026-11-27 (Fri) 05:00–06:00 UTC"), "\(zone)")
            let custom = try Renderer(templates: ["t": .init(title: "t", text: "{{startTime}} {{zone}} {{timeZone}}")])
            #expect(custom.render(event, template: "t").text == "05:00 UTC UTC", "\(zone)")
        }
    }

    /// Every documented template variable reaches a user template, those computed only when a
    /// template reads them (`raw`, `start`, `receivedAt`, …) included.
    @Test func everyDocumentedVariableReachesAUserTemplate() throws {
        let text = """
            {{event}}|{{id}}|{{source}}|{{endpoint}}|{{sourceLabel}}|{{uid}}|{{eventTypeUid}}|{{status}}|{{timeZone}}
            {{guest.name}}|{{guest.email}}|{{contact.name}}|{{contact.email}}|{{cancelReason}}|{{cancelledBy}}
            {{when}}|{{date}}|{{startTime}}|{{endTime}}|{{zone}}|{{endZone}}|{{start}}|{{end}}|{{receivedAt}}
            {{#answers}}{{question}}={{answer}};{{/answers}}|{{tracking.utm_source}}|{{#fields}}{{name}}={{value}};{{/fields}}
            {{lead}}|{{title}}|{{raw.object.status}}|{{raw.createdAt}}
            """
        let custom = try Renderer(templates: ["t": .init(title: "T {{guest.name}} {{title}}", text: text)])
        let event = try Fixtures.event("guest_cancelled")
        let lines = custom.render(event, template: "t", locale: .en).text.split(separator: "\n", omittingEmptySubsequences: false)
        try #require(lines.count == 5)
        #expect(lines[0] == "guest_cancelled|\(event.id)|jicoo|/hooks/jicoo|Jicoo|bk_7Qx2mZp9|et_consult60|cancel|Asia/Tokyo")
        #expect(lines[1] == "山田 太郎|taro.yamada@example.jp|山田 太郎|taro.yamada@example.jp|別の予定が入ったため|guest")
        #expect(lines[2] == "2026-11-27 (Fri) 14:00–15:00 JST|2026-11-27 (Fri)|14:00|15:00|JST|JST"
                    + "|2026-11-27T05:00:00Z|2026-11-27T06:00:00Z|\(ISO8601.format(event.receivedAt))")
        #expect(lines[3] == "ご相談内容=料金プランについて;How did you find out?=SNS, Friend;|twitter|"
                    + "When=2026-11-27 (Fri) 14:00–15:00 JST;Guest=山田 太郎;Email=taro.yamada@example.jp;"
                    + "Cancel reason=別の予定が入ったため;Cancelled by=guest;ご相談内容=料金プランについて;"
                    + "How did you find out?=SNS, Friend;Booking ID=bk_7Qx2mZp9;")
        // A user template has no lead; the title is there once rendered (and not inside itself).
        #expect(lines[4] == "|T 山田 太郎|cancel|2026-11-22T03:04:05.000Z")
    }

    /// What the zone caches are made of: a value is worked out once per key while there is
    /// room, the last key and the others alike; past the capacity, a new key's value is worked
    /// out on every ask and not kept, so a sender naming endless zones cannot grow it.
    @Test func aRecentCacheKeepsValuesUpToItsCapacity() {
        let cache = RecentCache<String, Int?>(capacity: 2)
        var made: [String] = []
        func ask(_ key: String) -> Int? {
            cache.value(for: key) { key in
                made.append(key)
                return key == "none" ? nil : key.count
            }
        }
        #expect(ask("a") == 1)
        #expect(ask("none") == nil)
        #expect(ask("a") == 1)
        #expect(ask("none") == nil, "a kept nil is an answer, not a miss")
        #expect(ask("ccc") == 3)
        #expect(ask("ccc") == 3)
        #expect(ask("a") == 1)
        #expect(ask("ccc") == 3)
        #expect(made == ["a", "none", "ccc", "ccc"], "past its two keys, \"ccc\" is not kept, but the last asked is")
    }

    /// Zone lookups are cached, and a sender naming more zones than the cache holds still gets
    /// each one right (made-up names stay unknown, real ones are found).
    @Test func zoneLookupsStayRightPastTheCache() {
        for n in 0..<(TimeText.zoneCacheCapacity + 10) { #expect(TimeText.knownZone("Mars/Base\(n)") == nil) }
        #expect(TimeText.knownZone("America/New_York")?.identifier == "America/New_York")
        #expect(TimeText.knownZone("Asia/Tokyo")?.identifier == "Asia/Tokyo")
        #expect(TimeText.knownZone("Asia/Tokyo")?.identifier == "Asia/Tokyo")
        #expect(TimeText.knownZone("Mars/Base0") == nil)
    }

    /// The parts rendered without Mustache (plain titles and leads, the built-in body) give
    /// exactly what Mustache gives, for every sample event, locale and built-in template.
    @Test func directRenderingMatchesMustacheForEveryBuiltInTemplate() throws {
        for name in Fixtures.eventNames {
            let event = try Fixtures.event(name)
            for locale in HeraldLocale.allCases {
                let compiled = renderer.builtIn[locale]?[event.name] ?? renderer.unknown[locale]!
                let context = Renderer.Context(event: event, locale: locale)
                let lead = try #require(compiled.lead)
                #expect(lead.render(context) == lead.mustache.render(context), "\(name) \(locale) lead")
                context.lead = lead.render(context)
                #expect(compiled.title.render(context) == compiled.title.mustache.render(context), "\(name) \(locale) title")
                #expect(compiled.text.render(context) == compiled.text.mustache.render(context), "\(name) \(locale) text")
            }
        }
        // The built-in parts that take the direct path do take it.
        let ja = try #require(renderer.builtIn[.ja]?["guest_booked"])
        #expect(ja.title.plain != nil && ja.lead?.plain != nil && ja.text.isBuiltInBody)
    }

    /// A title is one line: white space around it is trimmed (ASCII and the rest of Unicode's,
    /// such as U+3000 and U+00A0) and line breaks inside become spaces; a text keeps its lines.
    @Test func titlesAreTrimmedOntoOneLine() {
        #expect(Renderer.trimmed("\u{3000} a\nb \t\n", joiningLines: true) == "a b")
        #expect(Renderer.trimmed("\u{85}x\u{A0}", joiningLines: true) == "x")
        #expect(Renderer.trimmed("a\nb", joiningLines: false) == "a\nb")
        #expect(Renderer.trimmed("plain", joiningLines: true) == "plain")
        #expect(Renderer.trimmed(" \n\t ") == "")
    }

    /// User templates: plain ones render directly with Mustache's result; anything else
    /// (sections, spaces in a tag, a list or a flag as a value, comments, unescaped tags)
    /// is left to Mustache.
    @Test func userTemplatesTakeTheDirectPathOnlyWhenPlain() throws {
        let sources: [(String, plain: Bool)] = [
            ("{{guest.name}} <{{guest.email}}> & co", true),
            ("{{raw.object.tracking.utm_source}} {{missing}} {{missing.deep.name}} {{guest.nothing}}", true),
            ("a }} {{when}} { b", true),
            ("{{raw.object.answers}}", true),            // plain, but a list: Mustache renders it
            ("{{ guest.name }}", false),
            ("{{#cancelReason}}Reason: {{cancelReason}}{{/cancelReason}}", false),
            ("{{{guest.name}}} {{&guest.name}} {{! note }}", false),
            ("{{guest..name}}", false),
            // The variables read straight from the event, with and without a booking.
            ("{{contact.name}}|{{contact.email}}|{{guest.email}}|{{event}}|{{when}}|{{contact.other}}", true),
        ]
        let generic = Event(id: "evt_1", endpoint: "/hooks/x", source: "generic", name: "push", receivedAt: Date(),
                            occurredAt: nil, booking: nil, payload: .object(["guest": .object(["name": .string("x")])]),
                            body: Data())
        for event in [try Fixtures.event("guest_cancelled"), generic] {
            for (source, plain) in sources {
                let custom = try Renderer(templates: ["t": .init(title: "t", text: source)])
                let text = try #require(custom.user["t"]?.text)
                #expect((text.plain != nil) == plain, "\(source)")
                let context = Renderer.Context(event: event, locale: .en)
                #expect(text.render(context) == text.mustache.render(context), "\(event.name) \(source)")
            }
        }
    }
}
