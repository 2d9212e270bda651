import ChatNotifiers
import EmailNotifier
import Foundation
import HeraldCore
import NIOCore
import NIOEmbedded

/// Herald's fuzz targets: every parser and encoder that reads what a sender, a target or a
/// configuration file gives it. Each takes arbitrary bytes and must neither crash nor break
/// the invariant it checks (`precondition`, so a broken invariant is a crash libFuzzer
/// reports). `fuzz/run.sh` runs them under libFuzzer with AddressSanitizer; the unit tests
/// replay their seed corpora in the normal build.
public enum FuzzTargets {
    /// A target: its name (`HERALD_FUZZ_TARGET`) and what it does with one input.
    public struct Target: Sendable {
        public let name: String
        public let run: @Sendable (UnsafeRawBufferPointer) -> Void
    }

    public static let all: [Target] = [
        Target(name: "json", run: json),
        Target(name: "signatures", run: signatures),
        Target(name: "jicoo", run: jicoo),
        Target(name: "config", run: config),
        Target(name: "retry-after", run: retryAfter),
        Target(name: "smtp-reply", run: smtpReply),
        Target(name: "mime", run: mime),
    ]

    /// The target called `name`, if any.
    public static func named(_ name: String) -> Target? { all.first { $0.name == name } }

    /// The first line (without its line end) and the rest.
    static func split(_ bytes: UnsafeRawBufferPointer) -> (line: String, rest: Data) {
        guard let lf = bytes.firstIndex(of: 10) else { return (String(decoding: bytes, as: UTF8.self), Data()) }
        var line = bytes[..<lf]
        if line.last == 13 { line = line.dropLast() }
        return (String(decoding: line, as: UTF8.self), Data(bytes[(lf + 1)...]))
    }

    /// The reader accepts or refuses; what it accepts writes back as JSON that reads the same.
    static func json(_ bytes: UnsafeRawBufferPointer) {
        guard let value = try? JSONValue.parse(bytes) else { return }
        let text = value.jsonText
        guard let again = try? JSONValue.parse(Array(text.utf8)) else { preconditionFailure("written JSON does not parse: \(text)") }
        precondition(again == value, "JSON changed on a round trip: \(text)")
    }

    /// Every signature scheme against hostile headers: the first lines are header values, the
    /// rest is the body.
    static func signatures(_ bytes: UnsafeRawBufferPointer) {
        let (first, rest) = split(bytes)
        let (second, body) = rest.withUnsafeBytes { split($0) }
        let secrets = [Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
        let headers = ["jicoo-webhook-signature": first, "x-hub-signature-256": first, "webhook-signature": first,
                       "webhook-id": second, "webhook-timestamp": second]
        for name in SignatureSchemeName.allCases {
            guard let scheme = try? name.makeScheme(secrets: secrets, tolerance: 300, header: nil) else {
                preconditionFailure("the fuzz secret is refused by \(name)")
            }
            _ = try? scheme.verify(body: body, header: { headers[$0.lowercased()] }, now: 1_767_225_600)
        }
    }

    static let renderer = try? Renderer()

    /// Routes with every kind of condition, for events made of hostile bodies.
    static let routes = try? RouteTable(routes: loader.load(yaml: """
        endpoints: [{ path: /fuzz, secrets: [x] }]
        notifiers: { a: { kind: smtp, host: localhost, from: a@example.com, to: [b@example.com] } }
        routes:
          - { events: ["*"], notify: [a], continue: true, eventType: [et_1], status: open, guestEmail: "*@example.jp" }
          - { events: ["guest_*"], notify: [a], continue: true, tracking: { utm_source: "tw*" },
              answers: [{ question: "*", regex: "^(a|b)+$" }, { question: q, contains: x }] }
          - { events: ["*"], notify: [a], where: [{ path: "object.answers[0].content", in: [a, b] },
              { path: a.b.c, glob: "x*y" }, { path: object.uid, regex: "^bk_" }, { path: x, exists: true }] }
        """).routes)

    /// Decodes a body as each source would, builds its dedupe key, routes it through every
    /// kind of condition, and renders it in both locales with HTML: hostile field values must
    /// not break a template.
    static func jicoo(_ bytes: UnsafeRawBufferPointer) {
        let body = Data(bytes)
        sameAsTheTree(body)
        for source in EventSource.allCases {
            guard let event = try? source.decode(body: body, endpoint: "/fuzz", receivedAt: Date(timeIntervalSince1970: 1_767_225_600))
            else { continue }
            _ = source.dedupeKey(for: event)
            precondition(routes != nil, "the fuzz routes do not load")
            _ = routes?.explain(event)
            for locale in HeraldLocale.allCases {
                let n = renderer?.render(event, locale: locale, html: true)
                precondition(n.map { !$0.title.contains("\n") } ?? true, "a title holds a line break")
            }
        }
    }

    /// The Jicoo decoder reads its fields straight from the bytes, building nothing else: a
    /// body must be refused for the same reason as by the whole parse, and a booking read
    /// from it must equal the one read from the parsed `object`.
    static func sameAsTheTree(_ body: Data) {
        let decoded = Result { () throws(DecodeError) in
            try EventSource.jicoo.decode(body: body, endpoint: "/fuzz", receivedAt: Date(timeIntervalSince1970: 1_767_225_600))
        }
        let payload: JSONValue
        do {
            payload = try JSONValue.parse(body)
        } catch {
            guard case .failure(let refused) = decoded, refused.reason == error.reason else {
                preconditionFailure("the parse refuses the body (\(error.reason)), the Jicoo reader says \(decoded)")
            }
            return
        }
        guard case .success(let event) = decoded else { return }
        precondition(event.payload == payload, "the event's payload is not the body parsed")
        var warnings: [String] = []
        let object = payload["object"]
        let booking = object.flatMap { value -> Booking? in
            guard case .object = value else { return nil }
            return Booking(json: value, warnings: &warnings)
        }
        precondition(event.booking == booking, "the Jicoo reader's booking differs from the parsed object's")
        precondition(event.name == payload["event"]?.stringValue, "the Jicoo reader's event name differs")
    }

    /// The built-in notifier kinds but `file`, whose start-up check touches the disk.
    static let loader = ConfigLoader(registry: try! PluginRegistry([EmailNotifier.self] + ChatNotifierKinds.all),
                                     environment: ["FUZZ": "x"])

    /// The YAML configuration loader: any text is a configuration or a located error.
    static func config(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count <= 64 * 1024 else { return }
        _ = try? loader.load(yaml: String(decoding: bytes, as: UTF8.self), file: "fuzz.yaml", baseDirectory: "/nonexistent")
    }

    /// A target's reply: `Retry-After` header value (first line) and body.
    static func retryAfter(_ bytes: UnsafeRawBufferPointer) {
        let (header, body) = split(bytes)
        for h in [header, nil] {
            if let wait = HTTPSender.retryAfter(header: h, body: body, now: Date(timeIntervalSince1970: 1_767_225_600)) {
                precondition(wait >= .zero && wait <= .longest, "Retry-After out of range: \(wait)")
            }
        }
    }

    /// An SMTP server's byte stream, through the same decoder the client uses.
    static func smtpReply(_ bytes: UnsafeRawBufferPointer) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(SMTPReplyDecoder()))
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        _ = try? channel.writeInbound(buffer)
        while let reply = try? channel.readInbound(as: SMTPReply.self) {
            precondition((0...999).contains(reply.code), "reply code \(reply.code)")
        }
        _ = try? channel.finish()
    }

    /// Header and body encoders with hostile text: no bare CR or LF, no line past 998 bytes.
    static func mime(_ bytes: UnsafeRawBufferPointer) {
        let text = String(decoding: bytes, as: UTF8.self)
        checkLines(MIMEEncoding.foldedHeader("Subject", words: MIMEEncoding.unstructuredWords(text)), "header")
        checkLines(MIMEEncoding.encodeBody(text, as: MIMEEncoding.preferredEncoding(for: text)) + [13, 10], "body")
        // DATA gets an encoded message, whose lines are already short: only line ends count.
        let payload = MIMEEncoding.dataPayload(Array(bytes))
        checkLines(payload, "DATA", maxLength: .max)
        precondition(payload.suffix(5) == [13, 10, 46, 13, 10] || payload == [46, 13, 10], "DATA does not end with CRLF.CRLF")
    }

    /// Every line ends in CRLF and holds at most `maxLength` bytes (998: RFC 5322 §2.1.1).
    static func checkLines(_ bytes: [UInt8], _ what: String, maxLength: Int = 998) {
        var length = 0
        var i = 0
        while i < bytes.count {
            switch bytes[i] {
            case 13:
                precondition(i + 1 < bytes.count && bytes[i + 1] == 10, "\(what): a bare CR")
                length = 0
                i += 2
                continue
            case 10:
                preconditionFailure("\(what): a bare LF")
            default:
                length += 1
                precondition(length <= maxLength, "\(what): a line longer than \(maxLength) bytes")
            }
            i += 1
        }
    }
}
