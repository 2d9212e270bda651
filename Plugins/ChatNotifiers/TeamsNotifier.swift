import Foundation
import HeraldPlugin

/// `kind: teams` — posts an Adaptive Card to a Microsoft Teams channel through a Workflows
/// (Power Automate) "When a Teams webhook request is received" URL. The retired Office 365
/// connector URLs are not supported.
///
/// The body is a `message` with one attachment of type
/// `application/vnd.microsoft.card.adaptive`: a card (version 1.4, full width) with the emoji
/// and title in a container styled by kind (good, warning, attention, accent), the text in a
/// wrapping TextBlock, and the fields as a FactSet. The title is also the card's
/// `fallbackText`. The text is cut with "…" to keep the body under Teams' ~28 KB limit.
public struct TeamsNotifier: NotifierPlugin {
    public typealias Settings = WebhookURLSettings
    public static let kind = "teams"
    public static let usesHTML = false
    public static let secretKeys = ["webhookURL"]

    /// Teams refuses a message over about 28 KB ("Request Entity too large"); stay below
    /// with room to spare. https://learn.microsoft.com/en-us/connectors/teams/#known-issues-and-limitations
    static let sizeLimit = 27_000
    /// No limit is documented for a title or a fact's name; these keep one from crowding out the rest.
    static let titleLimit = 256
    static let factNameLimit = 256

    let endpoint: ServiceEndpoint

    public init(settings: Settings, context: PluginContext) throws {
        endpoint = try ServiceEndpoint(webhookURL: settings.webhookURL, http: settings.http, service: "Teams", context: context)
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
        func build(_ m: FittedMessage) -> JSON {
            var body: [JSON] = [[
                "type": "Container",
                "style": .string(style(n.kind)),
                "bleed": true,
                "items": [["type": "TextBlock", "text": .string(headline), "weight": "Bolder", "size": "Medium", "wrap": true]],
            ]]
            if !m.text.isEmpty { body.append(["type": "TextBlock", "text": .string(m.text), "wrap": true]) }
            var facts: [JSON] = m.fields.map { ["title": .string($0.name), "value": .string($0.value)] }
            if m.omitted > 0 {
                facts.append(["title": "…", "value": .string(HeraldNotification.omittedFieldsNote(m.omitted, locale: n.locale))])
            }
            if !facts.isEmpty { body.append(["type": "FactSet", "facts": .array(facts)]) }
            let card: JSON = [
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "fallbackText": .string(headline),
                "msteams": ["width": "Full"],
                "body": .array(body),
            ]
            return [
                "type": "message",
                "attachments": [["contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": .null, "content": card]],
            ]
        }
        let fitted = FittedMessage.fit(text: n.textWithoutFieldLines, fields: n.fields, nameLimit: factNameLimit,
                                       within: sizeLimit) { build($0).data.count }
        return build(fitted)
    }

    /// The container style that colours the title by kind.
    static func style(_ kind: HeraldNotification.Kind) -> String {
        switch kind {
        case .booked, .accepted: "good"
        case .rescheduled: "warning"
        case .cancelled, .declined: "attention"
        case .requested: "accent"
        case .other: "emphasis"
        }
    }
}
