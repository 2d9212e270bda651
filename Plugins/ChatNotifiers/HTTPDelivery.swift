import AsyncHTTPClient
import Foundation
import HeraldPlugin
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// Settings every chat kind shares: how long to wait for the service.
///
/// Written next to the kind's own keys in a notifier's entry:
/// ```yaml
/// connectTimeout: 5s   # TCP + TLS handshake; default 10s
/// timeout: 30s         # the whole attempt, response included; default 30s
/// ```
/// Herald's configuration loader reads `timeout` as the notifier's per-attempt limit and its
/// dispatcher cancels a delivery that runs longer, so in a configuration file `timeout` never
/// reaches the plugin and ``timeout`` stays nil. It is set when a plugin is built in code
/// (tests, custom builds without the dispatcher); nil means only ``backstop`` bounds a request.
public struct HTTPOptions: Decodable, Sendable, Equatable {
    public var connectTimeout: Duration
    public var timeout: Duration?

    /// The longest a request may take when ``timeout`` is nil, so a request can never hang
    /// forever even outside the dispatcher.
    public static let backstop: Duration = .seconds(600)

    public init(connectTimeout: Duration = .seconds(10), timeout: Duration? = nil) {
        self.connectTimeout = connectTimeout
        self.timeout = timeout
    }

    /// The deadline for one request.
    var requestTimeout: Duration { timeout ?? Self.backstop }

    private enum CodingKeys: String, CodingKey { case connectTimeout, timeout }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        connectTimeout = try c.duration(.connectTimeout, in: .milliseconds(1)...Self.backstop) ?? .seconds(10)
        timeout = try c.duration(.timeout)
        if let timeout, timeout <= .zero { throw ConfigError(key: "timeout", "must be more than 0") }
    }
}

/// Settings of the kinds that post to one webhook URL and nothing else (`slack`, `teams`,
/// `googlechat`).
///
/// ```yaml
/// webhookURL: ${SLACK_WEBHOOK_URL}   # secret; or webhookURLFile: /run/secrets/slack
/// connectTimeout: 10s
/// timeout: 30s
/// ```
public struct WebhookURLSettings: Decodable, Sendable {
    /// The webhook URL, a secret: anyone who has it can post.
    public var webhookURL: String
    public var http: HTTPOptions

    public init(webhookURL: String, http: HTTPOptions = HTTPOptions()) {
        self.webhookURL = webhookURL
        self.http = http
    }

    private enum CodingKeys: String, CodingKey { case webhookURL }

    public init(from decoder: any Decoder) throws {
        webhookURL = try decoder.container(keyedBy: CodingKeys.self).nonEmpty(.webhookURL)
        http = try HTTPOptions(from: decoder)
    }
}

/// Where a notifier sends and how: the validated URL and the sender, built the same way for
/// every kind.
struct ServiceEndpoint: Sendable {
    let url: URL
    let sender: HTTPSender

    /// A webhook URL, which is itself the secret; `adjust` may add query items.
    init(webhookURL: String, http: HTTPOptions, service: String, context: PluginContext,
         adjust: (URL) throws -> URL = { $0 }) throws {
        url = try adjust(Setting.url(webhookURL, key: "webhookURL"))
        sender = HTTPSender(service: service, options: http, secrets: [webhookURL], context: context)
    }

    /// An API method at `path` under `apiBaseURL`, called with `token`.
    init(apiBaseURL: String, path: String, token: String, http: HTTPOptions, service: String,
         context: PluginContext) throws {
        url = ServiceURL.appending(path, to: try Setting.url(apiBaseURL, key: "apiBaseURL"))
        sender = HTTPSender(service: service, options: http, secrets: [token], context: context)
    }

    @discardableResult
    func send(_ body: HTTPSender.Body, headers: [(String, String)] = [], accepting: Set<Int> = []) async throws -> HTTPReply {
        try await sender.send(body, to: url, headers: headers, accepting: accepting)
    }

    func send(_ json: JSON) async throws {
        try await send(.json(json))
    }

    @discardableResult
    func send(_ request: ServiceRequest) async throws -> HTTPReply {
        try await send(request.body, headers: request.headers, accepting: request.accepting)
    }

    /// What ``send(_:)`` would post, without posting it.
    func preview(_ request: ServiceRequest) -> DeliveryPreview {
        sender.preview(request.body, to: url, headers: request.headers)
    }
}

/// One request of a notifier, built once: `send` posts it, `preview` shows it (`herald render`),
/// so what is shown is what is sent.
struct ServiceRequest: Sendable {
    var body: HTTPSender.Body
    var headers: [(String, String)] = []
    /// Statuses besides 2xx that count as success.
    var accepting: Set<Int> = []
}

extension KeyedDecodingContainer {
    /// An identifier users may write as a number or a string (chat ids, room ids).
    func identifier(_ key: Key) throws -> String {
        if let number = try? decodeIfPresent(Int64.self, forKey: key) { return String(number) }
        return try nonEmpty(key)
    }
}

/// What of a service URL may be shown, and how API paths join a base URL.
enum ServiceURL {
    /// `host` or `host:port`: all of a URL that may be logged.
    static func loggableHost(_ url: URL) -> String {
        guard let host = url.host else { return "?" }
        return url.port.map { "\(host):\($0)" } ?? host
    }

    /// `base` + `path`, without doubling the slash between them.
    static func appending(_ path: String, to base: URL) -> URL {
        var text = base.absoluteString
        while text.hasSuffix("/") { text.removeLast() }
        return URL(string: text + path) ?? base
    }
}

/// A service's answer to a request that it accepted.
struct HTTPReply: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var body: Data
}

/// One notifier's way to its service: the shared client, the timeouts, the service's name for
/// messages, and the secrets to keep out of them.
///
/// ``send(_:to:headers:accepting:)`` makes one request and classifies the answer the same way
/// for every kind: 2xx is success; 408, 425, 429 and 5xx are retryable (honouring
/// `Retry-After`); 401 and 403 are configuration errors (a wrong token or revoked webhook fails
/// every time), and so is 3xx (redirects are not followed); other 4xx are permanent; network
/// errors and timeouts are retryable.
package struct HTTPSender: Sendable {
    let shared: SharedHTTPClient
    let options: HTTPOptions
    /// The service's name in messages: "Slack", "LINE".
    let service: String
    let redact: SecretRedactor
    let logger: Logger

    /// Longest service error text quoted in a ``DeliveryError``.
    static let errorTextLimit = 300
    /// Most bytes of a response body read.
    static let bodyLimit = 64 * 1024

    init(service: String, options: HTTPOptions, secrets: [String], context: PluginContext) {
        self.shared = context.shared.get(SharedHTTPClient.self) { SharedHTTPClient() }
        self.options = options
        self.service = service
        self.redact = SecretRedactor(secrets: secrets)
        self.logger = context.logger
    }

    /// A request body and its media type.
    struct Body: Sendable {
        var data: Data
        var contentType: String

        static func json(_ value: JSON) -> Body { Body(data: value.data, contentType: "application/json; charset=utf-8") }

        /// `application/x-www-form-urlencoded`, every byte but RFC 3986 unreserved ones percent-encoded.
        static func form(_ fields: KeyValuePairs<String, String>) -> Body {
            var allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
            allowed.insert(charactersIn: "-._~")
            let text: String = fields.map { key, value -> String in
                let k = key.addingPercentEncoding(withAllowedCharacters: allowed) ?? key
                let v = value.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
                return "\(k)=\(v)"
            }.joined(separator: "&")
            return Body(data: Data(text.utf8), contentType: "application/x-www-form-urlencoded")
        }
    }

    /// POSTs `body` to `url` and returns the reply if the status is 2xx or in `accepting`;
    /// otherwise throws the classified ``DeliveryError``.
    ///
    /// Throws `CancellationError` when the task is cancelled (the dispatcher's timeout or
    /// shutdown), so the dispatcher can tell that from a failed attempt.
    @discardableResult
    func send(_ body: Body, to url: URL, headers: [(String, String)] = [], accepting: Set<Int> = []) async throws -> HTTPReply {
        let host = ServiceURL.loggableHost(url)
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = .POST
        request.headers.add(name: "User-Agent", value: "Herald")
        for (name, value) in headers { request.headers.replaceOrAdd(name: name, value: value) }
        request.headers.replaceOrAdd(name: "Content-Type", value: body.contentType)
        request.body = .bytes(ByteBuffer(bytes: body.data))

        let reply: HTTPReply
        do {
            let client = try shared.client(connectTimeout: options.connectTimeout)
            let timeout = TimeAmount.nanoseconds(options.requestTimeout.saturatingNanoseconds)
            let response = try await client.execute(request, timeout: timeout)
            var data = Data()
            for try await chunk in response.body {
                data.append(contentsOf: chunk.readableBytesView.prefix(Self.bodyLimit - data.count))
                if data.count >= Self.bodyLimit { break }
            }
            reply = HTTPReply(status: Int(response.status.code), headers: response.headers, body: data)
        } catch let error as DeliveryError {
            throw error
        } catch {
            if Task.isCancelled { throw CancellationError() }
            logger.debug("request failed", metadata: ["host": "\(host)", "error": "\(redact(String(describing: error)))"])
            throw DeliveryError.retryable("\(service) at \(host) could not be reached: \(redact(Self.describe(error)))")
        }
        logger.debug("answered", metadata: ["host": "\(host)", "status": "\(reply.status)"])
        if (200..<300).contains(reply.status) || accepting.contains(reply.status) { return reply }
        throw classify(reply, host: host)
    }

    /// The request ``send(_:to:headers:accepting:)`` would make, without making it: the URL
    /// and header values with this sender's secrets removed, the body as text.
    func preview(_ body: Body, to url: URL, headers: [(String, String)] = []) -> DeliveryPreview {
        var shown: [(String, String)] = [("User-Agent", "Herald")]
        for (name, value) in headers + [("Content-Type", body.contentType)] {
            shown.removeAll { $0.0.lowercased() == name.lowercased() }
            shown.append((name, value))
        }
        // The origin is what logs show too; the rest may be the secret (a webhook URL's path).
        let origin = "\(url.scheme ?? "https")://\(ServiceURL.loggableHost(url))"
        let rest = url.absoluteString.hasPrefix(origin) ? String(url.absoluteString.dropFirst(origin.count)) : url.absoluteString
        return DeliveryPreview(
            destination: "POST \(origin)\(redact(rest))",
            headers: shown.map { DeliveryPreview.Header($0.0, redact($0.1)) },
            parts: [DeliveryPreview.Part(name: "request body", contentType: body.contentType,
                                         content: redact(String(decoding: body.data, as: UTF8.self)))])
    }

    /// The ``DeliveryError`` for a status that is not success.
    func classify(_ reply: HTTPReply, host: String) -> DeliveryError {
        let text = errorText(reply.body)
        let message = "\(service) at \(host) answered HTTP \(reply.status)" + (text.isEmpty ? "" : ": \(text)")
        switch reply.status {
        case 429, 408, 425, 500...599:
            return .retryable(message, after: Self.retryAfter(header: reply.headers.first(name: "Retry-After"), body: reply.body))
        case 401, 403:
            return .configuration(message)
        case 300..<400:
            return .configuration(message + " (a redirect: configure the final URL)")
        default:
            return .permanent(message)
        }
    }

    /// The response body as one line of redacted text, cut to ``errorTextLimit``.
    func errorText(_ body: Data) -> String {
        let text = String(decoding: body, as: UTF8.self)
            .split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
        return TextLimit.fit(redact(text), Self.errorTextLimit)
    }

    /// How long the service asked to wait: the `Retry-After` header in seconds or as an HTTP
    /// date, else a `retry_after` in a JSON body (Discord's top level, Telegram's `parameters`).
    ///
    /// The value comes from the target, so any size is taken without trapping: a number past
    /// ``Duration/longest`` (`99999999999999999999999`, `1e300`) is clamped to it, a date in
    /// the past is zero, and the dispatcher caps the result with `retry.maxRetryAfter`.
    package static func retryAfter(header: String?, body: Data, now: Date = Date()) -> Duration? {
        if let value = header?.trimmingCharacters(in: .whitespaces), !value.isEmpty {
            if let seconds = Double(value), seconds >= 0 {
                return .clamped(seconds: seconds)
            }
            if let date = HTTPDate.parse(value) {
                return .clamped(seconds: date.timeIntervalSince(now))
            }
        }
        guard let json = try? JSONValue.parse(body) else { return nil }
        for candidate in [json["retry_after"], json["parameters"]?["retry_after"]] {
            if case .number(let seconds)? = candidate, seconds.value >= 0 {
                return .clamped(seconds: seconds.value)
            }
        }
        return nil
    }

    private static func describe(_ error: any Error) -> String {
        if let connect = error as? NIOConnectionError,
           let io = connect.connectionErrors.lazy.compactMap({ $0.error as? IOError }).first {
            return SystemErrorText.connectFailure(errno: io.errnoCode, target: "\(connect.host):\(connect.port)")
        }
        if let io = error as? IOError { return SystemErrorText.reason(io.errnoCode) }
        if let error = error as? HTTPClientError {
            switch error {
            case .deadlineExceeded: return "no answer within the timeout"
            case .connectTimeout: return "connect timeout"
            case .remoteConnectionClosed: return "the connection was closed before an answer"
            default: break
            }
        }
        return String(describing: error)
    }
}
