import Foundation
import HeraldPlugin
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// How to reach and log in to one SMTP server; built once from the settings.
struct SMTPClientConfiguration: Sendable {
    var host: String
    var port: Int
    var security: SMTPSecurity
    /// The client TLS context (trust roots, verification), nil only for `security: none`.
    var tls: NIOSSLContext?
    var username: String?
    var password: String?
    var allowPlaintextAuth: Bool
    var heloName: String
    var connectTimeout: Duration
    var commandTimeout: Duration
    var messageTimeout: Duration

    /// `host:port`, for messages.
    var server: String { "\(host):\(port)" }

    /// The SNI name: the host unless it is an IP literal (SNI must not carry addresses; the
    /// certificate is then checked against the IP address).
    var serverHostname: String? {
        (try? SocketAddress(ipAddress: host, port: 0)) == nil ? host : nil
    }
}

/// One message to send: envelope and content.
struct SMTPTransaction: Sendable {
    var mailFrom: String
    var recipients: [String]
    var message: MIMEMessage
}

/// What the server did with one message's recipients.
struct SMTPTransactionResult: Sendable {
    var accepted: [String]
    /// Recipients the server refused, with its reply, e.g. `("x@example.com", "550 …")`.
    var rejected: [(address: String, reply: String)]
}

/// An SMTP session on one connection (RFC 5321), from greeting to QUIT.
///
/// It lives inside `NIOAsyncChannel.executeThenClose` in the task that owns the connection
/// (see ``SMTPConnection``), so it is a plain struct with mutating methods. The pipeline is
/// `[NIOSSLClientHandler] → ByteToMessageHandler(SMTPReplyDecoder) → NIOAsyncChannel`; for
/// STARTTLS the TLS handler is inserted at the front of the live pipeline after the server's
/// 220, which works because nothing else is in flight at that moment.
struct SMTPSession {
    typealias AsyncChannel = NIOAsyncChannel<SMTPReply, ByteBuffer>

    let config: SMTPClientConfiguration
    let channel: any Channel
    var inbound: NIOAsyncChannelInboundStream<SMTPReply>.AsyncIterator
    let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    let logger: Logger
    private(set) var capabilities = SMTPCapabilities()
    private(set) var isTLS: Bool
    private(set) var transactions = 0

    init(config: SMTPClientConfiguration, channel: any Channel,
         inbound: NIOAsyncChannelInboundStream<SMTPReply>, outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
         logger: Logger) {
        self.config = config
        self.channel = channel
        self.inbound = inbound.makeAsyncIterator()
        self.outbound = outbound
        self.logger = logger
        self.isTLS = config.security == .tls
    }

    /// Opens the TCP connection (with TLS from the first byte for `security: tls`).
    static func connect(_ config: SMTPClientConfiguration) async throws -> AsyncChannel {
        let tls = config.security == .tls ? config.tls : nil
        let hostname = config.serverHostname
        return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.nanoseconds(config.connectTimeout.saturatingNanoseconds))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: config.host, port: config.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: hostname))
                    }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(SMTPReplyDecoder()))
                    return try AsyncChannel(wrappingChannelSynchronously: channel)
                }
            }
    }

    // MARK: Session setup

    /// Greeting, EHLO (or HELO), STARTTLS and a fresh EHLO, then AUTH when a user is set.
    mutating func open() async throws {
        let greeting = try await readReply("greeting")
        guard greeting.code == 220 else { throw SMTPFailure.reply(greeting, to: "the connection", server: config.server) }
        try await hello()
        if config.security == .starttls {
            guard capabilities.startTLS else {
                throw SMTPFailure(error: .configuration("\(config.server) does not offer STARTTLS; use security: tls "
                    + "if it expects TLS from the start (port 465), or security: none only on a trusted network"),
                    connectionUsable: false)
            }
            try await expect(220, after: "STARTTLS")
            try await startTLS()
            try await hello()
        }
        if config.username != nil { try await authenticate() }
    }

    private mutating func hello() async throws {
        let ehlo = try await command("EHLO \(config.heloName)")
        if ehlo.code == 250 {
            capabilities = SMTPCapabilities(ehlo: ehlo)
            return
        }
        guard ehlo.code >= 500 else { throw SMTPFailure.reply(ehlo, to: "EHLO", server: config.server) }
        try await expect(250, after: "HELO \(config.heloName)")
        capabilities = SMTPCapabilities()
    }

    private mutating func startTLS() async throws {
        guard let context = config.tls else { return }
        let hostname = config.serverHostname
        let channel = self.channel
        try await channel.eventLoop.submit {
            let handler = try NIOSSLClientHandler(context: context, serverHostname: hostname)
            try channel.pipeline.syncOperations.addHandler(handler, position: .first)
        }.get()
        isTLS = true
    }

    /// AUTH PLAIN or LOGIN, whichever the server offers (PLAIN first: one round trip).
    /// Credentials never go over an unencrypted connection unless the settings say so, and
    /// the AUTH lines are never logged.
    private mutating func authenticate() async throws {
        guard let user = config.username, let password = config.password else { return }
        guard isTLS || config.allowPlaintextAuth else {
            throw SMTPFailure(error: .configuration("refusing to send the password for \(user) to \(config.server) without TLS; "
                + "use security: starttls or tls"), connectionUsable: false)
        }
        let mechanisms = capabilities.authMechanisms
        let reply: SMTPReply
        if mechanisms.contains("PLAIN") {
            let token = Data(([0] + Array(user.utf8) + [0] + Array(password.utf8))).base64EncodedString()
            reply = try await command("AUTH PLAIN \(token)", redacted: "AUTH PLAIN <redacted>")
        } else if mechanisms.contains("LOGIN") {
            var step = try await command("AUTH LOGIN")
            if step.code == 334 { step = try await command(Data(user.utf8).base64EncodedString(), redacted: "<redacted>") }
            if step.code == 334 { step = try await command(Data(password.utf8).base64EncodedString(), redacted: "<redacted>") }
            reply = step
        } else {
            let offered = mechanisms.isEmpty ? "none" : mechanisms.sorted().joined(separator: " ")
            throw SMTPFailure(error: .configuration("\(config.server) offers no AUTH mechanism Herald supports "
                + "(offered: \(offered); supported: PLAIN, LOGIN)"), connectionUsable: false)
        }
        guard reply.code != 235 else { return }
        if reply.isTransient {
            throw SMTPFailure(error: .retryable("authentication for user \(user) at \(config.server) failed temporarily: \(reply.summary)"),
                              connectionUsable: false)
        }
        throw SMTPFailure(error: .configuration("authentication failed for user \(user) at \(config.server): \(reply.summary)"),
                          connectionUsable: false)
    }

    // MARK: Mail transaction

    /// Sends one message (RSET first when the session has carried one before). Recipients
    /// the server refuses are reported in the result; if it refuses all of them, this throws.
    mutating func send(_ transaction: SMTPTransaction) async throws -> SMTPTransactionResult {
        let timer = Deadline(channel: channel, after: config.messageTimeout)
        defer { timer.cancel() }
        do {
            return try await sendUnbounded(transaction)
        } catch where timer.fired {
            throw SMTPFailure(error: .retryable("\(config.server) did not take the message within \(config.messageTimeout) (messageTimeout)"),
                              connectionUsable: false, maybeDelivered: (error as? SMTPFailure)?.maybeDelivered ?? false)
        }
    }

    private mutating func sendUnbounded(_ transaction: SMTPTransaction) async throws -> SMTPTransactionResult {
        if transactions > 0 { try await expect(250, after: "RSET") }
        transactions += 1
        let needsUTF8 = ([transaction.mailFrom] + transaction.recipients).contains { $0.utf8.contains { $0 >= 0x80 } }
        if needsUTF8 && !capabilities.smtpUTF8 {
            throw SMTPFailure(error: .permanent("\(config.server) does not offer SMTPUTF8, needed for a non-ASCII address"),
                              connectionUsable: true)
        }
        let eightBit = capabilities.eightBitMIME
        let payload = MIMEEncoding.dataPayload(transaction.message.render(eightBit: eightBit))
        var mail = "MAIL FROM:<\(transaction.mailFrom)>"
        if let limit = capabilities.maxSize {
            if limit > 0 && payload.count > limit {
                throw SMTPFailure(error: .permanent("the message (\(payload.count) bytes) exceeds the size limit of \(config.server) (\(limit) bytes)"),
                                  connectionUsable: true)
            }
            mail += " SIZE=\(payload.count)"
        }
        if eightBit { mail += " BODY=8BITMIME" }
        if needsUTF8 { mail += " SMTPUTF8" }
        try await expect(250, after: mail, what: "the sender <\(transaction.mailFrom)>")

        var result = SMTPTransactionResult(accepted: [], rejected: [])
        for recipient in transaction.recipients {
            let reply = try await command("RCPT TO:<\(recipient)>")
            if reply.code == 250 || reply.code == 251 {
                result.accepted.append(recipient)
            } else if reply.code == 421 {
                throw SMTPFailure.reply(reply, to: "the recipient <\(recipient)>", server: config.server)
            } else {
                result.rejected.append((recipient, reply.summary))
            }
        }
        guard !result.accepted.isEmpty else {
            let list = result.rejected.map { "<\($0.address)>: \($0.reply)" }.joined(separator: "; ")
            let message = "\(config.server) refused every recipient: \(list)"
            let transient = result.rejected.contains { $0.reply.hasPrefix("4") }
            throw SMTPFailure(error: transient ? .retryable(message) : .permanent(message), connectionUsable: true)
        }
        try await expect(354, after: "DATA")
        try await write(ByteBuffer(bytes: payload))
        logger.trace("C: <message, \(payload.count) bytes>")
        let final: SMTPReply
        do {
            final = try await readReply("end of DATA")
        } catch {
            var failure = SMTPFailure.from(error, server: config.server, stage: "end of DATA")
            failure.maybeDelivered = true
            throw failure
        }
        guard final.code == 250 else { throw SMTPFailure.reply(final, to: "the message", server: config.server) }
        return result
    }

    /// QUIT, politely, without waiting long for the answer.
    mutating func quit() async {
        _ = try? await command("QUIT")
    }

    // MARK: Commands and replies

    /// Sends `line` and reads the reply. `redacted` is what the trace log shows instead.
    private mutating func command(_ line: String, redacted: String? = nil) async throws -> SMTPReply {
        logger.trace("C: \(redacted ?? line)")
        try await write(ByteBuffer(string: line + "\r\n"))
        return try await readReply(redacted ?? line)
    }

    /// Sends `line` and throws unless the reply code is `code`.
    private mutating func expect(_ code: Int, after line: String, what: String? = nil) async throws {
        let reply = try await command(line)
        guard reply.code == code else {
            throw SMTPFailure.reply(reply, to: what ?? String(line.prefix(40)), server: config.server)
        }
    }

    /// Writes to the server. A failed write means the connection is closing; the reason
    /// (e.g. the TLS alert behind a failed handshake) waits in the inbound stream, so it is
    /// read from there when it can be.
    private mutating func write(_ buffer: ByteBuffer) async throws {
        do {
            try await outbound.write(buffer)
        } catch {
            var cause: any Error = error
            let timer = Deadline(channel: channel, after: config.commandTimeout)
            defer { timer.cancel() }
            do {
                while try await inbound.next() != nil {}
            } catch let inboundError {
                cause = inboundError
            }
            throw SMTPFailure.from(cause, server: config.server, stage: "sending")
        }
    }

    /// The next reply, within `commandTimeout`. A closed connection is a retryable failure.
    private mutating func readReply(_ stage: String) async throws -> SMTPReply {
        let timer = Deadline(channel: channel, after: config.commandTimeout)
        defer { timer.cancel() }
        let reply: SMTPReply?
        do {
            reply = try await inbound.next()
        } catch {
            if timer.fired { throw timeout(stage) }
            throw SMTPFailure.from(error, server: config.server, stage: stage)
        }
        guard let reply else {
            if timer.fired { throw timeout(stage) }
            throw SMTPFailure(error: .retryable("\(config.server) closed the connection (waiting for the reply to \(stage))"),
                              connectionUsable: false)
        }
        logger.trace("S: \(reply.code) \(reply.lines.joined(separator: " | "))")
        return reply
    }

    private func timeout(_ stage: String) -> SMTPFailure {
        SMTPFailure(error: .retryable("\(config.server) did not reply to \(stage) within \(config.commandTimeout) (commandTimeout)"),
                    connectionUsable: false)
    }
}

/// Closes a channel when time runs out, so that whatever waits on it fails promptly; the
/// caller then sees ``fired`` and reports a timeout instead of a closed connection.
struct Deadline {
    private let flag: Flag
    private let task: Scheduled<Void>

    init(channel: any Channel, after limit: Duration) {
        let flag = Flag()
        self.flag = flag
        task = channel.eventLoop.scheduleTask(in: .nanoseconds(min(limit, .seconds(86_400)).saturatingNanoseconds)) {
            flag.set()
            channel.close(promise: nil)
        }
    }

    var fired: Bool { flag.value }

    func cancel() { task.cancel() }

    private final class Flag: Sendable {
        private let atomic = Atomic<Bool>(false)
        func set() { atomic.store(true, ordering: .relaxed) }
        var value: Bool { atomic.load(ordering: .relaxed) }
    }
}
