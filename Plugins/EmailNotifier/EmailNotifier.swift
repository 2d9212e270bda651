import Foundation
import HeraldPlugin
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle

/// How the connection to the SMTP server is protected.
public enum SMTPSecurity: String, Decodable, Sendable {
    /// Plain TCP upgraded with STARTTLS before anything else (port 587). The default.
    case starttls
    /// TLS from the first byte, "implicit TLS" (port 465).
    case tls
    /// No encryption (port 25); only when written out, e.g. for a relay on localhost.
    case none

    var defaultPort: Int {
        switch self {
        case .starttls: 587
        case .tls: 465
        case .none: 25
        }
    }
}

/// Sends notifications as email over SMTP (`kind: smtp`).
///
/// Each notification becomes one message: the title as subject, the text and HTML bodies as
/// `multipart/alternative`, and, with `calendar: true`, an iCalendar invitation or
/// cancellation for the booking. Connections are pooled and reused between messages. See
/// `Plugins/EmailNotifier/README.md` for every setting.
///
/// As a `Service`, the notifier closes idle connections in the background and sends QUIT on
/// every open connection at graceful shutdown.
public struct EmailNotifier: NotifierPlugin, Service {
    /// The `smtp` entry of a notifier, as written in the configuration (camelCase keys).
    public struct Settings: Decodable, Sendable {
        public var host: String?
        /// Defaults by security: 587 (starttls), 465 (tls), 25 (none).
        public var port: Int?
        public var security: SMTPSecurity?
        public var username: String?
        /// Prefer `passwordFile:`; the value never appears in logs or errors.
        public var password: String?
        /// `Herald <bot@example.com>`: the header From and the envelope sender.
        public var from: String?
        public var to: [String]?
        public var cc: [String]?
        /// Recipients that appear in no header.
        public var bcc: [String]?
        public var replyTo: String?
        /// Also send to the booking's guest (contact email). A route can ask for the same with
        /// `options: {toGuest: "true"}`.
        public var toGuest: Bool?
        /// Attach an iCalendar invitation (or cancellation) for booking events.
        public var calendar: Bool?
        /// A PEM file of CA certificates to trust in addition to the system's.
        public var caFile: String?
        /// Skip certificate verification. For testing only; logged as a warning.
        public var insecureSkipVerify: Bool?
        /// Allow AUTH over an unencrypted connection (`security: none` only).
        public var allowPlaintextAuth: Bool?
        /// The name sent with EHLO; defaults to this machine's host name.
        public var heloName: String?
        public var connectTimeout: String?
        public var commandTimeout: String?
        public var messageTimeout: String?
        public var maxConnections: Int?
        public var idleTimeout: String?

        public init(
            host: String? = nil, port: Int? = nil, security: SMTPSecurity? = nil, username: String? = nil,
            password: String? = nil, from: String? = nil, to: [String]? = nil, cc: [String]? = nil,
            bcc: [String]? = nil, replyTo: String? = nil, toGuest: Bool? = nil, calendar: Bool? = nil,
            caFile: String? = nil, insecureSkipVerify: Bool? = nil, allowPlaintextAuth: Bool? = nil,
            heloName: String? = nil, connectTimeout: String? = nil, commandTimeout: String? = nil,
            messageTimeout: String? = nil, maxConnections: Int? = nil, idleTimeout: String? = nil
        ) {
            self.host = host; self.port = port; self.security = security; self.username = username
            self.password = password; self.from = from; self.to = to; self.cc = cc; self.bcc = bcc
            self.replyTo = replyTo; self.toGuest = toGuest; self.calendar = calendar; self.caFile = caFile
            self.insecureSkipVerify = insecureSkipVerify; self.allowPlaintextAuth = allowPlaintextAuth
            self.heloName = heloName; self.connectTimeout = connectTimeout; self.commandTimeout = commandTimeout
            self.messageTimeout = messageTimeout; self.maxConnections = maxConnections; self.idleTimeout = idleTimeout
        }
    }

    /// What happened to one message.
    public struct Report: Sendable {
        /// The Message-ID header, the same for every send of one delivery key.
        public var messageID: String
        /// Recipients the server accepted.
        public var accepted: [String]
        /// Recipients the server refused, with its reply (e.g. `550 5.1.1 …`).
        public var rejected: [(address: String, reply: String)]
    }

    public static let kind = "smtp"
    public static let secretKeys = ["password"]

    private let from: EmailAddress
    private let to: [EmailAddress]
    private let cc: [EmailAddress]
    private let bcc: [EmailAddress]
    private let replyTo: EmailAddress?
    private let toGuest: Bool
    private let calendar: Bool
    private let idleTimeout: Duration
    private let logger: Logger
    private let pool: SMTPConnectionPool
    /// `smtp.example.com:587 (starttls)`, for previews.
    private let server: String

    public init(settings: Settings, context: PluginContext) throws {
        guard let host = settings.host?.trimmingCharacters(in: .whitespaces), !host.isEmpty else {
            throw ConfigError(key: "host", "required: the SMTP server's host name")
        }
        let security = settings.security ?? .starttls
        let port = settings.port ?? security.defaultPort
        guard (1...65535).contains(port) else { throw ConfigError(key: "port", "\(port) is not a TCP port (1-65535)") }

        guard let fromText = settings.from else {
            throw ConfigError(key: "from", "required: the sender, e.g. \"Herald <bot@example.com>\"")
        }
        from = try Self.address(fromText, key: "from")
        to = try (settings.to ?? []).enumerated().map { try Self.address($1, key: "to[\($0)]") }
        cc = try (settings.cc ?? []).enumerated().map { try Self.address($1, key: "cc[\($0)]") }
        bcc = try (settings.bcc ?? []).enumerated().map { try Self.address($1, key: "bcc[\($0)]") }
        replyTo = try settings.replyTo.map { try Self.address($0, key: "replyTo") }
        toGuest = settings.toGuest ?? false
        calendar = settings.calendar ?? false
        if to.isEmpty && cc.isEmpty && bcc.isEmpty && !toGuest {
            throw ConfigError(key: "to", "no recipients: set to, cc or bcc, or toGuest: true")
        }

        switch (settings.username, settings.password) {
        case (nil, .some): throw ConfigError(key: "username", "a password is set but no username")
        case (.some, nil): throw ConfigError(key: "password", "a username is set but no password (or passwordFile)")
        default: break
        }
        let allowPlaintextAuth = settings.allowPlaintextAuth ?? false
        if security == .none {
            if settings.password != nil && !allowPlaintextAuth {
                throw ConfigError(key: "security", "with security: none the password would travel unencrypted; "
                    + "use starttls or tls, or set allowPlaintextAuth: true on a trusted network")
            }
            if settings.caFile != nil || settings.insecureSkipVerify != nil {
                throw ConfigError(key: settings.caFile != nil ? "caFile" : "insecureSkipVerify",
                                  "has no effect with security: none")
            }
        }
        if settings.caFile != nil && settings.insecureSkipVerify == true {
            throw ConfigError(key: "insecureSkipVerify", "contradicts caFile: either verify against caFile or skip verification")
        }
        let tls = try security == .none ? nil : Self.tlsContext(settings, context: context)
        if settings.insecureSkipVerify == true {
            context.logger.warning("insecureSkipVerify: true — the SMTP server's certificate is not checked; anyone on the path can read the mail and the password")
        }

        let heloName = settings.heloName ?? Self.defaultHeloName()
        guard !heloName.isEmpty, heloName.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
            throw ConfigError(key: "heloName", "must be a host name or address literal without spaces")
        }
        let maxConnections = settings.maxConnections ?? 2
        guard maxConnections >= 1 else { throw ConfigError(key: "maxConnections", "must be at least 1") }
        idleTimeout = try Self.duration(settings.idleTimeout, key: "idleTimeout", default: .seconds(30))
        logger = context.logger
        let config = SMTPClientConfiguration(
            host: host, port: port, security: security, tls: tls, username: settings.username,
            password: settings.password, allowPlaintextAuth: allowPlaintextAuth, heloName: heloName,
            connectTimeout: try Self.duration(settings.connectTimeout, key: "connectTimeout", default: .seconds(10)),
            commandTimeout: try Self.duration(settings.commandTimeout, key: "commandTimeout", default: .seconds(30)),
            messageTimeout: try Self.duration(settings.messageTimeout, key: "messageTimeout", default: .seconds(120)))
        pool = SMTPConnectionPool(config: config, maxConnections: maxConnections, idleTimeout: idleTimeout, logger: context.logger)
        server = "\(host):\(port) (\(security.rawValue))"
    }

    public func deliver(_ notification: HeraldNotification) async throws {
        _ = try await send(notification)
    }

    /// Delivers like ``deliver(_:)`` and also tells which recipients were refused. A message
    /// that reached some recipients counts as delivered; the others are logged as warnings.
    public func send(_ notification: HeraldNotification) async throws -> Report {
        let (transaction, messageID) = try makeTransaction(for: notification)
        let result = try await sendRetryingStale(transaction)
        let report = Report(messageID: messageID, accepted: result.accepted, rejected: result.rejected)
        if !report.rejected.isEmpty {
            logger.warning("the SMTP server refused some recipients; the others got the message", metadata: [
                "message_id": "\(messageID)",
                "rejected": .array(report.rejected.map { "<\($0.address)>: \($0.reply)" }),
            ])
        }
        logger.debug("sent \(messageID) to \(report.accepted.count) recipient(s)")
        return report
    }

    /// The message ``deliver(_:)`` sends, shown without connecting: the envelope, the
    /// message as it goes to a server that takes 8-bit text (most do; to one that does not,
    /// its text parts go base64 or quoted-printable), and the calendar invitation on its own.
    public func preview(_ notification: HeraldNotification) throws -> DeliveryPreview? {
        let (transaction, _) = try makeTransaction(for: notification)
        let message = transaction.message
        var parts = [DeliveryPreview.Part(name: "message", contentType: "message/rfc822",
                                          content: String(decoding: message.render(eightBit: true), as: UTF8.self))]
        if let calendar = message.calendar {
            parts.append(DeliveryPreview.Part(name: "invite.ics", contentType: "text/calendar; method=\(calendar.method.rawValue)",
                                              content: calendar.render()))
        }
        let envelope = [DeliveryPreview.Header("MAIL FROM", "<\(transaction.mailFrom)>")]
            + transaction.recipients.map { DeliveryPreview.Header("RCPT TO", "<\($0)>") }
        return DeliveryPreview(destination: "SMTP \(server)", headers: envelope, parts: parts)
    }

    /// Closes idle connections while running, and every connection (with QUIT) at graceful
    /// shutdown.
    public func run() async throws {
        let interval = Duration.seconds(min(max(idleTimeout.seconds / 2, 0.05), 5))
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            } catch {
                break
            }
            await pool.closeIdle()
        }
        await pool.shutdown()
    }

    /// Closes every connection with QUIT; for use without a service group (tests, scripts).
    public func shutdown() async {
        await pool.shutdown()
    }

    // MARK: Sending

    /// One attempt, plus one more on a fresh connection when a reused connection turns out
    /// to have gone stale (dropped by the server, or 421) before the message was handed over.
    private func sendRetryingStale(_ transaction: SMTPTransaction) async throws -> SMTPTransactionResult {
        var retriedStale = false
        while true {
            let (connection, reused) = try await pool.checkout()
            do {
                let result = try await connection.send(transaction)
                await pool.release(connection, reusable: true)
                return result
            } catch let failure as SMTPFailure {
                await pool.release(connection, reusable: failure.connectionUsable)
                if reused && !retriedStale && !failure.connectionUsable && !failure.maybeDelivered && failure.error.isRetryable {
                    logger.debug("pooled SMTP connection went stale (\(failure.error.message)); retrying on a new one")
                    retriedStale = true
                    continue
                }
                throw failure.error
            } catch {
                await pool.release(connection, reusable: false)
                throw error
            }
        }
    }

    private func makeTransaction(for notification: HeraldNotification) throws -> (SMTPTransaction, String) {
        var headerTo = to
        if toGuest || notification.routeOptions["toGuest"] == "true", let guest = guestAddress(notification) {
            headerTo.append(guest)
        }
        var seen = Set<String>()
        let recipients = (headerTo + cc + bcc).map(\.address).filter { seen.insert($0.lowercased()).inserted }
        guard !recipients.isEmpty else {
            throw DeliveryError.permanent("no recipients: the booking has no usable guest email and no to, cc or bcc is set")
        }
        let messageID = MIMEMessage.messageID(deliveryKey: notification.deliveryKey, domain: from.domain)
        let invitation = calendar ? ICalendar(notification: notification, organizer: from, attendees: headerTo + cc) : nil
        let message = MIMEMessage(
            from: from, to: headerTo, cc: cc, replyTo: replyTo, subject: notification.title, date: Date(),
            messageID: messageID, text: notification.text, html: notification.html, calendar: invitation)
        return (SMTPTransaction(mailFrom: from.address, recipients: recipients, message: message), messageID)
    }

    private func guestAddress(_ notification: HeraldNotification) -> EmailAddress? {
        guard let contact = notification.event.booking?.contact, let email = contact.email else { return nil }
        guard var guest = try? EmailAddress(parsing: email) else {
            logger.warning("skipping the guest: \"\(email.prefix(80))\" is not a usable email address")
            return nil
        }
        guest.name = contact.name.map(MIMEEncoding.sanitizedHeaderText).flatMap { $0.isEmpty ? nil : $0 }
        return guest
    }

    // MARK: Settings helpers

    private static func address(_ text: String, key: String) throws -> EmailAddress {
        try EmailAddress(parsing: text, key: key)
    }

    private static func duration(_ text: String?, key: String, default value: Duration) throws -> Duration {
        guard let text else { return value }
        return try Setting.duration(text, key: key, in: .milliseconds(1)...(.seconds(86400)))
    }

    private static func tlsContext(_ settings: Settings, context: PluginContext) throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        if settings.insecureSkipVerify == true { tls.certificateVerification = .none }
        if let caFile = settings.caFile {
            let path = context.resolvePath(caFile)
            do {
                let certificates = try NIOSSLCertificate.fromPEMFile(path)
                guard !certificates.isEmpty else { throw ConfigError(key: "caFile", "\(path) holds no PEM certificate") }
                tls.additionalTrustRoots = [.certificates(certificates)]
            } catch let error as ConfigError {
                throw error
            } catch {
                throw ConfigError(key: "caFile", "cannot read PEM certificates from \(path): \(error)")
            }
        }
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw ConfigError(key: "caFile", "cannot set up TLS: \(error)")
        }
    }

    private static func defaultHeloName() -> String {
        let name = ProcessInfo.processInfo.hostName
        return name.isEmpty || name.contains(" ") ? "localhost" : name
    }
}
