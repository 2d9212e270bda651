import AsyncHTTPClient
import Foundation
import HeraldCore
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

    private enum CodingKeys: String, CodingKey, CaseIterable { case connectTimeout, timeout }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        connectTimeout = try c.duration(.connectTimeout) ?? .seconds(10)
        timeout = try c.duration(.timeout)
        guard connectTimeout > .zero else { throw ConfigError(key: "connectTimeout", "must be more than 0") }
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

    private enum CodingKeys: String, CodingKey, CaseIterable { case webhookURL }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
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
        url = try adjust(ServiceURL.parse(webhookURL, key: "webhookURL"))
        sender = HTTPSender(service: service, options: http, secrets: [webhookURL], context: context)
    }

    /// An API method at `path` under `apiBaseURL`, called with `token`.
    init(apiBaseURL: String, path: String, token: String, http: HTTPOptions, service: String,
         context: PluginContext) throws {
        url = ServiceURL.appending(path, to: try ServiceURL.parse(apiBaseURL, key: "apiBaseURL"))
        sender = HTTPSender(service: service, options: http, secrets: [token], context: context)
    }

    @discardableResult
    func send(_ body: HTTPSender.Body, headers: [(String, String)] = [], accepting: Set<Int> = []) async throws -> HTTPReply {
        try await sender.send(body, to: url, headers: headers, accepting: accepting)
    }

    func send(_ json: JSON) async throws {
        try await send(.json(json))
    }
}

/// Any key, for listing what a settings mapping holds.
private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension Decoder {
    /// Throws a ``ConfigError`` for a settings key that is neither one of `keys` nor a shared
    /// ``HTTPOptions`` key, so a typo like `webhookUrl` fails at start-up instead of being ignored.
    func rejectUnknownKeys<K: CodingKey & CaseIterable>(_ keys: K.Type) throws {
        let known = Set(K.allCases.map(\.stringValue) + ["connectTimeout", "timeout"])
        for key in try container(keyedBy: AnyKey.self).allKeys where !known.contains(key.stringValue) {
            throw ConfigError(key: key.stringValue, "unknown key; expected one of: \(known.sorted().joined(separator: ", "))")
        }
    }
}

extension KeyedDecodingContainer {
    /// A duration written as `"10s"`, `"500ms"`, `"2m"` or a number of seconds; nil if absent.
    func duration(_ key: Key) throws -> Duration? {
        if let seconds = try? decodeIfPresent(Double.self, forKey: key) {
            guard seconds >= 0, seconds.isFinite else { throw ConfigError(key: key.stringValue, "must not be negative") }
            return .milliseconds(Int64((seconds * 1000).rounded()))
        }
        guard let text = try decodeIfPresent(String.self, forKey: key) else { return nil }
        guard let value = Duration.parse(text) else {
            throw ConfigError(key: key.stringValue, "\"\(text)\" is not a duration (e.g. 500ms, 10s, 2m)")
        }
        return value
    }

    /// A required, non-empty string.
    func nonEmpty(_ key: Key) throws -> String {
        guard let value = try decodeIfPresent(String.self, forKey: key)?.trimmingCharacters(in: .whitespacesAndNewlines),
              !value.isEmpty
        else { throw ConfigError(key: key.stringValue, "is required") }
        return value
    }

    /// An identifier users may write as a number or a string (chat ids, room ids).
    func identifier(_ key: Key) throws -> String {
        if let number = try? decodeIfPresent(Int64.self, forKey: key) { return String(number) }
        return try nonEmpty(key)
    }
}

/// An `http(s)` URL from the configuration, validated when the notifier is created.
enum ServiceURL {
    static func parse(_ text: String, key: String) throws -> URL {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http",
              let host = url.host, !host.isEmpty
        else { throw ConfigError(key: key, "must be an http(s) URL with a host") }
        return url
    }

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

/// Removes secrets (tokens, webhook URLs and their path segments) from text that is about to
/// go into an error message or a log line.
struct Redactor: Sendable {
    private let needles: [String]

    /// `secrets` are tokens or URLs; for URLs, their path, query and long path segments are
    /// redacted too, since services echo those back (e.g. "unknown webhook 1234/abcd…").
    init(secrets: [String]) {
        var needles: Set<String> = []
        for secret in secrets where secret.count >= 4 {
            needles.insert(secret)
            if let encoded = secret.addingPercentEncoding(withAllowedCharacters: .alphanumerics) { needles.insert(encoded) }
            guard let url = URL(string: secret), url.host != nil else { continue }
            if url.path.count > 1 { needles.insert(url.path) }
            if let query = url.query, query.count >= 8 { needles.insert(query) }
            for segment in url.pathComponents where segment.count >= 16 { needles.insert(segment) }
        }
        self.needles = needles.sorted { $0.count > $1.count }
    }

    func callAsFunction(_ text: String) -> String {
        needles.reduce(text) { $0.replacingOccurrences(of: $1, with: "<redacted>") }
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
struct HTTPSender: Sendable {
    let shared: SharedHTTPClient
    let options: HTTPOptions
    /// The service's name in messages: "Slack", "LINE".
    let service: String
    let redact: Redactor
    let logger: Logger

    /// Longest service error text quoted in a ``DeliveryError``.
    static let errorTextLimit = 300
    /// Most bytes of a response body read.
    static let bodyLimit = 64 * 1024

    init(service: String, options: HTTPOptions, secrets: [String], context: PluginContext) {
        self.shared = context.shared.get(SharedHTTPClient.self) { SharedHTTPClient() }
        self.options = options
        self.service = service
        self.redact = Redactor(secrets: secrets)
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
            let timeout = TimeAmount.nanoseconds(Int64(options.requestTimeout.seconds * 1e9))
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
    static func retryAfter(header: String?, body: Data, now: Date = Date()) -> Duration? {
        if let value = header?.trimmingCharacters(in: .whitespaces) {
            if let seconds = Double(value), seconds >= 0, seconds.isFinite {
                return .milliseconds(Int64((seconds * 1000).rounded()))
            }
            if let date = parseHTTPDate(value) {
                return .milliseconds(max(0, Int64((date.timeIntervalSince(now) * 1000).rounded())))
            }
        }
        guard let json = try? JSONValue.parse(body) else { return nil }
        for candidate in [json["retry_after"], json["parameters"]?["retry_after"]] {
            if case .number(let seconds)? = candidate, seconds >= 0, seconds.isFinite {
                return .milliseconds(Int64((seconds * 1000).rounded()))
            }
        }
        return nil
    }

    /// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form `Retry-After` uses.
    static func parseHTTPDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return formatter.date(from: text)
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
