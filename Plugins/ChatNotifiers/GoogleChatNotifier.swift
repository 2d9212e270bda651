import Foundation
import HeraldPlugin

/// `kind: googlechat` — posts a card message to a Google Chat space webhook.
///
/// The message has one `cardsV2` card: a header with the emoji and title, a section headed by
/// a dot in the kind's colour and the event name holding the text, and a section of
/// `decoratedText` widgets, one per field (label above value). Card text is HTML-like, so
/// `&`, `<` and `>` are escaped and newlines become `<br>`. `fallbackText` (title and text)
/// is what notifications show. Text and fields are cut with "…" to keep the message under
/// Chat's 32,000 bytes, and fields beyond the card's 100 widgets are left out with a note.
public struct GoogleChatNotifier: NotifierPlugin {
    public typealias Settings = WebhookURLSettings
    public static let kind = "googlechat"
    public static let usesHTML = false
    public static let secretKeys = ["webhookURL"]

    /// "The maximum message size (including any text or cards) is 32,000 bytes"; stay below
    /// with room to spare. https://developers.google.com/workspace/chat/create-messages
    static let sizeLimit = 30_000
    /// "You can add up to 100 widgets per card. Any widgets beyond this limit are ignored."
    /// https://developers.google.com/workspace/chat/api/reference/rest/v1/cards#Card
    static let maxWidgets = 100
    /// No limit is documented for these; they keep one part from crowding out the rest.
    static let fallbackLimit = 4096
    static let titleLimit = 256
    static let labelLimit = 256

    let endpoint: ServiceEndpoint

    public init(settings: Settings, context: PluginContext) throws {
        endpoint = try ServiceEndpoint(webhookURL: settings.webhookURL, http: settings.http, service: "Google Chat", context: context)
    }

    public func deliver(_ notification: HeraldNotification) async throws {
        try await endpoint.send(request(for: notification))
    }

    /// The request ``deliver(_:)`` makes, shown without sending.
    public func preview(_ notification: HeraldNotification) -> DeliveryPreview? {
        endpoint.preview(request(for: notification))
    }

    func request(for notification: HeraldNotification) -> ServiceRequest {
        ServiceRequest(body: .json(Self.payload(for: notification)))
    }

    /// The webhook body for a notification.
    static func payload(for n: HeraldNotification) -> JSON {
        let headline = TextLimit.fit(n.headline, titleLimit)
        let fallback = TextLimit.fit(n.text.isEmpty ? headline : headline + "\n" + n.text, fallbackLimit)
        let kindHeader = "<font color=\"\(n.kind.hexColor)\">●</font> " + html(TextLimit.fit(n.event.name, titleLimit))
        func build(_ m: FittedMessage) -> JSON {
            var fieldWidgets: [JSON] = m.fields.map { f in
                ["decoratedText": ["topLabel": .string(breaks(f.name)), "text": .string(breaks(f.value)), "wrapText": true]]
            }
            if m.omitted > 0 {
                let note = HeraldNotification.omittedFieldsNote(m.omitted, locale: n.locale)
                fieldWidgets.append(["textParagraph": ["text": .string(html(note))]])
            }
            // A section needs widgets; the coloured kind line heads whichever comes first.
            var sections: [JSON] = []
            if !m.text.isEmpty {
                sections.append(["header": .string(kindHeader), "widgets": [["textParagraph": ["text": .string(breaks(m.text))]]]])
            }
            if !fieldWidgets.isEmpty {
                sections.append(.object(["header": sections.isEmpty ? .string(kindHeader) : nil, "widgets": .array(fieldWidgets)]))
            }
            if sections.isEmpty { sections.append(["widgets": [["textParagraph": ["text": .string(kindHeader)]]]]) }
            return [
                "fallbackText": .string(fallback),
                "cardsV2": [[
                    "cardId": "herald",
                    "card": ["header": ["title": .string(headline)], "sections": .array(sections)],
                ]],
            ]
        }
        // One widget holds the text, and one may hold the note about left-out fields.
        let room = maxWidgets - 1
        let fitted = FittedMessage.fit(text: n.textWithoutFieldLines, fields: n.fields, escaping: .entities,
                                       maxFields: n.fields.count > room ? room - 1 : room, nameLimit: labelLimit,
                                       within: sizeLimit) { build($0).data.count }
        return build(fitted)
    }

    static func html(_ text: String) -> String { breaks(Escaping.entities.escape(text)) }

    static func breaks(_ text: String) -> String { text.replacingOccurrences(of: "\n", with: "<br>") }
}
