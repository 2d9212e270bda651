import Crypto
import Foundation
import HeraldPlugin

/// `kind: line` — pushes a message to a LINE user, group or room with the Messaging API
/// (`POST /v2/bot/message/push`, `Authorization: Bearer <channel access token>`).
///
/// With `format: flex` (the default) the message is a Flex bubble: a header in the kind's
/// colour with the emoji and title in white, a body with the text and one row per field
/// (name in grey on the left, value on the right), and `altText` (title and text, cut at
/// 1500 characters) for notifications and old clients. With `format: text` it is one text
/// message: the title, the text and `name: value` lines, within 5000 characters. The text
/// leaves out lines that repeat a field; text and fields are cut to keep within LINE's limits.
///
/// Every request carries `X-Line-Retry-Key`, a UUID derived from the delivery key, so a retry
/// after a timeout cannot send the message twice; LINE answers such a retry 409, which counts
/// as delivered. (LINE Notify was discontinued and is not supported.)
public struct LINENotifier: NotifierPlugin {
    /// ```yaml
    /// token: ${LINE_CHANNEL_ACCESS_TOKEN}   # secret; or tokenFile:
    /// to: U4af4980629...                    # user, group or room ID
    /// format: flex                          # flex | text
    /// notificationDisabled: false           # true: deliver silently
    /// apiBaseURL: https://api.line.me
    /// ```
    public struct Settings: Decodable, Sendable {
        public enum Format: String, Decodable, Sendable { case flex, text }

        public var token: String
        public var to: String
        public var format: Format
        public var notificationDisabled: Bool
        public var apiBaseURL: String
        public var http: HTTPOptions

        public init(token: String, to: String, format: Format = .flex, notificationDisabled: Bool = false,
                    apiBaseURL: String = "https://api.line.me", http: HTTPOptions = HTTPOptions()) {
            self.token = token
            self.to = to
            self.format = format
            self.notificationDisabled = notificationDisabled
            self.apiBaseURL = apiBaseURL
            self.http = http
        }

        private enum CodingKeys: String, CodingKey { case token, to, format, notificationDisabled, apiBaseURL }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            token = try c.nonEmpty(.token)
            to = try c.nonEmpty(.to)
            if let text = try c.decodeIfPresent(String.self, forKey: .format) {
                guard let format = Format(rawValue: text) else { throw ConfigError(key: "format", "must be flex or text") }
                self.format = format
            } else {
                format = .flex
            }
            notificationDisabled = try c.decodeIfPresent(Bool.self, forKey: .notificationDisabled) ?? false
            apiBaseURL = try c.decodeIfPresent(String.self, forKey: .apiBaseURL) ?? "https://api.line.me"
            http = try HTTPOptions(from: decoder)
        }
    }

    public static let kind = "line"
    public static let usesHTML = false
    public static let secretKeys = ["token"]

    // LINE's message limits: https://developers.line.biz/en/reference/messaging-api/#message-objects
    /// A Flex message's `altText`: at most 1500 characters.
    static let altTextLimit = 1500
    /// A text message: at most 5000 characters.
    static let textMessageLimit = 5000
    /// "The maximum size of JSON data that defines a bubble is 30 KB"; keep a margin.
    /// https://developers.line.biz/en/reference/messaging-api/#bubble
    static let bubbleSizeLimit = 29_000
    /// No limit is documented for these; they keep one part from crowding out the rest.
    static let titleLimit = 256
    static let fieldNameLimit = 256

    let settings: Settings
    let endpoint: ServiceEndpoint

    public init(settings: Settings, context: PluginContext) throws {
        self.settings = settings
        endpoint = try ServiceEndpoint(apiBaseURL: settings.apiBaseURL, path: "/v2/bot/message/push", token: settings.token,
                                       http: settings.http, service: "LINE", context: context)
    }

    public func deliver(_ notification: HeraldNotification) async throws {
        let reply = try await endpoint.send(request(for: notification))
        if reply.status == 409 {
            endpoint.sender.logger.debug("LINE had already accepted this message (409 for a reused retry key)")
        }
    }

    /// The request ``deliver(_:)`` makes, shown without sending (the token as `<redacted>`).
    public func preview(_ notification: HeraldNotification) -> DeliveryPreview? {
        endpoint.preview(request(for: notification))
    }

    /// The push request; 409 means LINE already accepted a message with this retry key.
    func request(for notification: HeraldNotification) -> ServiceRequest {
        let headers = [("Authorization", "Bearer \(settings.token)"), ("X-Line-Retry-Key", Self.retryKey(notification.deliveryKey))]
        return ServiceRequest(body: .json(Self.payload(for: notification, settings: settings)), headers: headers, accepting: [409])
    }

    /// The push request body.
    static func payload(for n: HeraldNotification, settings: Settings) -> JSON {
        let message: JSON = switch settings.format {
        case .flex: ["type": "flex", "altText": .string(altText(n)), "contents": bubble(n)]
        case .text: ["type": "text", "text": .string(plainText(n))]
        }
        return .object([
            "to": .string(settings.to),
            "messages": [message],
            "notificationDisabled": settings.notificationDisabled ? true : nil,
        ])
    }

    static func altText(_ n: HeraldNotification) -> String {
        TextLimit.fit(n.text.isEmpty ? n.headline : n.headline + "\n" + n.text, altTextLimit)
    }

    /// The text message: headline, text and `name: value` lines, within 5000 characters.
    static func plainText(_ n: HeraldNotification) -> String {
        func message(_ m: FittedMessage) -> String {
            var parts = [TextLimit.fit(n.headline, titleLimit)]
            if !m.text.isEmpty { parts.append(m.text) }
            var lines = m.fields.map { "\($0.name): \($0.value)" }
            if m.omitted > 0 { lines.append(HeraldNotification.omittedFieldsNote(m.omitted, locale: n.locale)) }
            if !lines.isEmpty { parts.append(lines.joined(separator: "\n")) }
            return parts.joined(separator: "\n\n")
        }
        return message(FittedMessage.fit(text: n.textWithoutFieldLines, fields: n.fields, nameLimit: fieldNameLimit,
                                         within: textMessageLimit) { TextLimit.size(message($0)) })
    }

    /// The Flex bubble; text and fields give way if the bubble would be too large.
    static func bubble(_ n: HeraldNotification) -> JSON {
        // Flex text components must not be empty.
        func text(_ s: String) -> String { s.isEmpty ? "-" : s }
        func row(_ name: String, _ value: String) -> JSON {
            ["type": "box", "layout": "baseline", "spacing": "sm", "contents": [
                ["type": "text", "text": .string(text(name)), "size": "sm", "color": "#8C8C8C", "flex": 2, "wrap": true],
                ["type": "text", "text": .string(text(value)), "size": "sm", "color": "#333333", "flex": 5, "wrap": true],
            ]]
        }
        let headline = TextLimit.fit(n.headline, titleLimit)
        func build(_ m: FittedMessage) -> JSON {
            var rows = m.fields.map { row($0.name, $0.value) }
            if m.omitted > 0 { rows.append(row("…", HeraldNotification.omittedFieldsNote(m.omitted, locale: n.locale))) }
            var contents: [JSON] = []
            if !m.text.isEmpty { contents.append(["type": "text", "text": .string(m.text), "size": "sm", "wrap": true]) }
            if !rows.isEmpty {
                if !contents.isEmpty { contents.append(["type": "separator", "margin": "md"]) }
                contents.append(["type": "box", "layout": "vertical", "spacing": "sm", "margin": "md", "contents": .array(rows)])
            }
            return .object([
                "type": "bubble",
                "header": ["type": "box", "layout": "vertical", "backgroundColor": .string(n.kind.hexColor), "contents": [
                    ["type": "text", "text": .string(text(headline)), "weight": "bold", "color": "#FFFFFF", "wrap": true],
                ]],
                "body": contents.isEmpty ? nil : ["type": "box", "layout": "vertical", "contents": .array(contents)],
            ])
        }
        return build(FittedMessage.fit(text: n.textWithoutFieldLines, fields: n.fields, nameLimit: fieldNameLimit,
                                       within: bubbleSizeLimit) { build($0).data.count })
    }

    /// A UUID (version-4 layout) made from SHA-256 of the delivery key: the same for every
    /// attempt at one event × notifier, different for everything else.
    static func retryKey(_ deliveryKey: String) -> String {
        var bytes = Array(SHA256.hash(data: Data("herald-line-retry-key:\(deliveryKey)".utf8)).prefix(16))
        bytes[6] = (bytes[6] & 0x0F) | 0x40
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = bytes.map { String(format: "%02x", $0) }.joined()
        let h = Array(hex)
        return String(h[0..<8]) + "-" + String(h[8..<12]) + "-" + String(h[12..<16]) + "-" + String(h[16..<20]) + "-" + String(h[20..<32])
    }
}
