import Crypto
import Foundation
import HeraldPlugin
import Mustache

/// `kind: webhook` — POSTs the event to any URL, optionally signed with Standard Webhooks.
///
/// By default the body is the event's raw body exactly as Herald received it. With
/// `template:` it is a Mustache template rendered with the event and the notification; for a
/// JSON content type, `{{…}}` escapes values for use inside JSON strings and the result must
/// be valid JSON; for `text/html` it escapes HTML, and for other types it does not escape.
/// Every request carries `webhook-id` (the delivery key without `.`, the same on every
/// retry, so receivers can drop duplicates) and `webhook-timestamp`; with `secret:` it also
/// carries `webhook-signature` (`v1,<base64 HMAC-SHA256>` over `id.timestamp.body`).
public struct WebhookNotifier: NotifierPlugin {
    /// ```yaml
    /// url: ${RECEIVER_URL}            # secret (URLs often hold tokens)
    /// secret: ${RECEIVER_SECRET}      # optional, whsec_<base64>: sign with Standard Webhooks
    /// headers:                        # optional extra headers
    ///   X-Api-Key: ${RECEIVER_KEY}
    /// contentType: application/json  # default
    /// template: |                     # optional Mustache body; default: the raw event body
    ///   {"title": "{{notification.title}}", "booking": {{{json.payload}}}}
    /// ```
    public struct Settings: Decodable, Sendable {
        public var url: String
        public var secret: String?
        public var headers: [String: String]
        public var contentType: String
        public var template: String?
        public var http: HTTPOptions

        public init(url: String, secret: String? = nil, headers: [String: String] = [:],
                    contentType: String = "application/json", template: String? = nil, http: HTTPOptions = HTTPOptions()) {
            self.url = url
            self.secret = secret
            self.headers = headers
            self.contentType = contentType
            self.template = template
            self.http = http
        }

        private enum CodingKeys: String, CodingKey { case url, secret, headers, contentType, template }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            url = try c.nonEmpty(.url)
            secret = try c.decodeIfPresent(String.self, forKey: .secret)
            headers = try c.decodeIfPresent([String: String].self, forKey: .headers) ?? [:]
            contentType = try c.decodeIfPresent(String.self, forKey: .contentType) ?? "application/json"
            template = try c.decodeIfPresent(String.self, forKey: .template)
            http = try HTTPOptions(from: decoder)
        }
    }

    public static let kind = "webhook"
    public static let usesHTML = false
    public static let secretKeys = ["url", "secret"]

    let url: URL
    let settings: Settings
    let template: MustacheTemplate?
    /// The Standard Webhooks signing key, when `secret:` is set.
    let signingKey: SymmetricKey?
    let sender: HTTPSender

    var isJSON: Bool { settings.contentType.lowercased().contains("json") }

    public init(settings: Settings, context: PluginContext) throws {
        url = try Setting.url(settings.url, key: "url")
        for (name, value) in settings.headers {
            let reserved = ["content-type", "webhook-id", "webhook-timestamp", "webhook-signature", "host", "content-length"]
            guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_".contains($0)) }) else {
                throw ConfigError(key: "headers", "\"\(name)\" is not a valid header name")
            }
            guard !reserved.contains(name.lowercased()) else {
                throw ConfigError(key: "headers.\(name)", "is set by Herald; use contentType or secret instead")
            }
            guard !value.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" }) else {
                throw ConfigError(key: "headers.\(name)", "must be one line")
            }
        }
        if let secret = settings.secret {
            // The same rule as endpoints that verify: base64 after an optional whsec_.
            do throws(SecretFormatError) {
                signingKey = SymmetricKey(data: try StandardWebhooksKey.decode(Array(secret.utf8)))
            } catch {
                throw ConfigError(key: "secret", error.message)
            }
        } else {
            signingKey = nil
        }
        self.settings = settings
        if let source = settings.template {
            let pragma = Self.escapingPragma(contentType: settings.contentType)
            JSONStringContent.register()
            do { template = try MustacheTemplate(string: pragma + source) } catch {
                throw ConfigError(key: "template", "is not a valid Mustache template: \(error)")
            }
        } else {
            template = nil
        }
        let secrets = [settings.url, settings.secret].compactMap { $0 } + settings.headers.values.filter { $0.count >= 8 }
        sender = HTTPSender(service: "Webhook", options: settings.http, secrets: secrets, context: context)
    }

    public func deliver(_ notification: HeraldNotification) async throws {
        let request = try request(for: notification)
        try await sender.send(request.body, to: url, headers: request.headers)
    }

    /// The request ``deliver(_:)`` makes now, shown without sending; extra headers that hold
    /// secrets are shown as `<redacted>`.
    public func preview(_ notification: HeraldNotification) throws -> DeliveryPreview? {
        let request = try request(for: notification)
        return sender.preview(request.body, to: url, headers: request.headers)
    }

    /// The body and headers, signed at the current time.
    func request(for notification: HeraldNotification) throws(DeliveryError) -> ServiceRequest {
        let body = try render(notification)
        var headers = settings.headers.map { ($0.key, $0.value) }.sorted { $0.0 < $1.0 }
        let timestamp = Int64(Date().timeIntervalSince1970)
        let id = Self.webhookID(notification.deliveryKey)
        headers += [("webhook-id", id), ("webhook-timestamp", String(timestamp))]
        if let signingKey {
            headers.append(("webhook-signature", Self.signature(body: body, timestamp: timestamp, id: id, key: signingKey)))
        }
        return ServiceRequest(body: HTTPSender.Body(data: body, contentType: settings.contentType), headers: headers)
    }

    /// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
    static func signature(body: Data, timestamp: Int64, id: String, key: SymmetricKey) -> String {
        var mac = HMAC<SHA256>(key: key)
        mac.update(data: Data("\(id).\(timestamp).".utf8))
        mac.update(data: body)
        return "v1," + Data(mac.finalize()).base64EncodedString()
    }

    /// The `webhook-id` for a delivery: its key with `.` (which the signed content
    /// `id.timestamp.body` uses as separator, and the spec forbids in ids) written as `_`.
    /// The same on every retry, so receivers can drop duplicates.
    static func webhookID(_ deliveryKey: String) -> String {
        String(deliveryKey.map { $0 == "." ? "_" : $0 })
    }

    /// How `{{…}}` escapes values: for JSON bodies, as inside a JSON string; for HTML, as
    /// HTML (Mustache's default); for anything else, not at all.
    static func escapingPragma(contentType: String) -> String {
        let type = contentType.lowercased()
        if type.contains("json") { return "{{% CONTENT_TYPE: \(JSONStringContent.name)}}" }
        if type.contains("html") { return "" }
        return "{{% CONTENT_TYPE: TEXT}}"
    }

    /// The request body: the raw event body, or the rendered template.
    func render(_ n: HeraldNotification) throws(DeliveryError) -> Data {
        guard let template else { return n.event.body }
        let text = template.render(Self.templateContext(n))
        if isJSON {
            do { _ = try JSONValue.parse(Data(text.utf8)) } catch {
                throw .configuration("the webhook template did not render valid JSON (\(error.reason))")
            }
        }
        return Data(text.utf8)
    }

    /// What a template can use: `event` (id, name, source, endpoint, receivedAt, occurredAt,
    /// payload), `payload` (the event body, parsed), `notification` (title, text, kind, color,
    /// emoji, locale, fields[name, value, short]), `deliveryKey`, `attempt`, and `json` with
    /// ready-made JSON for triple braces: `json.payload` (the raw body), `json.fields`,
    /// `json.notification`.
    static func templateContext(_ n: HeraldNotification) -> [String: Any] {
        let fields: [JSON] = n.fields.map { ["name": .string($0.name), "value": .string($0.value), "short": .bool($0.short)] }
        let notificationJSON: JSON = [
            "title": .string(n.title), "text": .string(n.text), "kind": .string(n.kind.rawValue),
            "color": .string(n.kind.hexColor), "locale": .string(n.locale.rawValue), "fields": .array(fields),
        ]
        let payload = n.event.payload.templateValue
        var event: [String: Any] = [
            "id": n.event.id, "name": n.event.name, "source": n.event.source, "endpoint": n.event.endpoint,
            "receivedAt": ISO8601.format(n.event.receivedAt), "payload": payload,
        ]
        if let occurred = n.event.occurredAt { event["occurredAt"] = ISO8601.format(occurred) }
        return [
            "event": event,
            "payload": payload,
            "notification": [
                "title": n.title, "text": n.text, "kind": n.kind.rawValue, "color": n.kind.hexColor, "emoji": n.kind.emoji,
                "locale": n.locale.rawValue,
                "fields": n.fields.map { ["name": $0.name, "value": $0.value, "short": $0.short] as [String: Any] },
            ] as [String: Any],
            "deliveryKey": n.deliveryKey,
            "attempt": n.attempt,
            "json": [
                "payload": String(decoding: n.event.body, as: UTF8.self),
                "fields": String(decoding: JSON.array(fields).data, as: UTF8.self),
                "notification": String(decoding: notificationJSON.data, as: UTF8.self),
            ],
        ]
    }
}

/// Mustache escaping for values inside JSON strings: `{{x}}` in `"…{{x}}…"` stays valid JSON.
struct JSONStringContent: MustacheContentType {
    static let name = "HERALD_JSON_STRING"

    /// Registers the content type with swift-mustache (once per process).
    static func register() { _ = registered }
    private static let registered: Void = MustacheContentTypes.register(JSONStringContent(), named: name)

    func escapeText(_ text: String) -> String {
        let quoted = String(decoding: JSON.string(text).data, as: UTF8.self)
        return String(quoted.dropFirst().dropLast())
    }
}
