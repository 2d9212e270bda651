import Foundation
import HeraldCore
import HeraldTesting
import Testing
@testable import EmailNotifier

/// End-to-end: the notifier against a real SMTP server (aiosmtpd), whose Python email
/// package decodes what arrived.
@Suite(.timeLimit(.minutes(1)))
struct SMTPDeliveryTests {
    @Test func deliversAJapaneseBookingWithBothBodiesAndACalendar() async throws {
        try await withSMTPServer { server in
            let notifier = try EmailNotifier(
                settings: Fixtures.settings(port: server.port) { $0.toGuest = true; $0.calendar = true; $0.replyTo = "support@example.com" },
                context: Fixtures.context())
            let notification = try Fixtures.notification()
            let report = try await notifier.send(notification)
            await notifier.shutdown()

            let message = try #require(try server.messages().first)
            #expect(message.mailFrom == "bot@example.com")
            #expect(message.rcptTos == ["ops@example.com", "hanako@example.com", "taro.yamada@example.jp",
                                        "ichiro@example.com", "audit@example.com"])
            #expect(report.accepted == message.rcptTos)
            #expect(message.mailOptions.contains { $0.hasPrefix("SIZE=") })
            #expect(message.mailOptions.contains("BODY=8BITMIME"))
            #expect(message.parsed.defects.isEmpty)

            #expect(message.header("subject") == notification.title)
            #expect(message.header("from") == "Herald 通知 <bot@example.com>")
            #expect(message.header("to") == "Ops Team <ops@example.com>, \"Sato, Hanako\" <hanako@example.com>, 山田 太郎 <taro.yamada@example.jp>")
            #expect(message.header("cc") == "鈴木 一郎 <ichiro@example.com>")
            #expect(message.header("reply-to") == "support@example.com")
            #expect(message.header("bcc") == nil)
            #expect(message.header("mime-version") == "1.0")
            #expect(message.header("message-id") == report.messageID)
            #expect(message.header("date")?.hasSuffix("+0000") == true)

            // Headers are 7-bit, folded, and no line is longer than 78 characters.
            let headerBlock = try #require(message.rawText.components(separatedBy: "\r\n\r\n").first)
            for line in headerBlock.components(separatedBy: "\r\n") {
                #expect(line.utf8.count <= 78, "header line too long: \(line)")
                #expect(line.utf8.allSatisfy { $0 < 0x80 })
            }

            #expect(message.parsed.parts.map(\.type) == [
                "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "text/calendar", "application/ics",
            ])
            let text = try #require(message.part("text/plain")?.content)
            #expect(text.replacingOccurrences(of: "\r\n", with: "\n") == notification.text)
            let html = try #require(message.part("text/html")?.content)
            #expect(html.replacingOccurrences(of: "\r\n", with: "\n") == notification.html)
            let calendarPart = try #require(message.part("text/calendar"))
            #expect(calendarPart.params["method"] == "REQUEST")
            #expect(message.part("application/ics")?.disposition == "attachment")

            let calendar = try CalendarLines(try #require(calendarPart.content))
            #expect(calendar.value("METHOD") == "REQUEST")
            #expect(calendar.value("UID") == "bk_7Qx2mZp9@herald")
            #expect(calendar.value("DTSTART") == "20261127T050000Z")
            #expect(calendar.value("DTEND") == "20261127T060000Z")
            #expect(calendar.value("DTSTAMP") == "20261120T011542Z")
            #expect(calendar.value("SUMMARY") == ICalendar.escapeText(notification.title))
            #expect(calendar.value("ORGANIZER") == "mailto:bot@example.com")
            #expect(calendar.values("ATTENDEE").contains("mailto:taro.yamada@example.jp"))
            #expect(calendar.value("STATUS") == "CONFIRMED")
            #expect(Int(calendar.value("SEQUENCE") ?? "") == 217_300_542)
            #expect(message.part("application/ics")?.content == calendarPart.content)
        }
    }

    @Test func sendsASingleTextPartWhenThereIsNoHTML() async throws {
        try await withSMTPServer { server in
            let notifier = try EmailNotifier(settings: Fixtures.settings(port: server.port), context: Fixtures.context())
            try await notifier.deliver(try Fixtures.notification(html: false))
            await notifier.shutdown()
            let message = try #require(try server.messages().first)
            #expect(message.parsed.parts.map(\.type) == ["text/plain"])
            #expect(message.part("text/plain")?.params["charset"]?.lowercased() == "utf-8")
        }
    }

    @Test func resendsKeepTheMessageIDAndReuseTheConnection() async throws {
        try await withSMTPServer { server in
            let notifier = try EmailNotifier(settings: Fixtures.settings(port: server.port), context: Fixtures.context())
            let first = try await notifier.send(try Fixtures.notification(deliveryKey: "evt_1|mail"))
            let again = try await notifier.send(try Fixtures.notification(deliveryKey: "evt_1|mail"))
            let other = try await notifier.send(try Fixtures.notification(deliveryKey: "evt_2|mail"))
            await notifier.shutdown()
            #expect(first.messageID == again.messageID)
            #expect(first.messageID != other.messageID)
            let messages = try server.messages()
            #expect(messages.map { $0.header("message-id") } == [first.messageID, first.messageID, other.messageID])
            #expect(Set(messages.map(\.peerPort)).count == 1, "all three should use one pooled connection")
        }
    }

    @Test func cancellationsCarryAMethodCancelCalendar() async throws {
        try await withSMTPServer { server in
            let notifier = try EmailNotifier(settings: Fixtures.settings(port: server.port) { $0.calendar = true },
                                             context: Fixtures.context())
            try await notifier.deliver(try Fixtures.notification("guest_cancelled", kind: .cancelled))
            await notifier.shutdown()
            let message = try #require(try server.messages().first)
            let part = try #require(message.part("text/calendar"))
            #expect(part.params["method"] == "CANCEL")
            let calendar = try CalendarLines(try #require(part.content))
            #expect(calendar.value("METHOD") == "CANCEL")
            #expect(calendar.value("STATUS") == "CANCELLED")
        }
    }

    /// `herald render` shows the envelope, headers and invitation that are then sent; the
    /// preview itself connects to nothing (the server has no message before deliver).
    @Test func previewIsTheMessageSent() async throws {
        try await withSMTPServer { server in
            let notifier = try EmailNotifier(settings: Fixtures.settings(port: server.port) { $0.calendar = true },
                                             context: Fixtures.context())
            let notification = try Fixtures.notification("guest_cancelled", kind: .cancelled)
            let preview = try #require(try notifier.preview(notification))
            #expect(try server.messages().isEmpty)
            try await notifier.deliver(notification)
            await notifier.shutdown()
            let message = try #require(try server.messages().first)
            #expect(preview.headers.first == DeliveryPreview.Header("MAIL FROM", "<\(message.mailFrom)>"))
            #expect(preview.headers.dropFirst().map(\.value) == message.rcptTos.map { "<\($0)>" })
            let shown = try #require(preview.parts.first { $0.name == "message" }).content
            for name in ["Subject", "From", "To", "Message-ID"] {
                let line = try #require(shown.components(separatedBy: "\r\n").first { $0.hasPrefix("\(name): ") })
                #expect(message.rawText.contains(line), "\(line)")
            }
            let ics = try #require(preview.parts.first { $0.name == "invite.ics" })
            #expect(ics.contentType == "text/calendar; method=CANCEL")
            let sent = try #require(message.part("text/calendar")?.content)
            #expect(ics.content.replacingOccurrences(of: "\r", with: "") == sent.replacingOccurrences(of: "\r", with: ""))
        }
    }

    @Test func routeOptionAddsTheGuest() async throws {
        try await withSMTPServer { server in
            let notifier = try EmailNotifier(settings: Fixtures.settings(port: server.port) { $0.cc = nil; $0.bcc = nil },
                                             context: Fixtures.context())
            try await notifier.deliver(try Fixtures.notification(routeOptions: ["toGuest": "true"]))
            try await notifier.deliver(try Fixtures.notification())
            await notifier.shutdown()
            let messages = try server.messages()
            #expect(messages.map(\.rcptTos) == [
                ["ops@example.com", "hanako@example.com", "taro.yamada@example.jp"],
                ["ops@example.com", "hanako@example.com"],
            ])
        }
    }

    @Test(arguments: ["PLAIN", "LOGIN"])
    func startTLSWithAuthentication(mechanism: String) async throws {
        let hidden = mechanism == "PLAIN" ? "LOGIN" : "PLAIN"
        let args = try await tlsArguments("starttls") + ["--auth", "bot@example.com:s3cret", "--auth-exclude", hidden]
        try await withSMTPServer(args) { server in
            let notifier = try await EmailNotifier(settings: Fixtures.tlsSettings(port: server.port, security: .starttls, host: "localhost"),
                                             context: Fixtures.context())
            try await notifier.deliver(try Fixtures.notification())
            await notifier.shutdown()
            #expect(try server.messages().count == 1)
        }
    }

    @Test func implicitTLSWithAuthentication() async throws {
        let args = try await tlsArguments("tls") + ["--auth", "bot@example.com:s3cret"]
        try await withSMTPServer(args) { server in
            let notifier = try await EmailNotifier(settings: Fixtures.tlsSettings(port: server.port, security: .tls),
                                             context: Fixtures.context())
            try await notifier.deliver(try Fixtures.notification())
            try await notifier.deliver(try Fixtures.notification())
            await notifier.shutdown()
            #expect(try server.messages().count == 2)
        }
    }

    @Test func wrongPasswordIsAConfigurationErrorWithoutThePassword() async throws {
        let args = try await tlsArguments("starttls") + ["--auth", "bot@example.com:s3cret"]
        try await withSMTPServer(args) { server in
            let notifier = try await EmailNotifier(settings: Fixtures.tlsSettings(port: server.port, security: .starttls, password: "wrong-password"),
                                             context: Fixtures.context())
            let error = try #require(await DeliveryError.thrown { try await notifier.deliver(try Fixtures.notification()) })
            await notifier.shutdown()
            #expect(error.disposition == .configuration)
            #expect(error.message.contains("authentication failed for user bot@example.com"))
            #expect(error.message.contains("535"))
            #expect(!error.message.contains("wrong-password"))
            #expect(try server.messages().isEmpty)
        }
    }

    @Test func untrustedCertificateIsAConfigurationError() async throws {
        try await withSMTPServer(try await tlsArguments("starttls")) { server in
            let notifier = try EmailNotifier(settings: Fixtures.settings(port: server.port) { $0.security = .starttls },
                                             context: Fixtures.context())
            let error = try #require(await DeliveryError.thrown { try await notifier.deliver(try Fixtures.notification()) })
            await notifier.shutdown()
            #expect(error.disposition == .configuration)
            #expect(error.message.contains("certificate not trusted"))
            #expect(error.message.contains("caFile"))
        }
    }

    @Test func startTLSRequiredButNotOffered() async throws {
        try await withSMTPServer { server in
            let notifier = try EmailNotifier(settings: Fixtures.settings(port: server.port) { $0.security = .starttls },
                                             context: Fixtures.context())
            let error = try #require(await DeliveryError.thrown { try await notifier.deliver(try Fixtures.notification()) })
            await notifier.shutdown()
            #expect(error.disposition == .configuration)
            #expect(error.message.contains("does not offer STARTTLS"))
        }
    }

    @Test func someRecipientsRefused() async throws {
        try await withSMTPServer(["--reject", "hanako@example.com"]) { server in
            let notifier = try EmailNotifier(settings: Fixtures.settings(port: server.port), context: Fixtures.context())
            let report = try await notifier.send(try Fixtures.notification())
            await notifier.shutdown()
            #expect(report.rejected.map(\.address) == ["hanako@example.com"])
            #expect(report.rejected.first?.reply.hasPrefix("550") == true)
            #expect(try server.messages().map(\.rcptTos) == [["ops@example.com", "ichiro@example.com", "audit@example.com"]])
        }
    }

    @Test func everyRecipientRefusedIsPermanent() async throws {
        try await withSMTPServer(["--reject", "ops@example.com"]) { server in
            let notifier = try EmailNotifier(settings: Fixtures.settings(port: server.port) { $0.to = ["ops@example.com"]; $0.cc = nil; $0.bcc = nil },
                                             context: Fixtures.context())
            let error = try #require(await DeliveryError.thrown { try await notifier.deliver(try Fixtures.notification()) })
            #expect(error.disposition == .permanent)
            #expect(error.message.contains("550"))
            // The connection stays usable: the next message goes through after RSET.
            try await notifier.deliver(try Fixtures.notification(routeOptions: ["toGuest": "true"]))
            await notifier.shutdown()
            #expect(try server.messages().map(\.rcptTos) == [["taro.yamada@example.jp"]])
        }
    }

    @Test func temporarilyRefusedRecipientsAreRetryable() async throws {
        try await withSMTPServer(["--tempfail", "ops@example.com"]) { server in
            let notifier = try EmailNotifier(settings: Fixtures.settings(port: server.port) { $0.to = ["ops@example.com"]; $0.cc = nil; $0.bcc = nil },
                                             context: Fixtures.context())
            let error = try #require(await DeliveryError.thrown { try await notifier.deliver(try Fixtures.notification()) })
            await notifier.shutdown()
            #expect(error.isRetryable)
            #expect(error.message.contains("450"))
        }
    }

    @Test func serverNotListeningIsRetryable() async throws {
        // A port nobody listens on, and that a server started by a test in parallel cannot take.
        let refusing = RefusingPort()
        let port = refusing.port
        let notifier = try EmailNotifier(settings: Fixtures.settings(port: port), context: Fixtures.context())
        let error = try #require(await DeliveryError.thrown { try await notifier.deliver(try Fixtures.notification()) })
        await notifier.shutdown()
        withExtendedLifetime(refusing) {}
        #expect(error.isRetryable)
        // One sentence, not NIO's "connection reset (error set): Connection refused) (errno: 111)".
        #expect(error.message == "connection refused by 127.0.0.1:\(port)")
    }

    @Test func connectionDroppedDuringDataIsRetryable() async throws {
        try await withSMTPServer(["--drop-data"]) { server in
            let notifier = try EmailNotifier(settings: Fixtures.settings(port: server.port), context: Fixtures.context())
            let error = try #require(await DeliveryError.thrown { try await notifier.deliver(try Fixtures.notification()) })
            await notifier.shutdown()
            #expect(error.isRetryable)
            #expect(try server.messages().isEmpty)
        }
    }

    @Test func staleConnectionIsReplacedWithoutFailingTheDelivery() async throws {
        try await withSMTPServer(["--stale-rset"]) { server in
            let notifier = try EmailNotifier(settings: Fixtures.settings(port: server.port) { $0.maxConnections = 1 },
                                             context: Fixtures.context())
            try await notifier.deliver(try Fixtures.notification())
            // The pooled connection answers RSET with 421 and closes: the notifier must
            // notice, open a new connection and deliver on it.
            try await notifier.deliver(try Fixtures.notification())
            await notifier.shutdown()
            let messages = try server.messages()
            #expect(messages.count == 2)
            #expect(Set(messages.map(\.peerPort)).count == 2)
        }
    }

    @Test func concurrentDeliveriesShareAFewConnections() async throws {
        try await withSMTPServer { server in
            let notifier = try EmailNotifier(settings: Fixtures.settings(port: server.port) { $0.maxConnections = 3 },
                                             context: Fixtures.context())
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<24 {
                    group.addTask { try await notifier.deliver(try Fixtures.notification(deliveryKey: "evt_\(i)|mail")) }
                }
                try await group.waitForAll()
            }
            await notifier.shutdown()
            let messages = try server.messages()
            #expect(messages.count == 24)
            #expect(Set(messages.map(\.peerPort)).count <= 3)
            #expect(Set(messages.compactMap { $0.header("message-id") }).count == 24)
        }
    }
}

/// An iCalendar object read back: lines unfolded, each `NAME[;params]:value` by name.
struct CalendarLines {
    var lines: [(name: String, value: String)]

    init(_ text: String) throws {
        #expect(text.hasSuffix("\r\n"))
        let physical = text.components(separatedBy: "\r\n").dropLast()
        for line in physical {
            #expect(line.utf8.count <= 75, "iCalendar line over 75 octets: \(line)")
            #expect(!line.contains("\n"), "bare LF in iCalendar")
        }
        var unfolded: [String] = []
        for line in physical {
            if line.hasPrefix(" "), !unfolded.isEmpty { unfolded[unfolded.count - 1] += line.dropFirst() } else { unfolded.append(line) }
        }
        lines = try unfolded.map { line in
            let colon = try #require(line.firstIndex(of: ":"), "no colon in \(line)")
            let name = line[..<colon].split(separator: ";").first.map(String.init) ?? ""
            return (name, String(line[line.index(after: colon)...]))
        }
        #expect(lines.first?.name == "BEGIN" && lines.first?.value == "VCALENDAR")
        #expect(lines.last?.name == "END" && lines.last?.value == "VCALENDAR")
        #expect(value("VERSION") == "2.0")
        #expect(value("PRODID") != nil)
    }

    func value(_ name: String) -> String? { lines.first { $0.name == name }?.value }
    func values(_ name: String) -> [String] { lines.filter { $0.name == name }.map(\.value) }
}
