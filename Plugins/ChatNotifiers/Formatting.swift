import Foundation
import HeraldPlugin

/// A JSON document built in code, keeping object members in the order they were written so
/// request bodies are deterministic and read like the services' documentation.
enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int)
    case string(String)
    case array([JSON])
    case object([Member])

    struct Member: Sendable, Equatable {
        var key: String
        var value: JSON
    }

    /// An object from `(key, value)` pairs, leaving out pairs whose value is nil.
    static func object(_ pairs: KeyValuePairs<String, JSON?>) -> JSON {
        .object(pairs.compactMap { key, value in value.map { Member(key: key, value: $0) } })
    }

    /// Compact UTF-8 JSON; non-ASCII text is written as is, not as `\u` escapes.
    var data: Data {
        var out = [UInt8]()
        write(to: &out)
        return Data(out)
    }

    private func write(to out: inout [UInt8]) {
        switch self {
        case .null: out += Array("null".utf8)
        case .bool(let b): out += Array((b ? "true" : "false").utf8)
        case .int(let i): out += Array(String(i).utf8)
        case .string(let s): JSONValue.writeString(s, to: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                item.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (i, member) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONValue.writeString(member.key, to: &out)
                out.append(UInt8(ascii: ":"))
                member.value.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }
}

extension JSON: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    init(stringLiteral value: String) { self = .string(value) }
    init(integerLiteral value: Int) { self = .int(value) }
    init(booleanLiteral value: Bool) { self = .bool(value) }
    init(arrayLiteral elements: JSON...) { self = .array(elements) }
    init(dictionaryLiteral elements: (String, JSON)...) {
        self = .object(elements.map { Member(key: $0.0, value: $0.1) })
    }
}

/// How a service's markup needs text escaped so that it shows literally.
enum Escaping: Sendable {
    /// No markup: JSON string escaping is all that is needed.
    case none
    /// `&`, `<`, `>` as entities: Slack mrkdwn, Telegram HTML, Google Chat card text.
    case entities
    /// CommonMark-style backslash escapes (Discord, Mattermost): emphasis, code, spoilers,
    /// links, mentions, and quote/heading/list markers at the start of a line.
    case markdown

    /// The escaped form of each character of `text`, one entry per character, so that text
    /// can be cut between characters without splitting an escape.
    func pieces(_ text: String) -> [String] {
        var result: [String] = []
        result.reserveCapacity(text.count)
        var atLineStart = true
        for c in text {
            switch self {
            case .none:
                result.append(String(c))
            case .entities:
                switch c {
                case "&": result.append("&amp;")
                case "<": result.append("&lt;")
                case ">": result.append("&gt;")
                default: result.append(String(c))
                }
            case .markdown:
                if "\\*_~`|[]<>".contains(c) || (atLineStart && "#->+".contains(c)) {
                    result.append("\\" + String(c))
                } else {
                    result.append(String(c))
                }
            }
            if c.isNewline { atLineStart = true } else if !(c == " " || c == "\t") { atLineStart = false }
        }
        return result
    }
}

/// Cutting text to a service's length limits.
enum TextLimit {
    /// How a limit is counted: UTF-16 code units (what JavaScript and Java services count;
    /// never fewer than characters, so also safe for limits counted in characters), UTF-8
    /// bytes, or bytes once written as a JSON string (for limits on a whole request body).
    enum Unit: Sendable { case utf16, utf8, json }

    /// `text` escaped with `escaping` and, when longer than `limit`, cut between characters
    /// and ended with "…" so the result (escapes included) is at most `limit` long.
    static func fit(_ text: String, _ limit: Int, escaping: Escaping = .none, unit: Unit = .utf16) -> String {
        func size(_ s: String) -> Int { TextLimit.size(s, unit: unit) }
        let pieces = escaping.pieces(text)
        let total = pieces.reduce(0) { $0 + size($1) }
        if total <= limit { return pieces.joined() }
        let ellipsis = "…"
        guard limit >= size(ellipsis) else { return "" }
        var kept: [String] = []
        var used = 0
        for piece in pieces {
            let n = size(piece)
            if used + n + size(ellipsis) > limit { break }
            kept.append(piece)
            used += n
        }
        while let last = kept.last, last.allSatisfy(\.isWhitespace) { kept.removeLast() }
        return kept.joined() + ellipsis
    }

    /// The length of `text` in `unit`s.
    static func size(_ text: String, unit: Unit = .utf16) -> Int {
        switch unit {
        case .utf16: text.utf16.count
        case .utf8: text.utf8.count
        case .json: JSON.string(text).data.count - 2
        }
    }
}

extension HeraldNotification {
    /// The title with the kind's emoji in front: "📅 New booking: 山田 太郎".
    var headline: String { title.isEmpty ? kind.emoji : "\(kind.emoji) \(title)" }

    /// When the event happened as the sender says, else when Herald received it.
    var eventDate: Date { event.occurredAt ?? event.receivedAt }

    /// A short note for fields left out at a service's limit: "+3 more fields" / "他 3 件の項目".
    static func omittedFieldsNote(_ count: Int, locale: HeraldLocale) -> String {
        switch locale {
        case .en: "+\(count) more field\(count == 1 ? "" : "s")"
        case .ja: "他 \(count) 件の項目"
        }
    }
}
