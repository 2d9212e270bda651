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

    /// Teams refuses messages over about 28 KB; stay below with room for the envelope.
    static let sizeLimit = 27_000

    let endpoint: ServiceEndpoint

    public init(settings: Settings, context: PluginContext) throws {
        endpoint = try ServiceEndpoint(webhookURL: settings.webhookURL, http: settings.http, service: "Teams", context: context)
    }

    public func deliver(_ notification: HeraldNotification) async throws {
        try await endpoint.send(Self.payload(for: notification))
    }

    /// The webhook body for a notification.
    static func payload(for n: HeraldNotification) -> JSON {
        func build(text: String) -> JSON {
            var body: [JSON] = [[
                "type": "Container",
                "style": .string(style(n.kind)),
                "bleed": true,
                "items": [["type": "TextBlock", "text": .string(n.headline), "weight": "Bolder", "size": "Medium", "wrap": true]],
            ]]
            if !text.isEmpty { body.append(["type": "TextBlock", "text": .string(text), "wrap": true]) }
            if !n.fields.isEmpty {
                body.append(["type": "FactSet", "facts": .array(n.fields.map { ["title": .string($0.name), "value": .string($0.value)] })])
            }
            let card: JSON = [
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "fallbackText": .string(n.headline),
                "msteams": ["width": "Full"],
                "body": .array(body),
            ]
            return [
                "type": "message",
                "attachments": [["contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": .null, "content": card]],
            ]
        }
        return SizeLimit.fit(n.text, within: sizeLimit, build)
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

/// Fitting a whole request body under a byte limit by cutting its longest free text.
enum SizeLimit {
    /// `build(text)`, with `text` escaped and cut (ending in "…") as far as needed for the
    /// encoded JSON to stay within `limit` bytes.
    static func fit(_ text: String, within limit: Int, escaping: Escaping = .none, _ build: (String) -> JSON) -> JSON {
        let full = TextLimit.fit(text, Int.max, escaping: escaping)
        var result = build(full)
        let size = result.data.count
        guard size > limit else { return result }
        // Give up as many bytes of the text, as written in the JSON, as the body is over; a
        // builder that expands the text further (e.g. newlines to <br>) takes a few rounds.
        var budget = TextLimit.size(full, unit: .json) - (size - limit)
        repeat {
            result = build(TextLimit.fit(text, max(0, budget), escaping: escaping, unit: .json))
            budget -= 64
        } while result.data.count > limit && budget > -64
        return result
    }
}
