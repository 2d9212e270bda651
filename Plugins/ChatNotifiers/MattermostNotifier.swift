import Foundation
import HeraldPlugin

/// `kind: mattermost` — posts to a Mattermost incoming webhook (self-hosted or cloud) with a
/// Slack-compatible message attachment.
///
/// The attachment has the kind's colour as its side bar, the emoji and title as `title`, the
/// text (without the lines that repeat a field) as `text`, the fields as attachment fields
/// (`short` ones side by side), the event name as `footer`, and title plus text as `fallback`
/// for notifications. Markdown characters in the text and field values are escaped so they show
/// literally; text and fields together are cut to 16,383 characters. The post may override
/// the webhook's channel, username and icon where the server allows it.
public struct MattermostNotifier: NotifierPlugin {
    /// ```yaml
    /// webhookURL: ${MATTERMOST_WEBHOOK_URL}   # secret; https://chat.example.com/hooks/xxx
    /// channel: town-square                    # optional overrides (need the server's
    /// username: Herald                        #   "enable overriding" settings for
    /// iconURL: https://…/herald.png           #   username and icon)
    /// iconEmoji: calendar
    /// ```
    public struct Settings: Decodable, Sendable {
        public var webhookURL: String
        public var channel: String?
        public var username: String?
        public var iconURL: String?
        public var iconEmoji: String?
        public var http: HTTPOptions

        public init(webhookURL: String, channel: String? = nil, username: String? = nil, iconURL: String? = nil,
                    iconEmoji: String? = nil, http: HTTPOptions = HTTPOptions()) {
            self.webhookURL = webhookURL
            self.channel = channel
            self.username = username
            self.iconURL = iconURL
            self.iconEmoji = iconEmoji
            self.http = http
        }

        private enum CodingKeys: String, CodingKey { case webhookURL, channel, username, iconURL, iconEmoji }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            webhookURL = try c.nonEmpty(.webhookURL)
            channel = try c.decodeIfPresent(String.self, forKey: .channel)
            username = try c.decodeIfPresent(String.self, forKey: .username)
            iconURL = try c.decodeIfPresent(String.self, forKey: .iconURL)
            iconEmoji = try c.decodeIfPresent(String.self, forKey: .iconEmoji)
            http = try HTTPOptions(from: decoder)
        }
    }

    public static let kind = "mattermost"
    public static let usesHTML = false
    public static let secretKeys = ["webhookURL"]

    /// A post's message holds at most 16,383 characters (Mattermost 5.0 and later,
    /// https://developers.mattermost.com/integrate/webhooks/incoming/); the attachment's text
    /// and fields together are kept within it too. (An attachment counts against the post's
    /// props, which the server caps at 800,000 characters: `PostPropsMaxRunes` in
    /// mattermost/server/public/model/post.go.)
    static let textLimit = 16_383
    /// No limit is documented for these; they keep one part from crowding out the rest.
    static let titleLimit = 256
    static let fieldTitleLimit = 256

    let settings: Settings
    let endpoint: ServiceEndpoint

    public init(settings: Settings, context: PluginContext) throws {
        if let icon = settings.iconURL { _ = try Setting.url(icon, key: "iconURL") }
        self.settings = settings
        endpoint = try ServiceEndpoint(webhookURL: settings.webhookURL, http: settings.http, service: "Mattermost", context: context)
    }

    public func deliver(_ notification: HeraldNotification) async throws {
        try await endpoint.send(request(for: notification))
    }

    /// The request ``deliver(_:)`` makes, shown without sending.
    public func preview(_ notification: HeraldNotification) -> DeliveryPreview? {
        endpoint.preview(request(for: notification))
    }

    func request(for notification: HeraldNotification) -> ServiceRequest {
        ServiceRequest(body: .json(Self.payload(for: notification, settings: settings)))
    }

    /// The webhook body for a notification.
    static func payload(for n: HeraldNotification, settings: Settings) -> JSON {
        let headline = TextLimit.fit(n.headline, titleLimit)
        let fitted = FittedMessage.fit(text: n.textWithoutFieldLines, fields: n.fields, escaping: .markdown,
                                       nameEscaping: Escaping.none, nameLimit: fieldTitleLimit, within: textLimit) { m in
            m.fields.reduce(TextLimit.size(m.text)) { $0 + TextLimit.size($1.name) + TextLimit.size($1.value) }
        }
        var fields: [JSON] = fitted.fields.map { ["title": .string($0.name), "value": .string($0.value), "short": .bool($0.short)] }
        if fitted.omitted > 0 {
            fields.append(["title": "…", "value": .string(HeraldNotification.omittedFieldsNote(fitted.omitted, locale: n.locale)),
                           "short": false])
        }
        let attachment = JSON.object([
            "fallback": .string(TextLimit.fit(n.text.isEmpty ? headline : headline + "\n" + n.text, textLimit)),
            "color": .string(n.kind.hexColor),
            "title": .string(headline),
            "text": fitted.text.isEmpty ? nil : .string(fitted.text),
            "fields": fields.isEmpty ? nil : .array(fields),
            "footer": .string(TextLimit.fit(n.event.name, titleLimit)),
        ])
        return .object([
            "channel": settings.channel.map(JSON.string),
            "username": settings.username.map(JSON.string),
            "icon_url": settings.iconURL.map(JSON.string),
            "icon_emoji": settings.iconEmoji.map(JSON.string),
            "attachments": [attachment],
        ])
    }
}
