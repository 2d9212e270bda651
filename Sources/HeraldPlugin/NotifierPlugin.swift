import Logging
import Synchronization

/// A notifier that Herald can route events to: email, a chat service, a file, or your own.
///
/// Herald creates one instance per entry under `notifiers:` in the configuration, decoding
/// that entry into ``Settings``. The dispatcher calls ``deliver(_:)`` once per notification,
/// wrapped in the notifier's retry policy, concurrency limit and timeout, so a plugin only
/// has to make one attempt and say how it went by throwing a ``DeliveryError``.
///
/// A plugin that needs background work (a connection pool, a token refresher) also conforms
/// to `Service` from swift-service-lifecycle; Herald then runs it in its service group and
/// shuts it down after the last delivery.
///
/// When a configuration reload changes a notifier's settings, Herald creates a new instance
/// while the old one finishes the deliveries it started; for a while both exist. Unchanged
/// settings keep the running instance.
public protocol NotifierPlugin: Sendable {
    /// Settings decoded from the notifier's entry in the configuration file (except `kind`
    /// and the delivery keys every notifier shares: `retry`, `concurrency`, `timeout`).
    associatedtype Settings: Decodable & Sendable

    /// The name users write as `kind:` in the configuration, e.g. `"smtp"` or `"slack"`.
    static var kind: String { get }

    /// Settings keys that hold secrets. For each one, users may write `<key>File: /path`
    /// instead and Herald reads the secret from that file; values of these keys never
    /// appear in errors or logs.
    static var secretKeys: [String] { get }

    /// Whether ``deliver(_:)`` reads ``HeraldNotification/html``. Rendering HTML costs about
    /// as much as the rest of a notification together, so plugins that never show it say
    /// false and get `html == nil`. Defaults to true.
    static var usesHTML: Bool { get }

    /// Creates the notifier. Validate settings here and throw a ``ConfigError`` (or any
    /// error) for values that cannot work; do no network I/O.
    init(settings: Settings, context: PluginContext) throws

    /// Makes one attempt to deliver a notification.
    ///
    /// Throw ``DeliveryError`` to tell the dispatcher whether to retry; any other error
    /// counts as retryable.
    func deliver(_ notification: HeraldNotification) async throws

    /// What ``deliver(_:)`` would send for `notification`, built the same way but sent
    /// nowhere: `herald render` prints it so a configuration can be checked before it goes
    /// live. Make no connection and write nothing here.
    ///
    /// The default returns nil ("this plugin does not show its payload"); `herald render`
    /// then shows only the title, text and HTML. Herald removes the notifier's secret
    /// settings from what is printed, but leave secrets out of ``DeliveryPreview/destination``
    /// yourself (show a host, not a secret URL).
    func preview(_ notification: HeraldNotification) throws -> DeliveryPreview?
}

extension NotifierPlugin {
    /// No secret keys.
    public static var secretKeys: [String] { [] }
    /// Render HTML for this plugin.
    public static var usesHTML: Bool { true }
    /// No preview: `herald render` shows the title, text and HTML only.
    public func preview(_ notification: HeraldNotification) throws -> DeliveryPreview? { nil }
}

/// What a notifier would send for one notification, for `herald render`: where it would go,
/// the request headers or mail envelope, and each payload exactly as the target would
/// receive it (a chat service's JSON body, an email message and its calendar file, a line).
public struct DeliveryPreview: Sendable, Equatable {
    /// A header of the request, or an envelope entry (`MAIL FROM`, `RCPT TO`).
    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    /// One payload: its name (`request body`, `message`, `invite.ics`, `line`), media type
    /// and content as text.
    public struct Part: Sendable, Equatable {
        public var name: String
        public var contentType: String
        public var content: String
        public init(name: String, contentType: String, content: String) {
            self.name = name
            self.contentType = contentType
            self.content = content
        }
    }

    /// Where it would go, without secrets: `POST https://api.line.me/v2/bot/message/push`,
    /// `SMTP smtp.example.com:587 (starttls)`, `append to /var/lib/herald/bookings.jsonl`.
    public var destination: String
    public var headers: [Header]
    public var parts: [Part]

    public init(destination: String, headers: [Header] = [], parts: [Part]) {
        self.destination = destination
        self.headers = headers
        self.parts = parts
    }
}

/// What a plugin gets from Herald when it is created.
public struct PluginContext: Sendable {
    /// The notifier's name from the configuration (the key under `notifiers:`).
    public let name: String
    /// A logger labelled with the notifier's name. Never log secrets with it.
    public let logger: Logger
    /// The directory of the configuration file; resolve relative paths against it.
    public let baseDirectory: String
    /// Objects shared by all plugins of one Herald process, e.g. one HTTP client.
    public let shared: SharedResources

    /// Herald makes the context; tests use `PluginContext.testing` from HeraldTesting.
    public init(name: String, logger: Logger, baseDirectory: String, shared: SharedResources) {
        self.name = name
        self.logger = logger
        self.baseDirectory = baseDirectory
        self.shared = shared
    }

    /// `path` resolved against the configuration file's directory unless it is absolute.
    public func resolvePath(_ path: String) -> String { Self.resolve(path, against: baseDirectory) }

    /// `path` joined to `base` unless absolute, without `.` and empty components, so that
    /// paths read as people write them: `./herald-data` beside `./herald.yaml` is
    /// `herald-data`, not `././herald-data`. `..` is kept (symbolic links make it unsafe to fold).
    public static func resolve(_ path: String, against base: String) -> String {
        let joined = path.hasPrefix("/") ? path : base + "/" + path
        let parts = joined.split(separator: "/").filter { $0 != "." }
        let text = parts.joined(separator: "/")
        if joined.hasPrefix("/") { return "/" + text }
        return text.isEmpty ? "." : text
    }
}

/// Objects created once and shared by every plugin in a Herald process.
///
/// The first plugin that asks for a type creates it; later ones get the same object.
/// Objects that are also a `Service` are run by Herald's service group, so that e.g. a
/// shared HTTP client is shut down cleanly after the last delivery.
public final class SharedResources: Sendable {
    private let state = Mutex<[ObjectIdentifier: any Sendable]>([:])
    private let order = Mutex<[any Sendable]>([])

    /// An empty set; Herald makes one per process.
    public init() {}

    /// The shared object of type `T`, created by `make` on first use.
    public func get<T: Sendable>(_ type: T.Type, make: () throws -> T) rethrows -> T {
        try state.withLock { objects in
            if let existing = objects[ObjectIdentifier(type)] as? T { return existing }
            let made = try make()
            objects[ObjectIdentifier(type)] = made
            order.withLock { $0.append(made) }
            return made
        }
    }

    /// Every shared object, in creation order.
    public var all: [any Sendable] { order.withLock { $0 } }
}
