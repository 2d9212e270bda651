import HeraldPlugin
import NIOCore
import NIOPosix
import NIOSSL

/// One SMTP reply: a three-digit code and its text lines (RFC 5321 §4.2), multi-line
/// replies (`250-…` continuation lines) already joined.
package struct SMTPReply: Sendable, Equatable {
    package var code: Int
    package var lines: [String]

    var isPositive: Bool { (200..<400).contains(code) }
    var isTransient: Bool { (400..<500).contains(code) }

    /// `550 5.1.1 no such user` — the first line and code, short enough for an error.
    var summary: String {
        let text = lines.first ?? ""
        return "\(code) \(text.prefix(200))"
    }
}

/// Splits the byte stream from the server into ``SMTPReply`` values.
///
/// Lines end in CRLF (a bare LF is accepted). A line is `ddd-text` when more lines of the
/// same reply follow and `ddd text` (or just `ddd`) on the last one.
package struct SMTPReplyDecoder: ByteToMessageDecoder {
    package typealias InboundOut = SMTPReply

    /// Longer lines are a protocol error rather than a reason to buffer without bound.
    static let maxLineLength = 4096

    private var lines: [String] = []

    package init() {}

    package mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let view = buffer.readableBytesView
        guard let lf = view.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > Self.maxLineLength { throw SMTPProtocolError(reason: "reply line too long") }
            return .needMoreData
        }
        let length = view.distance(from: view.startIndex, to: lf) + 1
        var bytes = buffer.readBytes(length: length) ?? []
        bytes.removeLast()
        if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
        guard bytes.count >= 3, bytes[0..<3].allSatisfy({ (48...57).contains($0) }),
              bytes.count == 3 || bytes[3] == UInt8(ascii: " ") || bytes[3] == UInt8(ascii: "-")
        else {
            throw SMTPProtocolError(reason: "malformed reply line \"\(String(decoding: bytes.prefix(80), as: UTF8.self))\"")
        }
        let code = Int(bytes[0] - 48) * 100 + Int(bytes[1] - 48) * 10 + Int(bytes[2] - 48)
        lines.append(bytes.count > 4 ? String(decoding: bytes[4...], as: UTF8.self) : "")
        if bytes.count == 3 || bytes[3] == UInt8(ascii: " ") {
            context.fireChannelRead(wrapInboundOut(SMTPReply(code: code, lines: lines)))
            lines = []
        }
        return .continue
    }

    package mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// The server sent something that is not SMTP.
struct SMTPProtocolError: Error, Sendable {
    var reason: String
}

/// What the server offers in its EHLO reply (RFC 5321 §4.1.1.1 and the extensions' RFCs).
struct SMTPCapabilities: Sendable, Equatable {
    var startTLS = false
    /// Upper-cased SASL mechanisms from the `AUTH` line, e.g. `["PLAIN", "LOGIN"]`.
    var authMechanisms: Set<String> = []
    /// The `SIZE` limit in octets; nil when not offered, 0 when offered without a limit.
    var maxSize: Int?
    var eightBitMIME = false
    var smtpUTF8 = false

    init() {}

    /// Reads the EHLO reply: the first line greets, each further line is one keyword and its
    /// parameters.
    init(ehlo reply: SMTPReply) {
        for line in reply.lines.dropFirst() {
            let words = line.split(separator: " ").map { $0.uppercased() }
            guard let keyword = words.first else { continue }
            switch keyword {
            case "STARTTLS": startTLS = true
            case "AUTH": authMechanisms.formUnion(words.dropFirst())
            case "SIZE": maxSize = words.count > 1 ? Int(words[1]) ?? 0 : 0
            case "8BITMIME": eightBitMIME = true
            case "SMTPUTF8": smtpUTF8 = true
            default:
                // Old servers write `AUTH=LOGIN PLAIN`.
                if keyword.hasPrefix("AUTH=") {
                    authMechanisms.insert(String(keyword.dropFirst(5)))
                    authMechanisms.formUnion(words.dropFirst())
                }
            }
        }
    }
}

/// A failed SMTP attempt, with what the connection and the dispatcher should do next.
struct SMTPFailure: Error, Sendable {
    /// What the dispatcher is told.
    var error: DeliveryError
    /// The session is still in step with the server and can carry another message after RSET.
    var connectionUsable: Bool
    /// The end of DATA was sent but no reply came: the server may have accepted the message,
    /// so it must not be resent at once on another connection (the dispatcher's later retry
    /// carries the same Message-ID, which makes a duplicate recognisable).
    var maybeDelivered = false

    /// A refused command: 4xx are retryable, 5xx permanent; 421 also means the server is
    /// closing the connection (RFC 5321 §3.8).
    static func reply(_ reply: SMTPReply, to what: String, server: String) -> SMTPFailure {
        let message = "\(server) refused \(what): \(reply.summary)"
        return SMTPFailure(
            error: reply.isTransient ? .retryable(message) : .permanent(message),
            connectionUsable: reply.code != 421)
    }

    /// A network, TLS or protocol error, as something a user can act on.
    static func from(_ error: any Error, server: String, stage: String) -> SMTPFailure {
        if let failure = error as? SMTPFailure { return failure }
        let message: DeliveryError
        switch error {
        case let tls as NIOSSLError:
            message = tlsFailure(tls, server: server)
        case let extra as NIOSSLExtraError where extra == .failedToValidateHostname:
            message = .configuration("TLS handshake with \(server) failed: the certificate does not match the host name; "
                + "connect using a name the certificate lists (host), or set insecureSkipVerify: true for testing only")
        case let extra as NIOSSLExtraError:
            message = .configuration("TLS setup for \(server) failed: \(extra)")
        case let proto as SMTPProtocolError:
            message = .retryable("\(server) \(stage): \(proto.reason)")
        case ChannelError.connectTimeout:
            message = .retryable("cannot connect to \(server): connection timed out (connectTimeout)")
        case let connect as NIOConnectionError:
            if let io = connect.connectionErrors.lazy.compactMap({ $0.error as? IOError }).first {
                message = .retryable(SystemErrorText.connectFailure(errno: io.errnoCode, target: server))
            } else if let dns = connect.dnsAError ?? connect.dnsAAAAError {
                message = .retryable("cannot connect to \(server): the name does not resolve (\(dns))")
            } else {
                message = .retryable("cannot connect to \(server): \(error)")
            }
        case let io as IOError:
            message = .retryable("connection to \(server) failed during \(stage): \(SystemErrorText.reason(io.errnoCode))")
        default:
            message = .retryable("connection to \(server) failed during \(stage): \(error)")
        }
        return SMTPFailure(error: message, connectionUsable: false)
    }

    private static func tlsFailure(_ error: NIOSSLError, server: String) -> DeliveryError {
        let text = "\(error)"
        switch error {
        case .uncleanShutdown:
            return .retryable("\(server) closed the TLS connection unexpectedly")
        case .handshakeFailed where text.contains("CERTIFICATE_VERIFY_FAILED"):
            return .configuration("TLS handshake with \(server) failed: certificate not trusted; "
                + "set caFile to the CA that signed the server's certificate, or insecureSkipVerify: true for testing only")
        case .handshakeFailed:
            return .configuration("TLS handshake with \(server) failed (\(text)); check security (starttls for port 587, tls for 465) and port")
        default:
            return .configuration("TLS with \(server) failed: \(text)")
        }
    }
}
