import Foundation
import HeraldPlugin

/// `kind: slack` — posts to a Slack incoming webhook as a Block Kit message.
///
/// The message is a header (emoji and title), a section with the text (without the lines
/// that repeat a field), sections of up to ten two-column fields, and a context line with the
/// event name and id, plus a top-level `text` that Slack shows in notifications. Slack's limits are kept by cutting text with "…":
/// 150 characters in the header, 3000 in any text, 2000 in a field, 50 blocks.
public struct SlackNotifier: NotifierPlugin {
    public typealias Settings = WebhookURLSettings
    public static let kind = "slack"
    public static let usesHTML = false
    public static let secretKeys = ["webhookURL"]

    // Block Kit's limits, in characters (counted here in UTF-16 units, never fewer):
    // https://docs.slack.dev/reference/block-kit/blocks (50 blocks in a message),
    // https://docs.slack.dev/reference/block-kit/blocks/header-block (150),
    // https://docs.slack.dev/reference/block-kit/blocks/section-block (text 3000; up to 10
    // fields of 2000 each), and a context element's text object (3000).
    static let maxBlocks = 50
    static let headerLimit = 150
    static let textLimit = 3000
    static let fieldLimit = 2000
    static let fieldsPerSection = 10
    /// No limit is documented for a field's name; this keeps it from crowding out the value.
    static let fieldNameLimit = 200

    let endpoint: ServiceEndpoint

    public init(settings: Settings, context: PluginContext) throws {
        endpoint = try ServiceEndpoint(webhookURL: settings.webhookURL, http: settings.http, service: "Slack", context: context)
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

    /// The Block Kit message for a notification.
    static func payload(for n: HeraldNotification) -> JSON {
        var blocks: [JSON] = [[
            "type": "header",
            "text": ["type": "plain_text", "text": .string(TextLimit.fit(n.headline, headerLimit)), "emoji": true],
        ]]
        let text = n.textWithoutFieldLines
        if !text.isEmpty {
            blocks.append(["type": "section", "text": mrkdwn(TextLimit.fit(text, textLimit, escaping: .entities))])
        }
        // Header, text and context take up to three blocks; the rest can hold fields.
        let fieldSections = maxBlocks - blocks.count - 1
        let shown = Array(n.fields.prefix(fieldSections * fieldsPerSection))
        for start in stride(from: 0, to: shown.count, by: fieldsPerSection) {
            let chunk = shown[start..<min(start + fieldsPerSection, shown.count)]
            blocks.append(["type": "section", "fields": .array(chunk.map { mrkdwn(field($0)) })])
        }
        var context = "\(n.event.name) · \(n.event.id)"
        if shown.count < n.fields.count {
            context += " · " + HeraldNotification.omittedFieldsNote(n.fields.count - shown.count, locale: n.locale)
        }
        blocks.append(["type": "context", "elements": [mrkdwn(TextLimit.fit(context, textLimit, escaping: .entities))]])

        let fallback = n.text.isEmpty ? n.headline : n.headline + "\n" + n.text
        return ["text": .string(TextLimit.fit(fallback, textLimit, escaping: .entities)), "blocks": .array(blocks)]
    }

    /// `*name*` over the value, escaped and cut to a field's limit (the value gives way first).
    static func field(_ f: HeraldNotification.Field) -> String {
        let name = "*" + TextLimit.fit(f.name, fieldNameLimit, escaping: .entities) + "*\n"
        return name + TextLimit.fit(f.value, fieldLimit - TextLimit.size(name), escaping: .entities)
    }

    static func mrkdwn(_ text: String) -> JSON { ["type": "mrkdwn", "text": .string(text)] }
}
