import Foundation
import Mustache

/// Turns an event into a ``HeraldNotification`` with Mustache templates.
///
/// Built-in templates cover every Jicoo event in English and Japanese; a route may name a
/// user template instead. Title and text are rendered as plain text (no HTML escaping),
/// `html` with HTML escaping. Times are shown in the booking's own time zone, e.g.
/// `2026-11-27 (金) 14:00–15:00 JST`.
///
/// Template variables: `event`, `id`, `source`, `uid`, `status`, `guest.name`,
/// `guest.email` (also `contact.…`), `when`, `date`, `startTime`, `endTime`, `timeZone`
/// (`UTC` when the booking's zone is unknown), `zone`, `endZone` (differs from `zone` across
/// a daylight-saving change), `start`/`end` (UTC, ISO 8601), `cancelReason`, `cancelledBy`,
/// `answers` (`question`, `answer`), `tracking.*`, `fields` (`name`, `value`), `lead`,
/// `title` (in text and html), and `raw.*`: the whole body as received.
public struct Renderer: Sendable {
    /// One template's compiled parts. A class: every render takes one out of the shared
    /// tables, and a copy of a struct retained each part's storage again, shared with every
    /// other render on the other core.
    final class Compiled: Sendable {
        let title: Template
        let text: Template
        let html: Template?
        let lead: Template?

        init(title: Template, text: Template, html: Template?, lead: Template?) {
            self.title = title
            self.text = text
            self.html = html
            self.lead = lead
        }
    }

    /// One compiled template part. Mustache renders it in general; two shapes that every
    /// built-in notification uses are rendered directly, with the same result, because Mustache
    /// looks each variable up through dynamic casts and that was most of a render's CPU:
    /// - ``Plain``: text and `{{name}}` / `{{a.b}}` variables only (titles, leads, most user
    ///   titles), in a text part;
    /// - the built-in text body (the lead, a blank line, then `name: value` per field).
    /// Anything else (sections, partials, HTML escaping, a value it cannot read) goes to Mustache.
    struct Template: Sendable {
        let mustache: MustacheTemplate
        let plain: Plain?
        let isBuiltInBody: Bool

        func render(_ context: Context) -> String {
            if isBuiltInBody {
                // Sized first, then each part's UTF-8 copied in place: appending to a growing
                // string copied it again and again, and even into reserved room each `+=` of a
                // short part cost about 340 instructions (26 of them per booking's text).
                let lead = context.lead ?? ""
                var size = lead.utf8.count + 2
                for field in context.fields { size += field.name.utf8.count + field.value.utf8.count + 3 }
                return String(unsafeUninitializedCapacity: size) { buffer in
                    var at = 0
                    func put(_ text: String) { at = Self.copy(text, into: buffer, at: at) }
                    func put(_ byte: UInt8) { buffer[at] = byte; at += 1 }
                    put(lead)
                    put(0x0A); put(0x0A)
                    for field in context.fields {
                        put(field.name); put(UInt8(ascii: ":")); put(UInt8(ascii: " ")); put(field.value); put(0x0A)
                    }
                    return at
                }
            }
            if let plain, let text = plain.render(context) { return text }
            return mustache.render(context)
        }

        /// Copies `text`'s UTF-8 into `buffer` from `offset`, which must leave room for it;
        /// returns the offset after it.
        @inline(__always)
        private static func copy(_ text: String, into buffer: UnsafeMutableBufferPointer<UInt8>, at offset: Int) -> Int {
            let copied = text.utf8.withContiguousStorageIfAvailable { bytes in
                if let source = bytes.baseAddress, let target = buffer.baseAddress {
                    (target + offset).update(from: source, count: bytes.count)
                }
                return bytes.count
            }
            if let copied { return offset + copied }
            var at = offset
            for byte in text.utf8 { buffer[at] = byte; at += 1 }
            return at
        }
    }

    /// A template made only of text and variables, as a list of pieces.
    struct Plain: Sendable {
        enum Piece: Sendable { case text(String), variable([String]) }
        let pieces: [Piece]

        /// The pieces of `source`, or nil when it has anything but text and `{{name}}` or
        /// `{{a.b.c}}` tags (names of letters, digits and `_`), or a lone `{{`.
        init?(_ source: String) {
            var pieces: [Piece] = []
            var rest = Substring(source)
            while let open = rest.range(of: "{{") {
                if open.lowerBound > rest.startIndex { pieces.append(.text(String(rest[..<open.lowerBound]))) }
                let afterOpen = rest[open.upperBound...]
                guard let close = afterOpen.range(of: "}}") else { return nil }
                let name = afterOpen[..<close.lowerBound]
                let path = name.split(separator: ".", omittingEmptySubsequences: false)
                guard !path.isEmpty, path.allSatisfy({ part in
                    !part.isEmpty && part.utf8.allSatisfy { c in
                        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F
                    }
                }) else { return nil }
                pieces.append(.variable(path.map(String.init)))
                rest = afterOpen[close.upperBound...]
            }
            if !rest.isEmpty { pieces.append(.text(String(rest))) }
            self.pieces = pieces
        }

        /// The text, or nil when a variable holds something only Mustache knows how to read
        /// (then Mustache renders the whole template).
        func render(_ context: Context) -> String? {
            var out = ""
            for piece in pieces {
                switch piece {
                case .text(let text): out += text
                case .variable(let path):
                    if let known = context.text(at: path) {
                        if let known { out += known }
                        continue
                    }
                    var value: Any? = context.child(named: path[0])
                    for name in path.dropFirst() {
                        guard let current = value else { break }
                        switch current {
                        case let d as [String: String]: value = d[name]
                        case let d as [String: Any]: value = d[name]
                        default: return nil
                        }
                    }
                    switch value {
                    case nil: break
                    case let text as String: out += text
                    default: return nil
                    }
                }
            }
            return out
        }
    }

    let defaultLocale: HeraldLocale
    let builtIn: [HeraldLocale: [String: Compiled]]
    let unknown: [HeraldLocale: Compiled]
    let user: [String: Compiled]
    /// The agenda's title and text per locale.
    let agenda: [HeraldLocale: (title: MustacheTemplate, text: MustacheTemplate)]

    /// A template that did not compile: which one, which part, and the parser's message.
    public struct TemplateError: Error, Sendable, CustomStringConvertible {
        public let template: String
        public let part: String
        public let message: String
        public var description: String { "template \(template).\(part): \(message)" }
    }

    public init(config: HeraldConfig) throws(TemplateError) {
        try self.init(templates: config.templates, defaultLocale: config.locale)
    }

    public init(templates: [String: HeraldConfig.TemplateSource] = [:], defaultLocale: HeraldLocale = .en) throws(TemplateError) {
        self.defaultLocale = defaultLocale
        func compile(_ source: String, text: Bool, name: String, part: String, builtInBody: Bool = false) throws(TemplateError) -> Template {
            do {
                let mustache = try MustacheTemplate(string: text ? "{{%CONTENT_TYPE:TEXT}}" + source : source)
                return Template(mustache: mustache, plain: text ? Plain(source) : nil, isBuiltInBody: builtInBody)
            } catch {
                throw TemplateError(template: name, part: part, message: Self.describe(error))
            }
        }
        let html = try compile(DefaultTemplates.html, text: false, name: "built-in", part: "html")
        let body = try compile(DefaultTemplates.body, text: true, name: "built-in", part: "text", builtInBody: true)
        var builtIn: [HeraldLocale: [String: Compiled]] = [:]
        for (locale, table) in [(HeraldLocale.en, DefaultTemplates.en), (.ja, DefaultTemplates.ja)] {
            for (event, t) in table {
                builtIn[locale, default: [:]][event] = Compiled(
                    title: try compile(t.title, text: true, name: event, part: "title"), text: body, html: html,
                    lead: try compile(t.lead, text: true, name: event, part: "lead"))
            }
        }
        var unknown: [HeraldLocale: Compiled] = [:]
        for (locale, t) in DefaultTemplates.unknown {
            unknown[locale] = Compiled(title: try compile(t.title, text: true, name: "unknown", part: "title"), text: body,
                                       html: html, lead: try compile(t.lead, text: true, name: "unknown", part: "lead"))
        }
        var user: [String: Compiled] = [:]
        for (name, source) in templates {
            user[name] = Compiled(
                title: try compile(source.title, text: true, name: name, part: "title"),
                text: try compile(source.text, text: true, name: name, part: "text"),
                html: try source.html.map { s throws(TemplateError) in try compile(s, text: false, name: name, part: "html") },
                lead: nil)
        }
        var agenda: [HeraldLocale: (title: MustacheTemplate, text: MustacheTemplate)] = [:]
        for (locale, t) in DefaultTemplates.agenda {
            agenda[locale] = (try compile(t.title, text: true, name: "agenda", part: "title").mustache,
                              try compile(t.text, text: true, name: "agenda", part: "text").mustache)
        }
        self.builtIn = builtIn
        self.unknown = unknown
        self.user = user
        self.agenda = agenda
    }

    static func describe(_ error: any Error) -> String {
        if let e = error as? MustacheTemplate.ParserError {
            return "\(e.error) at line \(e.context.lineNumber), column \(e.context.columnNumber): \(e.context.line)"
        }
        return "\(error)"
    }

    /// A reminder being rendered: how long before the start it was meant to go out, and now.
    public struct Reminder: Sendable {
        public var offset: Duration
        public var now: Date
        public init(offset: Duration, now: Date = Date()) {
            self.offset = offset
            self.now = now
        }
    }

    /// Renders `event`. `template` names a user template; nil picks the built-in one (the
    /// built-in `reminder` one for a `reminder`, which also sets `reminder.offset` and
    /// `startsIn`). `html: false` skips the HTML body (`html` is nil) for notifiers that
    /// never show it.
    public func render(_ event: Event, template: String? = nil, locale: HeraldLocale? = nil,
                       options: [String: String] = [:], html renderHTML: Bool = true,
                       reminder: Reminder? = nil) -> HeraldNotification {
        let locale = locale ?? defaultLocale
        let builtInName = reminder == nil ? event.name : "reminder"
        let compiled = template.flatMap { user[$0] } ?? builtIn[locale]?[builtInName] ?? unknown[locale]!
        let context = Context(event: event, locale: locale)
        if let reminder {
            context.extra["reminder"] = ["offset": TimeText.shortDuration(reminder.offset)]
            if let start = event.booking?.startedAt {
                context.extra["startsIn"] = TimeText.startsIn(start.timeIntervalSince(reminder.now), locale: locale)
            }
        }
        if let lead = compiled.lead { context.lead = lead.render(context) }
        let title = Self.trimmed(compiled.title.render(context), joiningLines: true)
        context.title = title
        let text = Self.trimmed(compiled.text.render(context))
        let html = renderHTML ? compiled.html?.render(context) : nil
        return HeraldNotification(event: event, title: title, text: text, html: html, fields: context.fields,
                                  kind: reminder == nil ? HeraldNotification.Kind(eventName: event.name) : .other,
                                  locale: locale, routeOptions: options)
    }

    /// The daily agenda for `date` (`2026-12-01`): each booking's local time range in `zone`,
    /// guest and event type, by start. Variables: `date`, `count`, `bookings` (`time`,
    /// `guest`, `email`, `eventType`, `uid`).
    public func renderAgenda(_ event: Event, bookings: [BookingSnapshot], date: String, zone: TimeZone,
                             locale: HeraldLocale? = nil) -> HeraldNotification {
        let locale = locale ?? defaultLocale
        let templates = agenda[locale] ?? agenda[.en]!
        let list: [[String: Any]] = bookings.map { b in
            let start = TimeText.parts(b.startedAt, zone: zone.identifier, locale: locale).time
            let end = b.endedAt.map { "–" + TimeText.parts($0, zone: zone.identifier, locale: locale).time } ?? ""
            return ["time": start + end, "guest": b.guestName ?? "", "email": b.guestEmail ?? "",
                    "eventType": b.eventTypeUid ?? "", "uid": b.uid]
        }
        let context: [String: Any] = ["date": date, "count": bookings.count, "bookings": list]
        let title = Self.trimmed(templates.title.render(context), joiningLines: true)
        let text = Self.trimmed(templates.text.render(context))
        let fields = bookings.map { b in
            HeraldNotification.Field(TimeText.parts(b.startedAt, zone: zone.identifier, locale: locale).time,
                                     [b.guestName, b.eventTypeUid].compactMap { $0 }.joined(separator: " · "))
        }
        return HeraldNotification(event: event, title: title, text: text, html: nil, fields: fields, kind: .other,
                                  locale: locale, routeOptions: [:])
    }

    /// `text` without leading and trailing white space; with `joiningLines`, newlines inside
    /// become spaces. (Foundation's trimming bridges to NSString on Linux, a tenth of a render.)
    static func trimmed(_ text: String, joiningLines: Bool = false) -> String {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !isWhitespace($0) }),
              let last = scalars.lastIndex(where: { !isWhitespace($0) }) else { return "" }
        let end = scalars.index(after: last)
        // Nothing to trim (the usual case): the text itself, not a copy.
        let inner = first == text.startIndex && end == text.endIndex ? text : String(text[first..<end])
        guard joiningLines, Self.containsLineFeed(inner) else { return inner }
        return String(decoding: inner.utf8.map { $0 == 0x0A ? 0x20 : $0 }, as: UTF8.self)
    }

    /// Whether `text` has a line feed: `memchr` on its contiguous bytes, which native strings
    /// always have (the generic `contains` on the UTF-8 view cost 25 instructions a byte).
    private static func containsLineFeed(_ text: String) -> Bool {
        text.utf8.withContiguousStorageIfAvailable { bytes in
            bytes.baseAddress.map { memchr($0, 0x0A, bytes.count) != nil } ?? false
        } ?? text.utf8.contains(0x0A)
    }

    /// Unicode's White_Space property, answered without the property tables for ASCII.
    private static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.isASCII { return scalar == " " || (scalar.value >= 0x09 && scalar.value <= 0x0D) }
        return scalar.properties.isWhitespace
    }

    /// The labelled facts shown under a notification.
    ///
    /// The booking's fields are read one by one: binding the whole booking copied each of its
    /// strings and arrays, and released them again.
    static func fields(for event: Event, locale: HeraldLocale, when: String?) -> [HeraldNotification.Field] {
        guard event.hasBooking else {
            return [HeraldNotification.Field(DefaultTemplates.label(.event, locale), event.name)]
                + PayloadSummary.fields(for: event, locale: locale)
        }
        let answers = event.booking?.answers ?? []
        let contact = event.booking?.contact
        var out: [HeraldNotification.Field] = []
        out.reserveCapacity(6 + answers.count)
        if let when { out.append(.init(DefaultTemplates.label(.when, locale), when)) }
        if let name = contact?.name, !name.isEmpty {
            out.append(.init(DefaultTemplates.label(.guest, locale), locale == .ja ? "\(name) 様" : name, short: true))
        }
        if let email = contact?.email, !email.isEmpty { out.append(.init(DefaultTemplates.label(.email, locale), email, short: true)) }
        if let reason = event.booking?.cancelReason, !reason.isEmpty {
            out.append(.init(DefaultTemplates.label(.reason, locale), reason))
        }
        if let by = event.booking?.cancelledBy, !by.isEmpty, HeraldNotification.Kind(eventName: event.name) == .cancelled || event.name.hasSuffix("declined") {
            let who = by == "host" ? DefaultTemplates.label(.host, locale) : by == "guest" ? DefaultTemplates.label(.guestWho, locale) : by
            out.append(.init(DefaultTemplates.label(.cancelledBy, locale), who, short: true))
        }
        for a in answers where !a.content.isEmpty {
            out.append(.init(a.question, a.content.joined(separator: locale == .ja ? "、" : ", ")))
        }
        if let uid = event.booking?.uid { out.append(.init(DefaultTemplates.label(.booking, locale), uid, short: true)) }
        return out
    }

    /// The template variables of one render. Each is computed when a template first reads it
    /// (Mustache asks ``child(named:)``), so a render pays only for what its templates use:
    /// the built-in title and text read `guest`, `when`, `lead` and `fields`, never `raw` (the
    /// whole body as nested dictionaries) or the ISO 8601 times. The booking's times in its
    /// zone are worked out once and shared by `when`, `date`, `startTime`, … and the fields.
    final class Context: MustacheParent {
        let event: Event
        let locale: HeraldLocale
        let start: TimeText.Parts?
        let end: TimeText.Parts?
        let when: String?
        let fields: [HeraldNotification.Field]
        /// Set by ``Renderer/render(_:template:locale:options:html:)`` once rendered: a
        /// template sees the lead and the title only after them, as before.
        var lead: String?
        var title: String?
        /// Variables beyond the event's, e.g. a reminder's `reminder` and `startsIn`.
        var extra: [String: Any] = [:]
        private var raw: Any?
        private var fieldRecords: [[String: String]]?

        private static let sourceLabels = ["jicoo": "Jicoo", "github": "GitHub"]

        init(event: Event, locale: HeraldLocale) {
            self.event = event
            self.locale = locale
            // The three fields read one by one: binding the whole booking copied all of it.
            if event.hasBooking {
                let zone = TimeText.zone(event.booking?.timeZone)
                let startedAt = event.booking?.startedAt
                let endedAt = event.booking?.endedAt
                start = startedAt.map { TimeText.parts($0, in: zone, locale: locale) }
                end = endedAt.map { TimeText.parts($0, in: zone, locale: locale) }
                if let start, let startedAt {
                    // An end before the start is not shown, as in TimeText.range.
                    when = TimeText.range(start, endedAt.map { $0 >= startedAt } == true ? end : nil)
                } else {
                    when = nil
                }
            } else {
                start = nil
                end = nil
                when = nil
            }
            fields = Renderer.fields(for: event, locale: locale, when: when)
        }

        /// The text of the variables the built-in titles and leads use (`guest.name`, `when`,
        /// `event`, …), read straight from the event: `.some(nil)` when the variable has no
        /// value, nil for any other path, which ``child(named:)`` answers. It gives the same
        /// text as that general walk without building the dictionaries Mustache needs.
        func text(at path: [String]) -> String?? {
            guard extra.isEmpty || extra[path[0]] == nil else { return nil }
            if path.count == 2, path[0] == "guest" || path[0] == "contact" {
                guard event.hasBooking else { return .some(nil) }
                let contact = event.booking?.contact
                switch path[1] {
                case "name": return contact?.name ?? ""
                case "email": return contact?.email ?? ""
                default: return .some(nil)
                }
            }
            guard path.count == 1 else { return nil }
            switch path[0] {
            case "event": return event.name
            case "when": return event.hasBooking ? when : .some(nil)
            default: return nil
            }
        }

        func child(named name: String) -> Any? {
            if !extra.isEmpty, let value = extra[name] { return value }
            switch name {
            case "event": return event.name
            case "id": return event.id
            case "source": return event.source
            case "endpoint": return event.endpoint
            case "sourceLabel": return Self.sourceLabels[event.source] ?? "Webhook"
            case "receivedAt": return ISO8601.format(event.receivedAt)
            case "raw":
                if raw == nil { raw = event.payload.templateValue }
                return raw
            case "fields":
                if fieldRecords == nil { fieldRecords = fields.map { ["name": $0.name, "value": $0.value] } }
                return fieldRecords
            case "lead": return lead
            case "title": return title
            default: break
            }
            guard let b = event.booking else { return nil }
            switch name {
            case "guest", "contact": return ["name": b.contact?.name ?? "", "email": b.contact?.email ?? ""]
            case "uid": return b.uid ?? ""
            case "eventTypeUid": return b.eventTypeUid ?? ""
            case "status": return b.status ?? ""
            case "timeZone": return b.timeZone.flatMap { TimeText.knownZone($0) == nil ? nil : $0 } ?? "UTC"
            case "cancelReason": return b.cancelReason ?? ""
            case "cancelledBy": return b.cancelledBy ?? ""
            case "tracking": return b.tracking
            case "answers": return b.answers.map { ["question": $0.question, "answer": $0.content.joined(separator: ", ")] }
            case "when": return when
            case "date": return start?.date
            case "startTime": return start?.time
            case "zone": return start?.zone
            case "start": return b.startedAt.map(ISO8601.format)
            case "endTime": return end?.time
            case "endZone": return end?.zone
            case "end": return b.endedAt.map(ISO8601.format)
            default: return nil
            }
        }
    }
}
