import Foundation
import HeraldPlugin

/// `kind: discord` — executes a Discord webhook with one embed.
///
/// The embed has the emoji and title as `title`, the text as `description`, the fields as
/// embed fields (`inline` for short ones), the kind's colour, the event time as `timestamp`
/// and the event name as footer. Markdown characters in the notification are escaped so they
/// show literally, and `allowed_mentions` is empty so nothing in an event can ping anyone.
/// The URL gets `?wait=true`, so Discord answers only once the message exists.
public struct DiscordNotifier: NotifierPlugin {
    /// ```yaml
    /// webhookURL: ${DISCORD_WEBHOOK_URL}   # secret
    /// username: Herald                     # optional: override the webhook's name
    /// avatarURL: https://…/herald.png      # optional: override its avatar
    /// threadID: "1234567890"               # optional: post into a thread of a forum/channel
    /// ```
    public struct Settings: Decodable, Sendable {
        public var webhookURL: String
        public var username: String?
        public var avatarURL: String?
        public var threadID: String?
        public var http: HTTPOptions

        public init(webhookURL: String, username: String? = nil, avatarURL: String? = nil, threadID: String? = nil,
                    http: HTTPOptions = HTTPOptions()) {
            self.webhookURL = webhookURL
            self.username = username
            self.avatarURL = avatarURL
            self.threadID = threadID
            self.http = http
        }

        private enum CodingKeys: String, CodingKey { case webhookURL, username, avatarURL, threadID }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            webhookURL = try c.nonEmpty(.webhookURL)
            username = try c.decodeIfPresent(String.self, forKey: .username)
            avatarURL = try c.decodeIfPresent(String.self, forKey: .avatarURL)
            threadID = c.contains(.threadID) ? try c.identifier(.threadID) : nil
            http = try HTTPOptions(from: decoder)
        }
    }

    public static let kind = "discord"
    public static let usesHTML = false
    public static let secretKeys = ["webhookURL"]

    // Discord's embed limits, in characters (counted here in UTF-16 units, never fewer):
    // https://discord.com/developers/docs/resources/message#embed-object-embed-limits
    static let titleLimit = 256
    static let descriptionLimit = 4096
    static let maxFields = 25
    static let fieldNameLimit = 256
    static let fieldValueLimit = 1024
    static let footerLimit = 2048
    /// Title, description, field names and values, and footer together.
    static let totalLimit = 6000
    /// A webhook's `username` override.
    static let usernameLimit = 80

    let settings: Settings
    let endpoint: ServiceEndpoint

    public init(settings: Settings, context: PluginContext) throws {
        if let avatar = settings.avatarURL { _ = try Setting.url(avatar, key: "avatarURL") }
        self.settings = settings
        endpoint = try ServiceEndpoint(webhookURL: settings.webhookURL, http: settings.http, service: "Discord", context: context) { base in
            guard var components = URLComponents(url: base, resolvingAgainstBaseURL: false) else {
                throw ConfigError(key: "webhookURL", "is not a valid URL")
            }
            var query = (components.queryItems ?? []).filter { $0.name != "wait" && $0.name != "thread_id" }
            query.append(URLQueryItem(name: "wait", value: "true"))
            if let thread = settings.threadID { query.append(URLQueryItem(name: "thread_id", value: thread)) }
            components.queryItems = query
            guard let url = components.url else { throw ConfigError(key: "webhookURL", "is not a valid URL") }
            return url
        }
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
        .object([
            "username": settings.username.map { .string(TextLimit.fit($0, usernameLimit)) },
            "avatar_url": settings.avatarURL.map(JSON.string),
            "embeds": [embed(for: n)],
            "allowed_mentions": ["parse": []],
        ])
    }

    /// One embed within Discord's limits: each part is cut to its own limit, then, if the
    /// total is still over 6000, trailing fields give way and the longest parts are cut.
    static func embed(for n: HeraldNotification) -> JSON {
        let title = TextLimit.fit(n.headline, titleLimit, escaping: .markdown)
        func footer(_ omitted: Int) -> String {
            let note = omitted > 0 ? " · " + HeraldNotification.omittedFieldsNote(omitted, locale: n.locale) : ""
            return TextLimit.fit(n.event.name + note, footerLimit)
        }
        let fitted = FittedMessage.fit(
            text: n.textWithoutFieldLines, fields: n.fields, escaping: .markdown, textLimit: descriptionLimit,
            maxFields: maxFields, nameLimit: fieldNameLimit, valueLimit: fieldValueLimit, within: totalLimit
        ) { m in
            // Empty names and values are sent as one zero-width space each.
            m.fields.reduce(TextLimit.size(title) + TextLimit.size(m.text) + TextLimit.size(footer(m.omitted))) {
                $0 + TextLimit.size(nonEmpty($1.name)) + TextLimit.size(nonEmpty($1.value))
            }
        }
        return .object([
            "title": .string(title),
            "description": fitted.text.isEmpty ? nil : .string(fitted.text),
            "color": .int(Int(n.kind.color)),
            "timestamp": .string(ISO8601.format(n.eventDate)),
            "fields": fitted.fields.isEmpty ? nil : .array(fitted.fields.map {
                ["name": .string(nonEmpty($0.name)), "value": .string(nonEmpty($0.value)), "inline": .bool($0.short)]
            }),
            "footer": ["text": .string(footer(fitted.omitted))],
        ])
    }

    /// Discord refuses empty field names and values; a zero-width space stands in.
    static func nonEmpty(_ text: String) -> String { text.isEmpty ? "\u{200B}" : text }
}
