import Foundation
import HeraldCore
import Testing
@testable import EmailNotifier

/// The encoders on their own, at the byte level.
struct MIMEEncodingTests {
    /// Decodes `=?UTF-8?B?…?=` words, requiring each one to hold whole UTF-8 sequences.
    private func decodeWords(_ words: [String]) throws -> String {
        try words.map { word in
            #expect(word.hasPrefix("=?UTF-8?B?") && word.hasSuffix("?="))
            let payload = word.dropFirst(10).dropLast(2)
            let bytes = try #require(Data(base64Encoded: String(payload)))
            return try #require(String(validating: bytes, as: UTF8.self), "encoded-word splits a UTF-8 sequence: \(word)")
        }.joined()
    }

    @Test(arguments: [
        "新しい予約: 山田 太郎 様 — 料金プランについてのご相談 (11月27日 14:00〜15:00 JST)",
        String(repeating: "あ", count: 100),
        "👨‍👩‍👧‍👦👨‍👩‍👧‍👦👨‍👩‍👧‍👦 family " + String(repeating: "é", count: 40),
    ])
    func encodedWordsRoundTripAndStayShort(text: String) throws {
        let words = MIMEEncoding.encodedWords(text)
        #expect(words.count > 1)
        for word in words { #expect(word.utf8.count <= 75) }
        #expect(try decodeWords(words) == text)
    }

    @Test func foldedHeadersKeepLinesShortAndEndInCRLF() {
        let header = MIMEEncoding.foldedHeader("Subject", words: MIMEEncoding.unstructuredWords(String(repeating: "予約 ", count: 40)))
        let text = String(decoding: header, as: UTF8.self)
        #expect(text.hasSuffix("\r\n"))
        let lines = text.dropLast(2).components(separatedBy: "\r\n")
        #expect(lines.count > 1)
        for (i, line) in lines.enumerated() {
            #expect(line.utf8.count <= 78)
            if i > 0 { #expect(line.hasPrefix(" ")) }
        }
    }

    @Test func plainASCIISubjectsStayReadable() {
        #expect(MIMEEncoding.unstructuredWords("New booking: Taro Yamada") == ["New", "booking:", "Taro", "Yamada"])
        #expect(MIMEEncoding.unstructuredWords("looks like =?an?encoded?= word").allSatisfy { $0.hasPrefix("=?UTF-8?B?") })
    }

    @Test func headerInjectionIsImpossible() throws {
        let message = MIMEMessage(
            from: EmailAddress(name: "Bot\r\nBcc: evil@example.com", address: "bot@example.com"),
            to: [EmailAddress(address: "a@example.com")], cc: [], replyTo: nil,
            subject: "Hello\r\nBcc: evil@example.com\nX-Injected: 1", date: Date(timeIntervalSince1970: 0),
            messageID: "<x@example.com>", text: "body", html: nil, calendar: nil)
        let headers = String(decoding: message.render(eightBit: false), as: UTF8.self).components(separatedBy: "\r\n\r\n")[0]
        for line in headers.components(separatedBy: "\r\n") {
            #expect(!line.hasPrefix("Bcc:") && !line.hasPrefix("X-Injected:"), "injected header: \(line)")
            #expect(!line.contains("\r") && !line.contains("\n"))
        }
        #expect(throws: ConfigError.self) { try EmailAddress(parsing: "Bot\r\nBcc: x@example.com <bot@example.com>") }
        #expect(throws: ConfigError.self) { try EmailAddress(parsing: "<bot@example.com>\r\nBcc: x@example.com") }
        #expect(throws: ConfigError.self) { try EmailAddress(parsing: "no-at-sign") }
    }

    @Test func addressParsing() throws {
        let quoted = try EmailAddress(parsing: "\"Sato, Hanako\" <hanako@example.com>")
        #expect(quoted.name == "Sato, Hanako" && quoted.address == "hanako@example.com")
        #expect(quoted.headerWords == ["\"Sato, Hanako\"", "<hanako@example.com>"])
        let bare = try EmailAddress(parsing: " bot@example.com ")
        #expect(bare.name == nil && bare.headerWords == ["bot@example.com"])
        #expect(try EmailAddress(parsing: "山田 <taro@example.jp>").headerWords.first?.hasPrefix("=?UTF-8?B?") == true)
        #expect(bare.domain == "example.com")
    }

    @Test func quotedPrintable() {
        let encoded = String(decoding: MIMEEncoding.quotedPrintable("a=b \ttab\nend \n"), as: UTF8.self)
        #expect(encoded == "a=3Db \ttab\r\nend=20\r\n")
        let long = String(decoding: MIMEEncoding.quotedPrintable(String(repeating: "é", count: 60)), as: UTF8.self)
        for line in long.components(separatedBy: "\r\n") {
            #expect(line.utf8.count <= 76)
            // A soft break never cuts an =XX escape.
            #expect(line.isEmpty || line.hasSuffix("=") || line.hasSuffix("A9"))
        }
    }

    @Test func dataPayloadStuffsDotsAndNormalisesLineEnds() {
        let payload = MIMEEncoding.dataPayload(Array(".a\nb\r\n.\rc\r\n..d".utf8))
        #expect(String(decoding: payload, as: UTF8.self) == "..a\r\nb\r\n..\r\nc\r\n...d\r\n.\r\n")
    }

    @Test func eightBitOnlyForShortLines() {
        #expect(MIMEEncoding.fitsEightBit("日本語\n" + String(repeating: "x", count: 998)))
        #expect(!MIMEEncoding.fitsEightBit(String(repeating: "x", count: 999)))
    }

    @Test func replyDecoderCapabilities() {
        let reply = SMTPReply(code: 250, lines: ["smtp.test", "SIZE 1000", "8BITMIME", "AUTH=LOGIN", "AUTH PLAIN login", "STARTTLS", "SMTPUTF8"])
        let caps = SMTPCapabilities(ehlo: reply)
        #expect(caps.maxSize == 1000 && caps.eightBitMIME && caps.smtpUTF8 && caps.startTLS)
        #expect(caps.authMechanisms == ["LOGIN", "PLAIN"])
    }

    @Test func rfc5322Date() {
        #expect(MIMEMessage.rfc5322Date(Date(timeIntervalSince1970: 1_795_755_600)) == "Fri, 27 Nov 2026 05:00:00 +0000")
    }

    @Test func messageIDIsStablePerDeliveryKey() {
        let a = MIMEMessage.messageID(deliveryKey: "evt_1|mail", domain: "example.com")
        #expect(a == MIMEMessage.messageID(deliveryKey: "evt_1|mail", domain: "example.com"))
        #expect(a != MIMEMessage.messageID(deliveryKey: "evt_1|other", domain: "example.com"))
        #expect(a.hasPrefix("<herald.") && a.hasSuffix("@example.com>"))
    }
}

/// The iCalendar writer on its own.
struct ICalendarTests {
    @Test func foldsAt75OctetsWithoutSplittingCharacters() throws {
        let line = "SUMMARY:" + String(repeating: "予約の確認", count: 20)
        let folded = ICalendar.fold(line)
        let physical = folded.components(separatedBy: "\r\n").dropLast()
        #expect(physical.count > 1)
        for (i, part) in physical.enumerated() {
            #expect(part.utf8.count <= 75)
            if i > 0 { #expect(part.hasPrefix(" ")) }
        }
        #expect(physical.enumerated().map { $0.offset == 0 ? String($0.element) : String($0.element.dropFirst()) }.joined() == line)
    }

    @Test func escapesText() {
        #expect(ICalendar.escapeText("a,b;c\\d\r\ne\nf") == "a\\,b\\;c\\\\d\\ne\\nf")
    }

    @Test func onlyBookingKindsGetACalendar() throws {
        let organizer = EmailAddress(address: "bot@example.com")
        for kind in HeraldNotification.Kind.allCases {
            let calendar = ICalendar(notification: try Fixtures.notification(kind: kind), organizer: organizer, attendees: [])
            #expect((calendar != nil) == [.booked, .rescheduled, .cancelled, .accepted].contains(kind), "\(kind)")
        }
        // No booking at all, and a booking without a start time.
        let generic = try EventSource.generic.decode(body: Data(#"{"event":"x"}"#.utf8), endpoint: "/hooks/x")
        let noStart = try EventSource.jicoo.decode(
            body: Data(#"{"event":"guest_booked","object":{"uid":"bk_1","endedAt":"2026-11-27T06:00:00Z"}}"#.utf8), endpoint: "/hooks/jicoo")
        for event in [generic, noStart] {
            let notification = HeraldNotification(event: event, title: "x", text: "y", kind: .booked)
            #expect(ICalendar(notification: notification, organizer: organizer, attendees: []) == nil)
        }
    }

    @Test func laterUpdatesHaveHigherSequenceAndTheSameUID() throws {
        let organizer = EmailAddress(address: "bot@example.com")
        let calendars = try [("guest_booked", HeraldNotification.Kind.booked), ("guest_rescheduled", .rescheduled), ("guest_cancelled", .cancelled)]
            .map { try #require(ICalendar(notification: try Fixtures.notification($0.0, kind: $0.1), organizer: organizer, attendees: [])) }
        #expect(Set(calendars.map(\.uid)) == ["bk_7Qx2mZp9@herald"])
        #expect(calendars[0].sequence < calendars[1].sequence && calendars[1].sequence < calendars[2].sequence)
        #expect(calendars.map(\.method) == [.request, .request, .cancel])
        #expect(ICalendar.utc(calendars[1].start) == "20261128T023000Z")
    }
}
