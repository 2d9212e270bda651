import Foundation
import HeraldPlugin

/// `kind: telegram` — sends a message with the Bot API (`POST /bot<token>/sendMessage`).
///
/// The message uses `parse_mode: HTML`: the emoji and title in `<b>`, a blank line, the text,
/// a blank line, and one `<b>name</b>: value` line per field. Only `&`, `<` and `>` are
/// escaped, as Telegram's HTML mode requires. Telegram counts its 4096-character limit after
/// the markup is parsed, so the limit is applied to the visible text: each value is cut at
/// 1024, then trailing fields give way and the longest parts are cut with "…". The text
/// leaves out lines that repeat a field. Link previews are off.
public struct TelegramNotifier: NotifierPlugin {
    /// ```yaml
    /// token: ${TELEGRAM_BOT_TOKEN}   # secret; or tokenFile:
    /// chatID: -1001234567890         # or "@channelusername"
    /// messageThreadID: 42            # optional: a forum topic
    /// disableNotification: false     # true: deliver silently
    /// apiBaseURL: https://api.telegram.org
    /// ```
    public struct Settings: Decodable, Sendable {
        public var token: String
        public var chatID: String
        public var messageThreadID: Int?
        public var disableNotification: Bool
        public var apiBaseURL: String
        public var http: HTTPOptions

        public init(token: String, chatID: String, messageThreadID: Int? = nil, disableNotification: Bool = false,
                    apiBaseURL: String = "https://api.telegram.org", http: HTTPOptions = HTTPOptions()) {
            self.token = token
            self.chatID = chatID
            self.messageThreadID = messageThreadID
            self.disableNotification = disableNotification
            self.apiBaseURL = apiBaseURL
            self.http = http
        }

        private enum CodingKeys: String, CodingKey { case token, chatID, messageThreadID, disableNotification, apiBaseURL }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            token = try c.nonEmpty(.token)
            chatID = try c.identifier(.chatID)
            messageThreadID = try c.decodeIfPresent(Int.self, forKey: .messageThreadID)
            disableNotification = try c.decodeIfPresent(Bool.self, forKey: .disableNotification) ?? false
            apiBaseURL = try c.decodeIfPresent(String.self, forKey: .apiBaseURL) ?? "https://api.telegram.org"
            http = try HTTPOptions(from: decoder)
        }
    }

    public static let kind = "telegram"
    public static let usesHTML = false
    public static let secretKeys = ["token"]

    /// sendMessage `text`: "1-4096 characters after entities parsing".
    /// https://core.telegram.org/bots/api#sendmessage
    static let messageLimit = 4096
    /// No limit is documented for these; they keep one part from crowding out the rest.
    static let fieldValueLimit = 1024
    static let fieldNameLimit = 256
    static let titleLimit = 512

    let settings: Settings
    let endpoint: ServiceEndpoint

    public init(settings: Settings, context: PluginContext) throws {
        guard !settings.token.contains("/"), !settings.token.contains(where: \.isWhitespace) else {
            throw ConfigError(key: "token", "is not a bot token (expected 123456:ABC…)")
        }
        self.settings = settings
        endpoint = try ServiceEndpoint(apiBaseURL: settings.apiBaseURL, path: "/bot\(settings.token)/sendMessage",
                                       token: settings.token, http: settings.http, service: "Telegram", context: context)
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

    /// The sendMessage request body.
    static func payload(for n: HeraldNotification, settings: Settings) -> JSON {
        .object([
            "chat_id": Int64(settings.chatID).map { .int(Int($0)) } ?? .string(settings.chatID),
            "message_thread_id": settings.messageThreadID.map { .int($0) },
            "text": .string(html(n)),
            "parse_mode": "HTML",
            "link_preview_options": ["is_disabled": true],
            "disable_notification": settings.disableNotification ? true : nil,
        ])
    }

    /// The message in Telegram HTML, at most 4096 visible characters.
    static func html(_ n: HeraldNotification) -> String {
        let title = TextLimit.fit(n.headline, titleLimit)
        /// The message with `bold` around the title and each field name and `escaped` applied
        /// to all text: as sent, or (both doing nothing) as Telegram shows and counts it.
        func message(_ m: FittedMessage, bold: (String) -> String, escaped: (String) -> String) -> String {
            var lines = m.fields.map { bold(escaped($0.name)) + ": " + escaped($0.value) }
            if m.omitted > 0 { lines.append(escaped(HeraldNotification.omittedFieldsNote(m.omitted, locale: n.locale))) }
            return ([bold(escaped(title)), escaped(m.text), lines.joined(separator: "\n")].filter { !$0.isEmpty })
                .joined(separator: "\n\n")
        }
        let fitted = FittedMessage.fit(text: n.textWithoutFieldLines, fields: n.fields, nameLimit: fieldNameLimit,
                                       valueLimit: fieldValueLimit, within: messageLimit) {
            TextLimit.size(message($0, bold: { $0 }, escaped: { $0 }))
        }
        return message(fitted, bold: { "<b>\($0)</b>" }, escaped: Escaping.entities.escape)
    }
}
