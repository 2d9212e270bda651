import Foundation
import HeraldPlugin

/// `kind: googlechat` — posts a card message to a Google Chat space webhook.
///
/// The message has one `cardsV2` card: a header with the emoji and title, a section headed by
/// a dot in the kind's colour and the event name holding the text, and a section of
/// `decoratedText` widgets, one per field (label above value). Card text is HTML-like, so
/// `&`, `<` and `>` are escaped and newlines become `<br>`. `fallbackText` (title and text)
/// is what notifications show. Text is cut with "…" to keep the card under Chat's 32 KB, and
/// fields beyond the card's 100 widgets are left out with a note.
public struct GoogleChatNotifier: NotifierPlugin {
    public typealias Settings = WebhookURLSettings
    public static let kind = "googlechat"
    public static let usesHTML = false
    public static let secretKeys = ["webhookURL"]

    static let sizeLimit = 30_000
    static let maxWidgets = 100
    static let fallbackLimit = 4096

    let endpoint: ServiceEndpoint

    public init(settings: Settings, context: PluginContext) throws {
        endpoint = try ServiceEndpoint(webhookURL: settings.webhookURL, http: settings.http, service: "Google Chat", context: context)
    }

    public func deliver(_ notification: HeraldNotification) async throws {
        try await endpoint.send(Self.payload(for: notification))
    }

    /// The webhook body for a notification.
    static func payload(for n: HeraldNotification) -> JSON {
        // One widget holds the text; one may hold the note about left-out fields.
        let limit = maxWidgets - 1
        let shown = n.fields.count > limit ? Array(n.fields.prefix(limit - 1)) : n.fields
        var fieldWidgets: [JSON] = shown.map { f in
            ["decoratedText": ["topLabel": .string(html(f.name)), "text": .string(html(f.value)), "wrapText": true]]
        }
        if shown.count < n.fields.count {
            let note = HeraldNotification.omittedFieldsNote(n.fields.count - shown.count, locale: n.locale)
            fieldWidgets.append(["textParagraph": ["text": .string(html(note))]])
        }
        let fallback = TextLimit.fit(n.text.isEmpty ? n.headline : n.headline + "\n" + n.text, fallbackLimit)
        let kindHeader = "<font color=\"\(n.kind.hexColor)\">●</font> " + html(n.event.name)

        return SizeLimit.fit(n.text, within: sizeLimit, escaping: .entities) { text in
            // A section needs widgets; the coloured kind line heads whichever comes first.
            var sections: [JSON] = []
            if !text.isEmpty {
                sections.append(["header": .string(kindHeader), "widgets": [["textParagraph": ["text": .string(breaks(text))]]]])
            }
            if !fieldWidgets.isEmpty {
                sections.append(.object(["header": sections.isEmpty ? .string(kindHeader) : nil, "widgets": .array(fieldWidgets)]))
            }
            if sections.isEmpty { sections.append(["widgets": [["textParagraph": ["text": .string(kindHeader)]]]]) }
            return [
                "fallbackText": .string(fallback),
                "cardsV2": [[
                    "cardId": "herald",
                    "card": ["header": ["title": .string(n.headline)], "sections": .array(sections)],
                ]],
            ]
        }
    }

    static func html(_ text: String) -> String { breaks(TextLimit.fit(text, Int.max, escaping: .entities)) }

    static func breaks(_ text: String) -> String { text.replacingOccurrences(of: "\n", with: "<br>") }
}
