import Foundation
import Yams

/// What a route asks of an event besides its name: the booking's event type, status, guest
/// email, answers and tracking, and `where:` conditions on any field of the body. Every
/// condition must hold.
///
/// Compiled once per configuration (globs lowercased where they ignore case, regular
/// expressions and JSON paths parsed), so routing an event only runs the comparisons; a route
/// without conditions costs one empty-array check.
public struct RouteFilter: Sendable, Equatable {
    /// One condition, with the text it was written as.
    public struct Condition: Sendable {
        /// The condition as the configuration writes it, e.g. `guestEmail "*@example.co.jp"`:
        /// what `herald routes test` prints for a route that did not match.
        public let description: String
        let test: Test

        /// Whether `event` satisfies this condition.
        public func holds(for event: Event) -> Bool { test.holds(for: event) }
    }

    /// The conditions, in the order the route writes them.
    public let conditions: [Condition]

    /// No conditions: the route matches on event names alone.
    public init() { conditions = [] }

    init(conditions: [Condition]) { self.conditions = conditions }

    public var isEmpty: Bool { conditions.isEmpty }

    /// Whether every condition holds for `event`.
    public func matches(_ event: Event) -> Bool {
        for condition in conditions where !condition.holds(for: event) { return false }
        return true
    }

    /// The first condition that does not hold for `event`, nil if all do.
    public func firstFailure(for event: Event) -> Condition? {
        conditions.first { !$0.holds(for: event) }
    }

    /// Equal when written alike (compiled regular expressions do not compare).
    public static func == (a: RouteFilter, b: RouteFilter) -> Bool {
        a.conditions.map(\.description) == b.conditions.map(\.description)
    }

    /// A booking field a condition reads.
    enum Field: Sendable {
        case eventType, status, guestEmail
        case tracking(String)

        func value(in booking: Booking) -> String? {
            switch self {
            case .eventType: booking.eventTypeUid
            case .status: booking.status
            case .guestEmail: booking.contact?.email?.lowercased()
            case .tracking(let key): booking.tracking[key]
            }
        }
    }

    enum Test: Sendable {
        /// A booking field matched by any of the matchers; events without a booking never match.
        case field(Field, [TextMatch])
        /// Some answer whose question matches `question` has a value that matches `value`.
        case answer(question: TextMatch, value: TextMatch)
        /// The value at `path` (any element, for an array) matches any of the matchers.
        case path(JSONPath, [TextMatch])
        /// The value at `path` is present and not null (`exists: true`), or not (`false`).
        case exists(JSONPath, Bool)

        func holds(for event: Event) -> Bool {
            switch self {
            case .field(let field, let matchers):
                guard let booking = event.booking, let text = field.value(in: booking) else { return false }
                return matchers.contains { $0.matches(text) }
            case .answer(let question, let value):
                guard let booking = event.booking else { return false }
                return booking.answers.contains { answer in
                    question.matches(answer.question) && answer.content.contains { value.matches($0) }
                }
            case .path(let path, let matchers):
                guard let found = path.value(in: event.payload) else { return false }
                let candidates: [JSONValue]
                if case .array(let items) = found { candidates = items } else { candidates = [found] }
                return candidates.contains { item in
                    guard let text = item.scalarText else { return false }
                    return matchers.contains { $0.matches(text) }
                }
            case .exists(let path, let wanted):
                let found = path.value(in: event.payload)
                let present = found != nil && found != .null
                return present == wanted
            }
        }
    }

    /// How a condition compares text.
    enum TextMatch: Sendable {
        case equals(String)
        case oneOf(Set<String>)
        case contains(String)
        /// `*` any run of characters, `?` one (``Glob``).
        case glob(String)
        case regex(NSRegularExpression)

        /// `equals`, or `glob` when the text has `*` or `?`.
        static func pattern(_ text: String) -> TextMatch {
            text.contains("*") || text.contains("?") ? .glob(text) : .equals(text)
        }

        func matches(_ text: String) -> Bool {
            switch self {
            case .equals(let expected): return text == expected
            case .oneOf(let set): return set.contains(text)
            case .contains(let part): return text.contains(part)
            case .glob(let pattern): return Glob.matches(pattern, text)
            case .regex(let regex):
                return regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
            }
        }
    }
}

/// A path to a value inside a JSON body: keys separated by `.`, array elements by `[n]`,
/// e.g. `object.contact.name` or `object.answers[0].question`. Parsed once, when the
/// configuration is read.
public struct JSONPath: Sendable, Equatable, CustomStringConvertible {
    enum Step: Sendable, Equatable {
        case key(String)
        case index(Int)
    }

    let steps: [Step]
    /// The path as written.
    public let description: String

    /// The largest array index a path may name; larger ones are refused when read, not
    /// converted.
    static let maxIndex = 1_000_000

    /// Parses `text`; throws a message saying what is wrong and where (1-based character).
    public init(parsing text: String) throws(PathError) {
        description = text
        guard !text.isEmpty else { throw PathError(message: "the path is empty; write keys separated by dots, e.g. object.contact.name") }
        let chars = Array(text)
        var steps: [Step] = []
        var i = 0
        while true {
            var key = ""
            while i < chars.count, chars[i] != ".", chars[i] != "[", chars[i] != "]" {
                key.append(chars[i])
                i += 1
            }
            guard !key.isEmpty else {
                let what = i < chars.count ? "\"\(chars[i])\"" : "the end"
                throw PathError(message: "expected a key at character \(i + 1) of \"\(text)\", found \(what)")
            }
            steps.append(.key(key))
            while i < chars.count, chars[i] == "[" {
                let start = i + 1
                var j = start
                while j < chars.count, chars[j] != "]" { j += 1 }
                guard j < chars.count else { throw PathError(message: "\"[\" at character \(i + 1) of \"\(text)\" is not closed") }
                let digits = String(chars[start..<j])
                guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else {
                    throw PathError(message: "\"[\(digits)]\" in \"\(text)\" is not an array index; write [0], [1], …")
                }
                guard let index = Int(digits), index <= Self.maxIndex else {
                    throw PathError(message: "array index \(digits) in \"\(text)\" is larger than \(Self.maxIndex)")
                }
                steps.append(.index(index))
                i = j + 1
            }
            if i == chars.count { break }
            guard chars[i] == "." else {
                throw PathError(message: "unexpected \"\(chars[i])\" at character \(i + 1) of \"\(text)\"")
            }
            i += 1
        }
        self.steps = steps
    }

    /// The value at this path in `json`, nil if any step is missing.
    public func value(in json: JSONValue) -> JSONValue? {
        var current = json
        for step in steps {
            switch (step, current) {
            case (.key(let key), .object(let object)):
                guard let next = object[key] else { return nil }
                current = next
            case (.index(let index), .array(let items)):
                guard index < items.count else { return nil }
                current = items[index]
            default:
                return nil
            }
        }
        return current
    }

    /// A path that does not parse, and why.
    public struct PathError: Error, Sendable {
        public let message: String
    }
}

extension JSONValue {
    /// A scalar as text, as a condition compares it: a string's value, a number as it was
    /// written, `true`/`false`; nil for null, arrays and objects.
    var scalarText: String? {
        switch self {
        case .string(let s): s
        case .number(let n): n.text
        case .bool(let b): b ? "true" : "false"
        case .null, .array, .object: nil
        }
    }
}

/// Reading route conditions from the configuration, each error located at its key or value.
extension Reader {
    /// The keys of a route that add conditions.
    static let filterKeys: Set<String> = ["eventType", "status", "guestEmail", "answers", "tracking", "where"]

    /// The conditions written under one of ``filterKeys``.
    func readConditions(_ key: String, _ node: Node, _ path: String) throws(ConfigError) -> [RouteFilter.Condition] {
        switch key {
        case "eventType", "status":
            let values = try nonEmptyList(node, path)
            let field: RouteFilter.Field = key == "status" ? .status : .eventType
            return [condition("\(key) in \(Self.quoted(values))", .field(field, [.oneOf(Set(values))]))]
        case "guestEmail":
            let patterns = try nonEmptyList(node, path)
            return [condition("guestEmail \(Self.quoted(patterns))",
                              .field(.guestEmail, patterns.map { .pattern($0.lowercased()) }))]
        case "tracking":
            var out: [RouteFilter.Condition] = []
            for (name, keyNode, value) in try mapping(node, path) {
                let p = "\(path).\(name)"
                guard name.hasPrefix("utm_"), name.count > 4 else {
                    throw fail(keyNode, p, "expected a UTM parameter such as utm_source, utm_medium or utm_campaign")
                }
                let patterns = try nonEmptyList(value, p)
                out.append(condition("tracking.\(name) \(Self.quoted(patterns))", .field(.tracking(name), patterns.map(RouteFilter.TextMatch.pattern))))
            }
            guard !out.isEmpty else { throw fail(node, path, "expected at least one utm_* key") }
            return out
        case "answers":
            return try items(node, path, key).map { (item, p, label) throws(ConfigError) in try readAnswer(item, p, label) }
        default:
            return try items(node, path, key).map { (item, p, label) throws(ConfigError) in try readWhere(item, p, label) }
        }
    }

    private func condition(_ description: String, _ test: RouteFilter.Test) -> RouteFilter.Condition {
        RouteFilter.Condition(description: description, test: test)
    }

    /// A list of mappings, or one mapping standing for a list of one: each with its key path
    /// and its label in descriptions (`answers[1]`).
    private func items(_ node: Node, _ path: String, _ key: String) throws(ConfigError) -> [(Node, String, String)] {
        if node.mapping != nil { return [(node, path, key)] }
        guard let seq = node.sequence, !seq.isEmpty else {
            throw fail(node, path, "expected a list of conditions (- { … }), found \(describe(node))")
        }
        return seq.enumerated().map { ($1, "\(path)[\($0)]", "\(key)[\($0)]") }
    }

    private func nonEmptyList(_ node: Node, _ path: String) throws(ConfigError) -> [String] {
        let values = try stringList(node, path)
        guard !values.isEmpty else { throw fail(node, path, "expected at least one value") }
        return values
    }

    /// `{question: …, equals|contains|regex: …}`.
    private func readAnswer(_ node: Node, _ path: String, _ label: String) throws(ConfigError) -> RouteFilter.Condition {
        var question: String?
        var match: (op: String, value: RouteFilter.TextMatch, text: String)?
        for (key, _, v) in try mapping(node, path, allowed: ["question", "equals", "contains", "regex"]) {
            let p = "\(path).\(key)"
            if key == "question" {
                question = try string(v, p)
                continue
            }
            guard match == nil else { throw fail(v, p, "give one of equals, contains or regex, not several") }
            let text = try string(v, p)
            match = (key, try textMatch(key, text, v, p), text)
        }
        guard let question else { throw fail(node, "\(path).question", "missing required key \"question\" (the question as the booking form shows it; * and ? are globs)") }
        guard let match else { throw fail(node, path, "give one of equals, contains or regex") }
        return condition("\(label) \(Self.quoted([question])) \(match.op) \(Self.quoted([match.text]))",
                         .answer(question: .pattern(question), value: match.value))
    }

    /// `{path: …, equals|in|glob|regex|exists: …}`.
    private func readWhere(_ node: Node, _ path: String, _ label: String) throws(ConfigError) -> RouteFilter.Condition {
        var jsonPath: JSONPath?
        var test: (op: String, text: String, make: (JSONPath) -> RouteFilter.Test)?
        for (key, _, v) in try mapping(node, path, allowed: ["path", "equals", "in", "glob", "regex", "exists"]) {
            let p = "\(path).\(key)"
            if key == "path" {
                let text = try string(v, p)
                do { jsonPath = try JSONPath(parsing: text) } catch { throw fail(v, p, error.message) }
                continue
            }
            guard test == nil else { throw fail(v, p, "give one of equals, in, glob, regex or exists, not several") }
            switch key {
            case "exists":
                let wanted = try bool(v, p)
                test = (key, String(wanted), { .exists($0, wanted) })
            case "in":
                let values = try nonEmptyList(v, p)
                test = (key, Self.quoted(values), { .path($0, [.oneOf(Set(values))]) })
            default:
                let text = try string(v, p)
                let match = try textMatch(key, text, v, p)
                test = (key, Self.quoted([text]), { .path($0, [match]) })
            }
        }
        guard let jsonPath else { throw fail(node, "\(path).path", "missing required key \"path\" (e.g. object.contact.name)") }
        guard let test else { throw fail(node, path, "give one of equals, in, glob, regex or exists") }
        return condition("\(label) \(jsonPath) \(test.op) \(test.text)", test.make(jsonPath))
    }

    /// `equals`, `contains`, `glob` or `regex` (compiled here, once).
    private func textMatch(_ op: String, _ text: String, _ node: Node, _ path: String) throws(ConfigError) -> RouteFilter.TextMatch {
        switch op {
        case "equals": return .equals(text)
        case "contains": return .contains(text)
        case "glob": return .glob(text)
        default:
            do { return .regex(try NSRegularExpression(pattern: text)) } catch {
                throw fail(node, path, "not a valid regular expression (ICU syntax): \(Self.quoted([text]))")
            }
        }
    }

    /// `"a"` or `["a", "b"]`, as conditions print their values.
    static func quoted(_ values: [String]) -> String {
        let each = values.map(\.debugDescription)
        return each.count == 1 ? each[0] : "[\(each.joined(separator: ", "))]"
    }
}
