import Foundation

/// What the built-in template shows of a body that holds no booking (GitHub, Standard
/// Webhooks senders, any generic JSON), so that its notification says more than a name.
///
/// The fields are, in this order and at most ``limit`` of them: the top-level values that
/// commonly say what happened (``leading``: `action`, `ref`, `status`, …), then each
/// top-level object by the first of its ``naming`` keys (`repository` → its `full_name`,
/// `sender` → its `login`), then the other top-level strings, numbers and booleans, by key.
/// A body with none of these (say, only arrays) shows the start of its JSON instead.
enum PayloadSummary {
    static let limit = 10
    /// Longest value shown, in characters; a longer one is cut and ends with `…`.
    static let valueLimit = 200
    /// Longest JSON excerpt shown, in characters.
    static let excerptLimit = 500
    static let leading = ["action", "ref", "status", "state", "title", "message", "url", "html_url"]
    static let naming = ["full_name", "name", "login", "title", "number", "id"]

    /// The fields for `event`'s body, leaving out the value its name was read from.
    static func fields(for event: Event, locale: HeraldLocale) -> [HeraldNotification.Field] {
        guard case .object(let object) = event.payload else { return [] }
        var out: [HeraldNotification.Field] = []
        var used = Set<String>()
        func add(_ key: String, _ value: String) {
            guard out.count < limit, !value.isEmpty, used.insert(key).inserted else { return }
            out.append(HeraldNotification.Field(key, cut(value, valueLimit), short: value.count <= 40))
        }
        for key in leading { if let text = object[key].flatMap(scalarText) { add(key, text) } }
        for key in object.keys.sorted() {
            guard case .object(let inner)? = object[key] else { continue }
            if let name = naming.lazy.compactMap({ inner[$0].flatMap(scalarText) }).first { add(key, name) }
        }
        for key in object.keys.sorted() {
            guard let text = object[key].flatMap(scalarText) else { continue }
            if (key == "event" || key == "type"), text == event.name { continue }
            add(key, text)
        }
        if out.isEmpty {
            let excerpt = String(decoding: event.body, as: UTF8.self)
                .split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\r" || $0 == "\t" }).joined(separator: " ")
            if !excerpt.isEmpty { out.append(.init(locale == .ja ? "本文" : "Body", cut(excerpt, excerptLimit))) }
        }
        return out
    }

    /// A string, number or boolean as one line of text; nil for null, arrays and objects.
    static func scalarText(_ value: JSONValue) -> String? {
        switch value {
        case .string(let s): return s.split(whereSeparator: \.isNewline).joined(separator: " ")
        case .number(let n): return n.text
        case .bool(let b): return b ? "true" : "false"
        case .null, .array, .object: return nil
        }
    }

    static func cut(_ text: String, _ limit: Int) -> String {
        text.count <= limit ? text : String(text.prefix(limit - 1)) + "…"
    }
}
