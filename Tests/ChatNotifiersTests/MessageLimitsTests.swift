import Foundation
import HeraldCore
import HeraldTesting
import Testing

@testable import ChatNotifiers

/// Every kind, fed bookings rendered by Herald's own templates with long and many answers,
/// long names, multi-byte text, emoji and markup: each request must stay within the service's
/// documented limits, and each fact must show once.
/// The kinds run one after another: fitting large messages is CPU work on the shared
/// cooperative pool, which timing-sensitive suites running beside this one need too.
@Suite("Message limits and duplicates, every kind", .serialized)
struct MessageLimitsTests {
    /// The kinds as configured for these tests: every kind once, and LINE also as text.
    enum Target: CaseIterable, CustomStringConvertible {
        case kind(TestKind)
        case lineText

        static var allCases: [Target] { TestKind.allCases.map(Target.kind) + [.lineText] }
        var description: String {
            switch self {
            case .kind(let k): k.rawValue
            case .lineText: "line (text)"
            }
        }

        func make(base: String, context: PluginContext) throws -> @Sendable (HeraldNotification) async throws -> Void {
            switch self {
            case .kind(let kind): return try kind.make(base: base, context: context)
            case .lineText:
                let p = try LINENotifier(settings: .init(token: TestKind.token, to: "U123", format: .text, apiBaseURL: base),
                                         context: context)
                return { try await p.deliver($0) }
            }
        }
    }

    /// Delivers each notification to `target` and returns the requests, in order.
    func deliver(_ notifications: [HeraldNotification], to target: Target) async throws -> [HTTPRecorder.Request] {
        try await Harness.with { harness in
            try await HTTPRecorder.with { server in
                let deliver = try target.make(base: server.base, context: harness.context)
                for n in notifications { try await deliver(n) }
                return server.requests
            }
        }
    }

    /// A Jicoo booking with `answers`, rendered by the built-in templates.
    static func notification(guest: String, answers: [(String, String)], locale: HeraldLocale) throws -> HeraldNotification {
        let body: JSON = [
            "event": "guest_booked",
            "createdAt": "2026-11-20T01:15:43.000Z",
            "object": [
                "uid": "bk_limits01", "timeZone": "Asia/Tokyo",
                "startedAt": "2026-11-27T05:00:00.000Z", "endedAt": "2026-11-27T06:00:00.000Z",
                "updatedAt": "2026-11-20T01:15:42.341Z",
                "contact": ["name": .string(guest), "email": "taro.yamada@example.jp"],
                "answers": .array(answers.map { question, answer -> JSON in ["question": .string(question), "content": [.string(answer)]] }),
            ],
        ]
        let event = try EventSource.jicoo.decode(body: body.data, endpoint: "/hooks/jicoo", id: "evt_limits01",
                                                 receivedAt: Fixture.receivedAt)
        var n = try Renderer().render(event, locale: locale, html: false)
        n.deliveryKey = "evt_limits01.chat"
        return n
    }

    /// Seeded picks, so every run checks the same inputs.
    struct Generator {
        var seeded: SeededGenerator
        init(state: UInt64) { seeded = SeededGenerator(seed: state) }
        mutating func next() -> UInt64 { seeded.next() }
        mutating func pick<T>(_ options: [T]) -> T { options[Int(next() % UInt64(options.count))] }
        mutating func text(_ count: Int) -> String {
            let alphabets = ["abc de", "予約の相談 ", "😀🎉👍🏽 ", "<&>*_~`|[To:1][info]\n# - ", "a\n\n"]
            let letters = Array(pick(alphabets))
            return String((0..<count).map { _ in letters[Int(next() % UInt64(letters.count))] })
        }
    }

    /// The notifications every kind is checked with: the issue's cases (one 12,000-character
    /// answer; 60 long answers) and a spread of generated ones.
    static func cases() throws -> [HeraldNotification] {
        var cases = [
            try notification(guest: "山田 太郎", answers: [("ご相談内容", String(repeating: "長い回答です。", count: 1715))], locale: .ja),
            try notification(guest: "Jane Doe", answers: (1...60).map { ("Question \($0)", String(repeating: "answer \($0) ", count: 200)) },
                             locale: .en),
        ]
        var g = Generator(state: 11)
        for i in 0..<12 {
            let count = g.pick([0, 1, 3, 25, 60, 150])
            let longest = g.pick([0, 1, 100, 1024, 5000, 12_000])
            // Keep each case under about 30,000 characters (still over the limits), so the
            // test stays light next to the others.
            let length = count == 0 ? 0 : min(longest, 30_000 / count)
            let answers = (0..<count).map { _ in (g.text(Int(g.next() % 300) + 1), g.text(Int(g.next() % UInt64(length + 1)))) }
            cases.append(try notification(guest: g.text(g.pick([1, 40, 300, 3000])), answers: answers, locale: i % 2 == 0 ? .ja : .en))
        }
        return cases
    }

    /// Made once for all kinds.
    static let cached = Result { try cases() }

    @Test("every request stays within the service's documented limits", arguments: Target.allCases)
    func withinLimits(_ target: Target) async throws {
        let notifications = try Self.cached.get()
        let requests = try await deliver(notifications, to: target)
        try #require(requests.count == notifications.count)
        for (i, (request, n)) in zip(requests, notifications).enumerated() {
            let problems = Self.limitProblems(target, request, n)
            #expect(problems.isEmpty, "case \(i) (\(n.fields.count) fields): \(problems)")
        }
    }

    /// What breaks a documented limit in `request`, one line each; empty when nothing does.
    /// Characters are counted as UTF-16 code units, never fewer than the services count.
    static func limitProblems(_ target: Target, _ request: HTTPRecorder.Request, _ n: HeraldNotification) -> [String] {
        var problems: [String] = []
        func check(_ ok: Bool, _ what: @autoclosure () -> String) { if !ok { problems.append(what()) } }
        func length(_ v: JSONValue?) -> Int { v?.stringValue?.utf16.count ?? 0 }
        func items(_ v: JSONValue?) -> [JSONValue] { if case .array(let a)? = v { a } else { [] } }
        let body = request.json
        if case .kind(let kind) = target, kind == .chatwork || kind == .webhook {} else if body == nil {
            return ["the body is not JSON"]
        }
        switch target {
        case .kind(.slack):
            let blocks = items(body?["blocks"])
            check(blocks.count <= 50, "\(blocks.count) blocks")
            check(length(body?["text"]) <= 40_000, "text of \(length(body?["text"]))")
            for block in blocks {
                switch block["type"]?.stringValue {
                case "header": check(length(block["text"]?["text"]) <= 150, "header of \(length(block["text"]?["text"]))")
                case "section":
                    check(length(block["text"]?["text"]) <= 3000, "section text of \(length(block["text"]?["text"]))")
                    let fields = items(block["fields"])
                    check(fields.count <= 10, "\(fields.count) fields in a section")
                    for f in fields { check(length(f["text"]) <= 2000, "field of \(length(f["text"]))") }
                case "context":
                    for e in items(block["elements"]) { check(length(e["text"]) <= 3000, "context of \(length(e["text"]))") }
                default: problems.append("unexpected block \(block)")
                }
            }
        case .kind(.discord):
            let embeds = items(body?["embeds"])
            check(embeds.count == 1, "\(embeds.count) embeds")
            guard let embed = embeds.first else { break }
            let fields = items(embed["fields"])
            check(length(embed["title"]) <= 256, "title of \(length(embed["title"]))")
            check(length(embed["description"]) <= 4096, "description of \(length(embed["description"]))")
            check(fields.count <= 25, "\(fields.count) fields")
            for f in fields {
                check((1...256).contains(length(f["name"])), "field name of \(length(f["name"]))")
                check((1...1024).contains(length(f["value"])), "field value of \(length(f["value"]))")
            }
            check(length(embed["footer"]?["text"]) <= 2048, "footer of \(length(embed["footer"]?["text"]))")
            let total = length(embed["title"]) + length(embed["description"]) + length(embed["footer"]?["text"])
                + fields.reduce(0) { $0 + length($1["name"]) + length($1["value"]) }
            check(total <= 6000, "embed of \(total) characters")
        case .kind(.teams):
            check(request.body.count <= 28_000, "body of \(request.body.count) bytes")
        case .kind(.googlechat):
            check(request.body.count <= 32_000, "body of \(request.body.count) bytes")
            let sections = items(items(body?["cardsV2"]).first?["card"]?["sections"])
            let widgets = sections.reduce(0) { $0 + items($1["widgets"]).count }
            check(widgets <= 100, "\(widgets) widgets")
        case .kind(.mattermost):
            let attachment = items(body?["attachments"]).first
            check(length(attachment?["text"]) <= 16_383, "text of \(length(attachment?["text"]))")
            let fields = items(attachment?["fields"])
            let shown = length(attachment?["text"]) + fields.reduce(0) { $0 + length($1["title"]) + length($1["value"]) }
            check(shown <= 16_383, "text and fields of \(shown) characters")
            let props = (try? JSONEncoder().encode(body?["attachments"] ?? .null)).map { String(decoding: $0, as: UTF8.self) } ?? ""
            check(props.unicodeScalars.count <= 800_000, "attachments of \(props.unicodeScalars.count) characters")
        case .kind(.chatwork):
            let message = request.form["body"] ?? ""
            check(!message.isEmpty && message.utf8.count <= 40_000, "message of \(message.utf8.count) bytes")
        case .kind(.line):
            let message = items(body?["messages"]).first
            check(length(message?["altText"]) <= 1500, "altText of \(length(message?["altText"]))")
            let bubble = (try? JSONEncoder().encode(message?["contents"] ?? .null))?.count ?? .max
            check(bubble <= 30_000, "bubble of \(bubble) bytes")
            check(!emptyText(message?["contents"]), "an empty text component")
        case .lineText:
            let text = length(items(body?["messages"]).first?["text"])
            check((1...5000).contains(text), "text of \(text)")
        case .kind(.telegram):
            let html = body?["text"]?.stringValue ?? ""
            let shown = html.replacingOccurrences(of: "<b>", with: "").replacingOccurrences(of: "</b>", with: "")
                .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
                .replacingOccurrences(of: "&amp;", with: "&")
            check((1...4096).contains(shown.utf16.count), "text of \(shown.utf16.count) visible characters")
        case .kind(.webhook):
            check(request.body == n.event.body, "the body is not the event as received")
        }
        return problems
    }

    /// Whether a Flex component tree has a text component with empty text (LINE refuses it).
    static func emptyText(_ v: JSONValue?) -> Bool {
        switch v {
        case .object(let o)?:
            if o["type"] == .string("text"), o["text"]?.stringValue?.isEmpty ?? true { return true }
            return o.values.contains { emptyText($0) }
        case .array(let a)?: return a.contains { emptyText($0) }
        default: return false
        }
    }

    /// The built-in text lists every field, and chat kinds show the fields on their own too:
    /// each label and each value that is not in the title must show once in what people see.
    @Test("each fact shows once", arguments: Target.allCases)
    func eachFactOnce(_ target: Target) async throws {
        for locale in HeraldLocale.allCases {
            let n = try Renderer().render(try Fixture.event("guest_booked"), locale: locale, html: false)
            try #require(n.text.contains("\(n.fields[0].name): \(n.fields[0].value)"), "the built-in text lists the fields")
            let request = try #require(try await deliver([n], to: target).first)
            // Markdown escapes (`bk\_7Qx2mZp9`) do not make a value differ.
            guard let shown = Self.shownText(target, request)?.replacingOccurrences(of: "\\", with: "") else {
                #expect(request.body == n.event.body)  // the webhook kind forwards the event as received
                continue
            }
            for field in n.fields {
                #expect(shown.components(separatedBy: field.name).count - 1 == 1, "\(target) \(locale): \(field.name)")
                if !n.title.contains(field.value) {
                    #expect(shown.components(separatedBy: field.value).count - 1 == 1, "\(target) \(locale): \(field.value)")
                }
            }
        }
    }

    /// Everything a kind's message shows, joined, leaving out the notification-only fallbacks.
    static func shownText(_ target: Target, _ request: HTTPRecorder.Request) -> String? {
        func strings(_ v: JSONValue?, skipping: Set<String>) -> [String] {
            switch v {
            case .string(let s)?: [s]
            case .array(let a)?: a.flatMap { strings($0, skipping: skipping) }
            case .object(let o)?: o.filter { !skipping.contains($0.key) }.flatMap { strings($0.value, skipping: skipping) }
            default: []
            }
        }
        func items(_ v: JSONValue?) -> [JSONValue] { if case .array(let a)? = v { a } else { [] } }
        let body = request.json
        switch target {
        case .kind(.webhook): return nil
        case .kind(.chatwork): return request.form["body"]
        case .kind(.slack): return strings(body?["blocks"], skipping: []).joined(separator: "\n")
        case .kind(.telegram): return body?["text"]?.stringValue
        case .lineText: return items(body?["messages"]).first?["text"]?.stringValue
        default: return strings(body, skipping: ["fallback", "fallbackText", "altText"]).joined(separator: "\n")
        }
    }
}
