import Foundation
import Logging

/// The whole configuration, validated and with every notifier created.
///
/// Loaded from one YAML file by ``ConfigLoader``; see `examples/herald.yaml` for a commented
/// example of every key.
public struct HeraldConfig: Sendable {
    public var file: String
    public var server: Server
    public var storage: Storage
    public var log: Log
    /// Language of the built-in templates unless a route says otherwise.
    public var locale: HeraldLocale
    public var endpoints: [Endpoint]
    public var notifiers: [Notifier]
    public var routes: [Route]
    /// User templates by name, referenced by `template:` in a route.
    public var templates: [String: TemplateSource]

    public struct Server: Sendable, Equatable {
        public var host: String = "127.0.0.1"
        public var port: Int = 8080
        /// Bodies larger than this are refused with 413 before they are read in full.
        public var maxBodyBytes: Int = 1 << 20
        /// Body bytes all requests together may hold at once; a request that would go past it
        /// gets 503 with `Retry-After`, so memory stays bounded however many senders there are.
        public var maxBodyBytesInFlight: Int = 64 << 20
        /// How long a new connection may take to send a complete request header.
        public var headerTimeout: Duration = .seconds(10)
        /// How long a request may take to send its whole body once its header is in.
        public var bodyTimeout: Duration = .seconds(30)
        /// How long a kept-alive connection may wait, after a response, for its next request header.
        public var idleTimeout: Duration = .seconds(60)
        /// Open connections past this are closed as soon as they are accepted.
        public var maxConnections: Int = 4096
        public init() {}
    }

    public struct Storage: Sendable, Equatable {
        /// Directory of the SQLite journal; nil keeps the journal in memory (tests only:
        /// accepted events are then lost on a crash). Not used when ``postgres`` is set.
        public var path: String?
        /// A PostgreSQL journal that several Herald instances share; nil: the SQLite journal
        /// under ``path`` (the embedded default).
        public var postgres: Postgres?
        /// How long a dedupe key is remembered.
        public var dedupeTTL: Duration = .seconds(7 * 86400)
        /// Delivered and dead events older than this are pruned.
        public var retention: Duration = .seconds(30 * 86400)
        /// `true`: concurrent requests share one transaction and one fsync.
        public var groupCommit: Bool = true
        /// Above this many undelivered deliveries, new webhooks get 503 + Retry-After.
        public var maxPending: Int = 100_000
        /// A delivery in flight during this many crashes (kill -9, power loss, a trap) is set
        /// aside as dead on the next start, so one delivery can never keep Herald down.
        public var deadAfterCrashes: Int = 3
        /// How long an instance holds a delivery it took without renewing it. Held deliveries
        /// are renewed every third of it; when an instance dies, another (or its own next
        /// start, on SQLite at once) takes its deliveries over after this.
        public var leaseTime: Duration = .seconds(60)
        public init() {}

        /// `storage.postgres`: where the shared journal is and how many connections to use.
        public struct Postgres: Sendable, Equatable {
            /// The server, database and TLS settings; prints with the password redacted.
            public var url: PostgresURL
            /// The most connections this instance opens to the server.
            public var poolSize: Int = 8
            public init(url: PostgresURL, poolSize: Int = 8) {
                self.url = url
                self.poolSize = poolSize
            }
        }

        /// Where the journal is, for `herald check` and logs; never shows a password.
        public var summary: String {
            if let postgres { return "\(postgres.url) (pool \(postgres.poolSize))" }
            return path ?? "memory (nothing survives a restart)"
        }
    }

    public struct Log: Sendable, Equatable {
        public enum Format: String, Sendable { case text, json }
        public var level: Logger.Level = .info
        public var format: Format = .text
        public init() {}
    }

    /// One webhook URL Herald listens on.
    public struct Endpoint: Sendable {
        /// URL path, e.g. `/hooks/jicoo`.
        public var path: String
        public var source: EventSource
        public var schemeName: SignatureSchemeName
        public var scheme: any SignatureScheme
        /// The secrets the scheme was built with (printed as `<redacted>`).
        public var secrets: [Secret]
        /// How far a signature's timestamp may be from now.
        public var tolerance: Duration
        /// The signature header, when the scheme's default is overridden.
        public var header: String?
        /// For `generic` sources: the JSON field that holds the event name.
        public var eventField: String?
        /// The request header that holds the event name (e.g. `X-GitHub-Event`); it wins
        /// over `eventField` when the request carries it.
        public var eventHeader: String?
        /// Redeliveries of the same webhook are answered 200 and not sent again.
        public var dedupe: Bool
    }

    /// One configured notifier instance (an entry under `notifiers:`).
    public struct Notifier: Sendable {
        public var name: String
        public var kind: String
        public var plugin: any NotifierPlugin
        public var policy: DeliveryPolicy
        /// A SHA-256 digest of the notifier's settings after `${VAR}` and `<key>File`
        /// substitution: equal digests mean the plugin would be created with the same
        /// settings, so a reload can keep the running instance. Never the settings themselves.
        public var settingsDigest: String
        /// Removes the notifier's secret settings (and their parts) from what a delivery
        /// stores or logs, whatever the target sent back.
        public var redact: SecretRedactor = SecretRedactor(secrets: [])
    }

    /// Which notifiers receive which events, and how they are rendered (see ``RouteTable``
    /// for the order routes are tried in).
    public struct Route: Sendable, Equatable {
        /// Event name patterns: exact names, `"*"`, or globs like `guest_*`.
        public var events: [String]
        /// Conditions besides the name (`eventType`, `status`, `guestEmail`, `answers`,
        /// `tracking`, `where`), all of which must hold.
        public var filter: RouteFilter
        /// `continue: true`: later routes are tried after this one matched; otherwise
        /// routing stops at this route.
        public var continues: Bool
        public var notify: [String]
        /// A name under `templates:`; nil uses the built-in template for the event.
        public var template: String?
        public var locale: HeraldLocale?
        public var options: [String: String]
        /// Reminders before a booking's start (`remind: [24h, 1h]`), for each notifier listed.
        public var remind: [Duration]
        /// The template reminders use: a name under `templates:`; nil is the built-in `reminder`.
        public var reminderTemplate: String?
        /// A reminder whose time passed longer ago than this (when the booking arrives, or
        /// after downtime) is recorded as skipped instead of sent late.
        public var remindGrace: Duration

        public init(events: [String], notify: [String], template: String? = nil,
                    locale: HeraldLocale? = nil, options: [String: String] = [:],
                    filter: RouteFilter = RouteFilter(), continues: Bool = false, remind: [Duration] = [],
                    reminderTemplate: String? = nil, remindGrace: Duration = .seconds(600)) {
            self.events = events
            self.filter = filter
            self.continues = continues
            self.notify = notify
            self.template = template
            self.locale = locale
            self.options = options
            self.remind = remind
            self.reminderTemplate = reminderTemplate
            self.remindGrace = remindGrace
        }

        /// Whether `name` matches one of the patterns.
        public func matches(_ name: String) -> Bool {
            events.contains { Glob.matches($0, name) }
        }
    }

    /// Mustache sources for one template: title line, plain text and optional HTML.
    public struct TemplateSource: Sendable, Equatable {
        public var title: String
        public var text: String
        public var html: String?
        public init(title: String, text: String, html: String? = nil) {
            self.title = title
            self.text = text
            self.html = html
        }
    }
}

/// How one notifier's deliveries are run: in parallel up to `concurrency`, each attempt cut
/// off after `timeout`, failures retried per `retry`.
public struct DeliveryPolicy: Sendable, Equatable {
    public var concurrency: Int = 4
    public var timeout: Duration = .seconds(30)
    public var retry: RetryPolicy = RetryPolicy()
    /// When deliveries wait (or are dropped) instead of being sent.
    public var quietHours: QuietHours?
    /// A daily agenda of the day's bookings, sent to this notifier.
    public var agenda: AgendaSchedule?
    public init(concurrency: Int = 4, timeout: Duration = .seconds(30), retry: RetryPolicy = RetryPolicy()) {
        self.concurrency = concurrency
        self.timeout = timeout
        self.retry = retry
    }
}

/// Exponential backoff with full jitter: the n-th retry waits a random time in
/// `0 ... min(maximum, initial × factorⁿ⁻¹)`; a retry is not scheduled once `giveUpAfter`
/// has passed since the event arrived. A target's own `Retry-After` wins, capped at
/// `maxRetryAfter` and never past `giveUpAfter` (the dispatcher then makes a last attempt at
/// the give-up time), so an absurd value neither crashes Herald nor kills the delivery.
public struct RetryPolicy: Sendable, Equatable {
    public var initial: Duration = .seconds(5)
    public var factor: Double = 3
    public var maximum: Duration = .seconds(3600)
    public var giveUpAfter: Duration = .seconds(24 * 3600)
    /// The longest a target's `Retry-After` may postpone the next attempt.
    public var maxRetryAfter: Duration = .seconds(3600)

    public init(initial: Duration = .seconds(5), factor: Double = 3, maximum: Duration = .seconds(3600),
                giveUpAfter: Duration = .seconds(24 * 3600), maxRetryAfter: Duration = .seconds(3600)) {
        self.initial = initial
        self.factor = factor
        self.maximum = maximum
        self.giveUpAfter = giveUpAfter
        self.maxRetryAfter = maxRetryAfter
    }

    /// The upper bound of the wait before retry number `retry` (1 = first retry).
    public func ceiling(forRetry retry: Int) -> Duration {
        let base = initial.seconds * pow(factor, Double(max(0, retry - 1)))
        return .seconds(min(maximum.seconds, base))
    }

    /// When to try again after failed attempt number `attempt` at `now`, for an event that
    /// arrived at `receivedAt`; nil to give up.
    ///
    /// A target that asks to wait past the give-up time (`hint`) gets one last attempt at
    /// that time rather than the delivery dying after one answer; a backoff that would pass
    /// it gives up.
    public func nextAttempt(afterFailure attempt: Int, hint: Duration?, now: Date, receivedAt: Date,
                            random: (ClosedRange<Double>) -> Double = { Double.random(in: $0) }) -> Date? {
        let giveUpAt = receivedAt.addingTimeInterval(giveUpAfter.seconds)
        let next = now.addingTimeInterval(delay(forRetry: attempt, hint: hint, random: random).seconds)
        if next <= giveUpAt { return next }
        return hint != nil && now < giveUpAt ? giveUpAt : nil
    }

    /// The wait before retry number `retry`, jittered; `hint` (a target's `Retry-After`) wins,
    /// up to ``maxRetryAfter``.
    public func delay(forRetry retry: Int, hint: Duration? = nil,
                      random: (ClosedRange<Double>) -> Double = { Double.random(in: $0) }) -> Duration {
        if let hint { return min(hint, maxRetryAfter) }
        return .seconds(random(0...ceiling(forRetry: retry).seconds))
    }
}

/// `*` matches any run of characters, `?` one character; everything else is literal.
public enum Glob {
    public static func matches(_ pattern: String, _ name: String) -> Bool {
        if pattern == "*" || pattern == name { return true }
        guard pattern.contains("*") || pattern.contains("?") else { return false }
        let p = Array(pattern.utf8), s = Array(name.utf8)
        var pi = 0, si = 0, star = -1, mark = 0
        while si < s.count {
            if pi < p.count, p[pi] == UInt8(ascii: "?") || p[pi] == s[si] { pi += 1; si += 1 }
            else if pi < p.count, p[pi] == UInt8(ascii: "*") { star = pi; mark = si; pi += 1 }
            else if star >= 0 { pi = star + 1; mark += 1; si = mark }
            else { return false }
        }
        while pi < p.count, p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }
}
