import Crypto
import Foundation
import HeraldPlugin

/// An email address with an optional display name: `Herald <bot@example.com>`,
/// `"Yamada, Taro" <taro@example.jp>` or `bot@example.com`.
struct EmailAddress: Sendable, Equatable, CustomStringConvertible {
    /// The display name, if any, without quotes.
    var name: String?
    /// The address (`local@domain`), which may contain UTF-8 (RFC 6531).
    var address: String

    init(name: String? = nil, address: String) {
        self.name = name
        self.address = address
    }

    /// Parses `Name <addr>` or `addr` with HeraldPlugin's ``Setting/emailAddress(_:key:)``:
    /// throws for anything that could not be sent safely (no `@`, white space or control
    /// characters in the address, CR or LF in the name). `key` names the setting in the error.
    init(parsing text: String, key: String = "address") throws(ConfigError) {
        (name, address) = try Setting.emailAddress(text, key: key)
    }

    /// The domain part, for Message-IDs.
    var domain: String {
        address.lastIndex(of: "@").map { String(address[address.index(after: $0)...]) } ?? "localhost"
    }

    /// Whether the address needs SMTPUTF8 (RFC 6531) to be sent.
    var needsUTF8: Bool { address.utf8.contains { $0 >= 0x80 } }

    var description: String { name.map { "\($0) <\(address)>" } ?? address }

    /// The address as header words: the display name (plain, quoted or encoded-words), then
    /// `<address>`. CR and LF cannot occur: names are sanitised, addresses validated.
    var headerWords: [String] {
        guard let raw = name.map(MIMEEncoding.sanitizedHeaderText), !raw.isEmpty else { return [address] }
        let atext = Set("!#$%&'*+-/=?^_`{|}~ ".unicodeScalars)
        let words: [String]
        if raw.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || atext.contains($0)) }),
           MIMEEncoding.isPlainHeaderText(raw) {
            words = raw.split(separator: " ").map(String.init)
        } else if MIMEEncoding.isPlainHeaderText(raw) {
            words = ["\"" + raw.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""]
        } else {
            words = MIMEEncoding.encodedWords(raw)
        }
        return words + ["<\(address)>"]
    }
}

/// One email, ready to render as RFC 5322 + MIME bytes.
///
/// The body is `multipart/alternative` (text, HTML) or a single `text/plain` part. With a
/// calendar, the message becomes what Google Calendar and Outlook send themselves:
/// `multipart/mixed` whose first child is the `multipart/alternative` carrying the
/// `text/calendar; method=…` part (Outlook only looks for iMIP data there), followed by the
/// same iCalendar object as an `invite.ics` attachment for clients that only read attachments.
struct MIMEMessage: Sendable {
    var from: EmailAddress
    var to: [EmailAddress]
    var cc: [EmailAddress]
    var replyTo: EmailAddress?
    var subject: String
    var date: Date
    /// With angle brackets, e.g. `<herald.3f…@example.com>`.
    var messageID: String
    var text: String
    var html: String?
    var calendar: ICalendar?

    /// A Message-ID that is the same for every send of one delivery key, so that a resend
    /// after an ambiguous failure is recognisable as the same message.
    static func messageID(deliveryKey: String, domain: String) -> String {
        let digest = SHA256.hash(data: Data(deliveryKey.utf8)).map { String(format: "%02x", $0) }.joined()
        return "<herald.\(digest.prefix(40))@\(domain)>"
    }

    /// The message bytes (CRLF line ends, not yet dot-stuffed, maybe without a final CRLF). `eightBit`: the server offers
    /// 8BITMIME, so text parts may travel as raw UTF-8 instead of base64/quoted-printable.
    func render(eightBit: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(2048 + text.utf8.count * 2 + (html?.utf8.count ?? 0) * 2)
        out += MIMEEncoding.foldedHeader("Date", words: [Self.rfc5322Date(date)])
        out += MIMEEncoding.foldedHeader("From", words: from.headerWords)
        if !to.isEmpty { out += MIMEEncoding.foldedHeader("To", words: Self.addressListWords(to)) }
        if !cc.isEmpty { out += MIMEEncoding.foldedHeader("Cc", words: Self.addressListWords(cc)) }
        if let replyTo { out += MIMEEncoding.foldedHeader("Reply-To", words: replyTo.headerWords) }
        out += MIMEEncoding.foldedHeader("Subject", words: MIMEEncoding.unstructuredWords(subject))
        out += MIMEEncoding.foldedHeader("Message-ID", words: [messageID])
        out += MIMEEncoding.foldedHeader("MIME-Version", words: ["1.0"])
        out += MIMEEncoding.foldedHeader("Auto-Submitted", words: ["auto-generated"])

        let boundary = "=_herald_" + String(messageID.utf8.reduce(into: UInt64(14_695_981_039_346_656_037)) {
            $0 = ($0 ^ UInt64($1)) &* 1_099_511_628_211
        }, radix: 36)
        var alternatives = [textPart("text/plain; charset=UTF-8", text, eightBit: eightBit)]
        if let html { alternatives.append(textPart("text/html; charset=UTF-8", html, eightBit: eightBit)) }
        if let calendar {
            let ics = calendar.render()
            alternatives.append(textPart("text/calendar; charset=UTF-8; method=\(calendar.method.rawValue)", ics, eightBit: eightBit))
            let body = multipart("alternative", boundary: boundary + "_alt", parts: alternatives)
            let attachment = Self.part(
                headers: ["Content-Type: application/ics; name=\"invite.ics\"",
                          "Content-Disposition: attachment; filename=\"invite.ics\"",
                          "Content-Transfer-Encoding: base64"],
                body: MIMEEncoding.base64Lines(Array(ics.utf8)))
            out += multipart("mixed", boundary: boundary + "_mix", parts: [body, attachment])
        } else if alternatives.count == 1 {
            out += alternatives[0]
        } else {
            out += multipart("alternative", boundary: boundary + "_alt", parts: alternatives)
        }
        return out
    }

    /// Address-list words with the separating commas attached, so folding keeps them.
    private static func addressListWords(_ list: [EmailAddress]) -> [String] {
        var words: [String] = []
        for (i, address) in list.enumerated() {
            var w = address.headerWords
            if i < list.count - 1 { w[w.count - 1] += "," }
            words += w
        }
        return words
    }

    /// One text part: headers, blank line, encoded body. 8bit only when allowed and safe
    /// (short lines, no boundary lookalike); otherwise base64 or quoted-printable.
    private func textPart(_ contentType: String, _ content: String, eightBit: Bool) -> [UInt8] {
        let encoding: MIMEEncoding.TransferEncoding =
            eightBit && MIMEEncoding.fitsEightBit(content) && !content.contains("=_herald_")
            ? .eightBit : MIMEEncoding.preferredEncoding(for: content)
        return Self.part(
            headers: ["Content-Type: \(contentType)", "Content-Transfer-Encoding: \(encoding.rawValue)"],
            body: MIMEEncoding.encodeBody(content, as: encoding))
    }

    private static func part(headers: [String], body: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        for header in headers { out += header.utf8; out += MIMEEncoding.crlf }
        out += MIMEEncoding.crlf
        return out + body
    }

    /// A multipart entity: its Content-Type header, then each part between boundaries. Each
    /// delimiter starts with the CRLF that ends the part before it (RFC 2046 §5.1.1).
    private func multipart(_ subtype: String, boundary: String, parts: [[UInt8]]) -> [UInt8] {
        var out = Array("Content-Type: multipart/\(subtype); boundary=\"\(boundary)\"\r\n\r\n".utf8)
        for part in parts {
            out += "--\(boundary)\r\n".utf8
            out += part
            out += MIMEEncoding.crlf
        }
        out += "--\(boundary)--".utf8
        return out
    }

    /// `Fri, 27 Nov 2026 05:00:00 +0000` (RFC 5322 §3.3), always in UTC.
    static func rfc5322Date(_ date: Date) -> String {
        let iso = ISO8601.format(date)  // 2026-11-27T05:00:00Z
        let parts = iso.split(whereSeparator: { "-T:Z".contains($0) }).compactMap { Int($0) }
        guard parts.count == 6 else { return iso }
        let days = Int((date.timeIntervalSince1970 / 86400).rounded(.down))
        let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][((days % 7) + 7) % 7]
        let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][parts[1] - 1]
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(weekday), \(two(parts[2])) \(month) \(parts[0]) \(two(parts[3])):\(two(parts[4])):\(two(parts[5])) +0000"
    }
}
