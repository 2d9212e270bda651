import Foundation
import HeraldPlugin

/// `kind: chatwork` — posts a message to a Chatwork room with API v2
/// (`POST /v2/rooms/{room_id}/messages`, `X-ChatWorkToken`, form-encoded `body`).
///
/// The message is one `[info]` box: `[title]` holds the emoji and title, then the text
/// (without the lines that repeat a field), then, after a `[hr]`, one `name: value` line per
/// field; text and fields are cut to keep the message within 40,000 bytes. Chatwork has no
/// way to escape its tags, so tags inside the notification (`[To:…]`, `[toall]`, `[info]`, …)
/// are defused with an invisible zero-width space after the `[`: they show as written but
/// mention no one and cannot break the box.
public struct ChatworkNotifier: NotifierPlugin {
    /// ```yaml
    /// token: ${CHATWORK_API_TOKEN}          # secret; or tokenFile:
    /// roomID: 123456789                     # the number after #!rid in the room's URL
    /// selfUnread: false                     # true: the message stays unread for the token's owner
    /// apiBaseURL: https://api.chatwork.com/v2
    /// ```
    public struct Settings: Decodable, Sendable {
        public var token: String
        public var roomID: String
        public var selfUnread: Bool
        public var apiBaseURL: String
        public var http: HTTPOptions

        public init(token: String, roomID: String, selfUnread: Bool = false,
                    apiBaseURL: String = "https://api.chatwork.com/v2", http: HTTPOptions = HTTPOptions()) {
            self.token = token
            self.roomID = roomID
            self.selfUnread = selfUnread
            self.apiBaseURL = apiBaseURL
            self.http = http
        }

        private enum CodingKeys: String, CodingKey { case token, roomID, selfUnread, apiBaseURL }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            token = try c.nonEmpty(.token)
            roomID = try c.identifier(.roomID)
            selfUnread = try c.decodeIfPresent(Bool.self, forKey: .selfUnread) ?? false
            apiBaseURL = try c.decodeIfPresent(String.self, forKey: .apiBaseURL) ?? "https://api.chatwork.com/v2"
            http = try HTTPOptions(from: decoder)
        }
    }

    public static let kind = "chatwork"
    public static let usesHTML = false
    public static let secretKeys = ["token"]

    let settings: Settings
    let endpoint: ServiceEndpoint

    public init(settings: Settings, context: PluginContext) throws {
        guard settings.roomID.allSatisfy(\.isNumber), !settings.roomID.isEmpty else {
            throw ConfigError(key: "roomID", "must be the room's number, e.g. 123456789")
        }
        self.settings = settings
        endpoint = try ServiceEndpoint(apiBaseURL: settings.apiBaseURL, path: "/rooms/\(settings.roomID)/messages",
                                       token: settings.token, http: settings.http, service: "Chatwork", context: context)
    }

    public func deliver(_ notification: HeraldNotification) async throws {
        try await endpoint.send(request(for: notification))
    }

    /// The request ``deliver(_:)`` makes, shown without sending (the token as `<redacted>`).
    public func preview(_ notification: HeraldNotification) -> DeliveryPreview? {
        endpoint.preview(request(for: notification))
    }

    func request(for notification: HeraldNotification) -> ServiceRequest {
        let body = HTTPSender.Body.form(["body": Self.message(for: notification), "self_unread": settings.selfUnread ? "1" : "0"])
        return ServiceRequest(body: body, headers: [("X-ChatWorkToken", settings.token), ("Accept", "application/json")])
    }

    /// Chatwork documents no limit for a message
    /// (https://developer.chatwork.com/reference/post-rooms-room_id-messages); a
    /// 40,000-character body was measured to pass and an 80,000-character one to be refused
    /// with 400 (https://qiita.com/39taro/items/a012de576c43effcd280), so the body is kept
    /// within 40,000 UTF-8 bytes, which holds whether Chatwork counts characters or bytes.
    static let messageLimit = 40_000
    /// No limit is documented for these; they keep one part from crowding out the rest.
    static let titleLimit = 256
    static let fieldNameLimit = 256

    /// The message in Chatwork's markup.
    static func message(for n: HeraldNotification) -> String {
        let title = defused(TextLimit.fit(n.headline, titleLimit))
        func message(_ m: FittedMessage) -> String {
            var inner = defused(m.text)
            var lines = m.fields.map { defused($0.name) + ": " + defused($0.value) }
            if m.omitted > 0 { lines.append(HeraldNotification.omittedFieldsNote(m.omitted, locale: n.locale)) }
            if !lines.isEmpty {
                if !inner.isEmpty { inner += "\n[hr]" }
                inner += lines.joined(separator: "\n")
            }
            return "[info][title]\(title)[/title]\(inner)[/info]"
        }
        return message(FittedMessage.fit(text: n.textWithoutFieldLines, fields: n.fields, nameLimit: fieldNameLimit,
                                         within: messageLimit) { message($0).utf8.count })
    }

    /// Chatwork's tag names; `[` before one of them gets a zero-width space.
    static let tags = ["to:", "toall", "rp ", "rp]", "info", "/info", "title", "/title", "hr", "code", "/code",
                       "qt", "/qt", "piconname:", "picon:", "preview", "download", "task", "/task"]

    static func defused(_ text: String) -> String {
        guard text.contains("[") else { return text }
        var out = ""
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "[") {
            out += rest[...open]
            rest = rest[rest.index(after: open)...]
            let head = rest.prefix(10).lowercased()
            if tags.contains(where: { head.hasPrefix($0) }) { out += "\u{200B}" }
        }
        return out + rest
    }
}
