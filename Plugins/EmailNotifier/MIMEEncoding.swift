import Foundation

/// The byte-level encodings an email needs: RFC 2047 encoded-words and header folding,
/// quoted-printable and base64 bodies (RFC 2045), and SMTP's DATA framing (RFC 5321).
///
/// Everything here works on UTF-8 bytes and produces 7-bit ASCII with CRLF line ends,
/// except ``MIMEEncoding/eightBit(_:)`` which is only used when the server offers 8BITMIME.
package enum MIMEEncoding {
    static let crlf: [UInt8] = [13, 10]

    // MARK: Headers

    /// Replaces CR, LF and other control characters with spaces so that no header value can
    /// start a new header line (header injection), and trims the ends.
    static func sanitizedHeaderText(_ text: String) -> String {
        var scalars = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            let isControl = scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value)
                || scalar == "\u{2028}" || scalar == "\u{2029}"
            scalars.append(isControl ? " " : scalar)
        }
        return String(scalars).trimmingCharacters(in: .whitespaces)
    }

    /// Whether `text` can go into a header as it is: printable ASCII and spaces only, and no
    /// word so long that folding could not keep the line under 78 characters.
    static func isPlainHeaderText(_ text: String) -> Bool {
        var run = 0
        for byte in text.utf8 {
            guard byte == 32 || (33...126).contains(byte) else { return false }
            run = byte == 32 ? 0 : run + 1
            if run > 66 { return false }
        }
        // "=?" could be mistaken for the start of an encoded-word by a reader.
        return !text.contains("=?")
    }

    /// The `=?UTF-8?B?…?=` encoded-words for `text` (RFC 2047), split only between characters
    /// so that no UTF-8 sequence is cut in two.
    ///
    /// Each word holds at most 39 bytes: 52 base64 characters, 64 with the delimiters, so
    /// the first word still fits on the header's first line after a name like `Reply-To: `
    /// (folding before the first word makes some readers show a leading space), and every
    /// word stays under RFC 2047's limit of 75.
    static func encodedWords(_ text: String) -> [String] {
        let maxBytes = 39
        var words: [String] = []
        var chunk: [UInt8] = []
        func flush() {
            guard !chunk.isEmpty else { return }
            words.append("=?UTF-8?B?" + Data(chunk).base64EncodedString() + "?=")
            chunk.removeAll(keepingCapacity: true)
        }
        for character in text {
            let bytes = Array(character.utf8)
            if bytes.count > maxBytes {
                // An unusually long grapheme (e.g. a long emoji sequence): split by scalars.
                for scalar in character.unicodeScalars {
                    let scalarBytes = Array(String(scalar).utf8)
                    if chunk.count + scalarBytes.count > maxBytes { flush() }
                    chunk += scalarBytes
                }
                continue
            }
            if chunk.count + bytes.count > maxBytes { flush() }
            chunk += bytes
        }
        flush()
        return words
    }

    /// The words of an unstructured header value (a subject): the text split at spaces when
    /// it is plain ASCII, or encoded-words otherwise.
    package static func unstructuredWords(_ text: String) -> [String] {
        let clean = sanitizedHeaderText(text)
        if isPlainHeaderText(clean) {
            return clean.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        }
        return encodedWords(clean)
    }

    /// One header field, `Name: words…`, folded with CRLF + space before any word that would
    /// take the line past 76 characters (RFC 5322 §2.2.3). Adjacent encoded-words separated by
    /// folding white space decode without a space between them (RFC 2047 §6.2). Address lists
    /// pass words that already carry their separating commas.
    package static func foldedHeader(_ name: String, words: [String]) -> [UInt8] {
        var out = Array((name + ":").utf8)
        var lineLength = out.count
        for (index, word) in words.enumerated() {
            let bytes = word.utf8
            // Folding right after "Name:" is allowed too, for a first word that would not fit.
            if lineLength + 1 + bytes.count > 76 && (index > 0 || lineLength > 0) {
                out += crlf
                lineLength = 0
            }
            out.append(32)
            out += bytes
            lineLength += 1 + bytes.count
        }
        return out + crlf
    }

    // MARK: Bodies

    /// The lines of `text`, whatever its line ends (`\r\n`, `\n`, lone `\r`). Text that ends
    /// with a line end has an empty last line, so joining with CRLF keeps that line end.
    static func normalizedLines(_ text: String) -> [Substring] {
        text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
            .split(separator: "\n", omittingEmptySubsequences: false)
    }

    /// The transfer encoding that keeps `text` smallest and readable: quoted-printable for
    /// mostly-ASCII text, base64 when more than a fifth of the bytes are not ASCII (Japanese).
    package static func preferredEncoding(for text: String) -> TransferEncoding {
        var nonASCII = 0
        var total = 0
        for byte in text.utf8 {
            total += 1
            if byte >= 0x80 { nonASCII += 1 }
        }
        return nonASCII * 5 > total ? .base64 : .quotedPrintable
    }

    /// How a body part's bytes are written.
    package enum TransferEncoding: String, Sendable {
        case quotedPrintable = "quoted-printable"
        case base64
        case eightBit = "8bit"
    }

    /// `text` encoded as `encoding`, lines separated by CRLF. The body ends with CRLF only if
    /// the text ends with a line end: in a multipart, the CRLF before the next boundary
    /// belongs to the boundary (RFC 2046 §5.1.1).
    package static func encodeBody(_ text: String, as encoding: TransferEncoding) -> [UInt8] {
        switch encoding {
        case .quotedPrintable: return quotedPrintable(text)
        case .base64: return base64Lines(Array(text.utf8))
        case .eightBit: return eightBit(text)
        }
    }

    /// Quoted-printable (RFC 2045 §6.7): lines of at most 76 characters, `=` soft breaks,
    /// trailing white space encoded, hard line breaks as CRLF.
    static func quotedPrintable(_ text: String) -> [UInt8] {
        joinedLines(text) { out, line in encodeQuotedPrintableLine(line, into: &out) }
    }

    /// One line of quoted-printable, with soft breaks but no final line end.
    private static func encodeQuotedPrintableLine(_ line: Substring, into out: inout [UInt8]) {
        let hex = Array("0123456789ABCDEF".utf8)
        let bytes = Array(line.utf8)
        var length = 0
        for (i, byte) in bytes.enumerated() {
            let isLast = i == bytes.count - 1
            let literal = (33...126).contains(byte) && byte != UInt8(ascii: "=")
                || ((byte == 32 || byte == 9) && !isLast)
            let width = literal ? 1 : 3
            // Keep room for the soft break "=" unless this is the line's last byte.
            if length + width > (isLast ? 76 : 75) {
                out += [UInt8(ascii: "=")] + crlf
                length = 0
            }
            if literal {
                out.append(byte)
            } else {
                out += [UInt8(ascii: "="), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            }
            length += width
        }
    }

    /// The lines of `text`, each written by `encode`, separated by CRLF.
    private static func joinedLines(_ text: String, _ encode: (inout [UInt8], Substring) -> Void) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count + text.utf8.count / 4 + 8)
        for (i, line) in normalizedLines(text).enumerated() {
            if i > 0 { out += crlf }
            encode(&out, line)
        }
        return out
    }

    /// Base64 in lines of 76 characters separated by CRLF.
    static func base64Lines(_ bytes: [UInt8]) -> [UInt8] {
        Array(Data(bytes).base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed]).utf8)
    }

    /// UTF-8 text as it is, with CRLF line ends: only for servers that offer 8BITMIME, and
    /// only when no line is longer than SMTP's 998-octet limit (see ``fitsEightBit(_:)``).
    static func eightBit(_ text: String) -> [UInt8] {
        joinedLines(text) { out, line in out += line.utf8 }
    }

    /// Whether `text` can be sent as 8bit: every line at most 998 octets and no NUL.
    static func fitsEightBit(_ text: String) -> Bool {
        var run = 0
        for byte in text.utf8 {
            if byte == 0 { return false }
            if byte == 10 || byte == 13 { run = 0; continue }
            run += 1
            if run > 998 { return false }
        }
        return true
    }

    // MARK: SMTP DATA

    /// The DATA payload for `message` (RFC 5321 §4.5.2): line ends normalised to CRLF, a dot
    /// added before every line that starts with one, and the terminating `CRLF.CRLF`.
    package static func dataPayload(_ message: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(message.count + message.count / 64 + 5)
        var atLineStart = true
        var i = 0
        while i < message.count {
            let byte = message[i]
            if atLineStart && byte == UInt8(ascii: ".") { out.append(byte) }
            switch byte {
            case 13:
                out += crlf
                if i + 1 < message.count && message[i + 1] == 10 { i += 1 }
                atLineStart = true
            case 10:
                out += crlf
                atLineStart = true
            default:
                out.append(byte)
                atLineStart = false
            }
            i += 1
        }
        if !atLineStart { out += crlf }
        out += Array(".\r\n".utf8)
        return out
    }
}
