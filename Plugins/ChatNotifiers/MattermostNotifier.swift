import Foundation
import HeraldPlugin

/// `kind: mattermost` — posts to a Mattermost incoming webhook (self-hosted or cloud) with a
/// Slack-compatible message attachment.
///
/// The attachment has the kind's colour as its side bar, the emoji and title as `title`, the
/// text as `text`, the fields as attachment fields (`short` ones side by side), the event
/// name as `footer`, and title plus text as `fallback` for notifications. Markdown characters
/// in the text and field values are escaped so they show literally. The post may override the
/// webhook's channel, username and icon where the server allows it.
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

    /// Mattermost's default maximum post length, applied to the attachment text.
    static let textLimit = 16_383

    let settings: Settings
    let endpoint: ServiceEndpoint

    public init(settings: Settings, context: PluginContext) throws {
        if let icon = settings.iconURL { _ = try Setting.url(icon, key: "iconURL") }
        self.settings = settings
        endpoint = try ServiceEndpoint(webhookURL: settings.webhookURL, http: settings.http, service: "Mattermost", context: context)
    }

    public func deliver(_ notification: HeraldNotification) async throws {
        try await endpoint.send(Self.payload(for: notification, settings: settings))
    }

    /// The webhook body for a notification.
    static func payload(for n: HeraldNotification, settings: Settings) -> JSON {
        let text = TextLimit.fit(n.text, textLimit, escaping: .markdown)
        let attachment = JSON.object([
            "fallback": .string(TextLimit.fit(n.text.isEmpty ? n.headline : n.headline + "\n" + n.text, textLimit)),
            "color": .string(n.kind.hexColor),
            "title": .string(n.headline),
            "text": text.isEmpty ? nil : .string(text),
            "fields": n.fields.isEmpty ? nil : .array(n.fields.map {
                ["title": .string($0.name), "value": .string(TextLimit.fit($0.value, textLimit, escaping: .markdown)), "short": .bool($0.short)]
            }),
            "footer": .string(n.event.name),
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
