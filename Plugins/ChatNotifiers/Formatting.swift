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

    /// Calls `body` with each character of `text` as written for the service (escaped), in
    /// order, so that text can be cut between characters without splitting an escape; stops
    /// when `body` returns false.
    func forEachPiece(of text: String, _ body: (String) -> Bool) {
        var atLineStart = true
        for c in text {
            let piece: String
            switch self {
            case .none:
                piece = String(c)
            case .entities:
                switch c {
                case "&": piece = "&amp;"
                case "<": piece = "&lt;"
                case ">": piece = "&gt;"
                default: piece = String(c)
                }
            case .markdown:
                let escaped = "\\*_~`|[]<>".contains(c) || (atLineStart && "#->+".contains(c))
                piece = escaped ? "\\" + String(c) : String(c)
            }
            guard body(piece) else { return }
            if c.isNewline { atLineStart = true } else if !(c == " " || c == "\t") { atLineStart = false }
        }
    }

    /// `text` as written for the service.
    func escape(_ text: String) -> String {
        if case .none = self { return text }
        var out = ""
        out.reserveCapacity(text.utf8.count)
        forEachPiece(of: text) { out += $0; return true }
        return out
    }
}

/// Cutting text to a service's length limits.
enum TextLimit {
    /// How a limit is counted: UTF-16 code units (what JavaScript and Java services count;
    /// never fewer than characters, so also safe for limits counted in characters) or UTF-8
    /// bytes.
    enum Unit: Sendable { case utf16, utf8 }

    /// `text` escaped with `escaping` and, when longer than `limit`, cut between characters
    /// and ended with "…" so the result (escapes included) is at most `limit` long.
    static func fit(_ text: String, _ limit: Int, escaping: Escaping = .none, unit: Unit = .utf16) -> String {
        CuttableText(text, escaping: escaping, unit: unit).cut(limit)
    }

    /// The length of `text` in `unit`s.
    static func size(_ text: String, unit: Unit = .utf16) -> Int {
        switch unit {
        case .utf16: text.utf16.count
        case .utf8: text.utf8.count
        }
    }
}

/// Text escaped once for a service and then cut at any length, as often as needed, between
/// characters and never inside an escape (see ``TextLimit/fit(_:_:escaping:unit:)``).
struct CuttableText: Sendable {
    /// The whole escaped text.
    let full: String
    /// For each escaped character: the size of `full` up to and including it.
    private let sizes: [Int]
    /// For each escaped character: where (in UTF-8 bytes) the text up to it ends once
    /// trailing white space is dropped.
    private let solidEnds: [Int]
    private let ellipsisSize: Int

    init(_ text: String, escaping: Escaping = .none, unit: TextLimit.Unit = .utf16) {
        var full = ""
        var sizes: [Int] = []
        var solidEnds: [Int] = []
        full.reserveCapacity(text.utf8.count)
        var size = 0
        var solid = 0
        escaping.forEachPiece(of: text) { piece in
            full += piece
            size += TextLimit.size(piece, unit: unit)
            // A piece is one character, or an escape that starts with `&` or `\`.
            if !(piece.first?.isWhitespace ?? true) { solid = full.utf8.count }
            sizes.append(size)
            solidEnds.append(solid)
            return true
        }
        self.full = full
        self.sizes = sizes
        self.solidEnds = solidEnds
        ellipsisSize = TextLimit.size("…", unit: unit)
    }

    /// The size of the whole escaped text.
    var size: Int { sizes.last ?? 0 }

    /// The escaped text, or as much of it as fits in `limit` with "…" after it (trailing
    /// white space dropped); "" when not even "…" fits.
    func cut(_ limit: Int) -> String {
        if size <= limit { return full }
        guard limit >= ellipsisSize else { return "" }
        // The number of characters whose size, with the ellipsis, stays within the limit.
        var low = 0, high = sizes.count
        while low < high {
            let mid = (low + high + 1) / 2
            if sizes[mid - 1] + ellipsisSize <= limit { low = mid } else { high = mid - 1 }
        }
        let bytes = low > 0 ? solidEnds[low - 1] : 0
        return String(decoding: full.utf8.prefix(bytes), as: UTF8.self) + "…"
    }
}

/// A notification's text and fields, escaped and cut so that one message stays within a
/// service's limits, and how many fields had to be left out.
struct FittedMessage: Sendable {
    var text: String
    var fields: [HeraldNotification.Field]
    /// Fields left out at the end; the message should say how many.
    var omitted: Int

    /// Fits `text` and `fields` into one message of a service.
    ///
    /// Every piece (the text, each field name and value) is escaped with `escaping` (names
    /// with `nameEscaping` if given) and cut to its own limit, and at most `maxFields` fields
    /// are kept. If `measure` (the message's size in the unit of the service's limit, e.g. the
    /// bytes of the request body) is then still over `limit`, trailing fields give way until
    /// the rest would fit with every piece cut to a few words, and then every piece longer
    /// than some length is cut to that length, the longest length that fits: short fields
    /// stay whole and long ones share what is left. `measure` must grow with the pieces, and
    /// a message is never smaller than its pieces' UTF-16 length (true of characters, UTF-8
    /// and JSON bytes), which spares measuring candidates that cannot fit.
    static func fit(text: String, fields: [HeraldNotification.Field], escaping: Escaping = .none,
                    nameEscaping: Escaping? = nil, textLimit: Int = .max, maxFields: Int = .max, nameLimit: Int,
                    valueLimit: Int = .max, within limit: Int, measure: (FittedMessage) -> Int) -> FittedMessage {
        let body = CuttableText(text, escaping: escaping)
        let shown = fields.prefix(max(0, maxFields))
        let names = shown.map { CuttableText($0.name, escaping: nameEscaping ?? escaping) }
        let values = shown.map { CuttableText($0.value, escaping: escaping) }
        func make(_ count: Int, _ cap: Int) -> FittedMessage {
            FittedMessage(
                text: body.cut(min(textLimit, cap)),
                fields: (0..<count).map { i in
                    HeraldNotification.Field(names[i].cut(min(nameLimit, cap)), values[i].cut(min(valueLimit, cap)),
                                             short: shown[shown.startIndex + i].short)
                },
                omitted: fields.count - count)
        }
        func fits(_ m: FittedMessage) -> Bool {
            let pieces = m.fields.reduce(m.text.utf16.count) { $0 + $1.name.utf16.count + $1.value.utf16.count }
            return pieces <= limit && measure(m) <= limit
        }
        /// The largest n in 0...upper for which `ok(n)` holds, if any (`ok` holds up to some n).
        func largest(upTo upper: Int, _ ok: (Int) -> Bool) -> Int? {
            guard ok(0) else { return nil }
            var low = 0, high = upper
            while low < high {
                let mid = low + (high - low + 1) / 2
                if ok(mid) { low = mid } else { high = mid - 1 }
            }
            return low
        }

        let whole = make(shown.count, .max)
        if fits(whole) { return whole }
        // A field cut to this many units still says what it is about.
        let brief = 24
        let count = largest(upTo: shown.count) { fits(make($0, brief)) } ?? 0
        let longest = ([body.size] + names.prefix(count).map(\.size) + values.prefix(count).map(\.size)).max() ?? 0
        let cap = largest(upTo: longest) { fits(make(count, $0)) } ?? 0
        return make(count, cap)
    }
}

extension HeraldNotification {
    /// The title with the kind's emoji in front: "📅 New booking: 山田 太郎".
    var headline: String { title.isEmpty ? kind.emoji : "\(kind.emoji) \(title)" }

    /// The text without the `name: value` lines that repeat a field (the built-in templates
    /// list every field in the text), for kinds that show the fields on their own: each fact
    /// appears once. Lines that only look alike (another value, part of a line) stay.
    var textWithoutFieldLines: String {
        guard !fields.isEmpty, !text.isEmpty else { return text }
        let newline = UInt8(ascii: "\n")
        let lines = text.utf8.split(separator: newline, omittingEmptySubsequences: false).map { Substring($0) }
        var starts: [Substring: [Int]] = [:]
        for (i, line) in lines.enumerated() { starts[line, default: []].append(i) }
        var dropped = [Bool](repeating: false, count: lines.count)
        for field in fields {
            let block = "\(field.name): \(field.value)".utf8.split(separator: newline, omittingEmptySubsequences: false)
                .map { Substring($0) }
            let at = starts[block[0]]?.first { start in
                start + block.count <= lines.count
                    && (0..<block.count).allSatisfy { !dropped[start + $0] && lines[start + $0] == block[$0] }
            }
            if let at { for i in at..<(at + block.count) { dropped[i] = true } }
        }
        guard dropped.contains(true) else { return text }
        // Removing lines can leave blank lines next to each other, or at either end.
        var kept: [Substring] = []
        func blank(_ line: Substring) -> Bool { line.allSatisfy { $0.isWhitespace } }
        for (line, drop) in zip(lines, dropped) where !drop && !(blank(line) && kept.last.map(blank) ?? true) {
            kept.append(line)
        }
        while let last = kept.last, blank(last) { kept.removeLast() }
        return kept.joined(separator: "\n")
    }

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
