import Logging
import Testing

@testable import HeraldApp

/// Text logs: a sender's control characters cannot forge log lines.
@Suite("Log hygiene")
struct LogHygieneTests {
    @Test func textLogEscapesControlCharacters() {
        let handler = LineLogHandler(label: "herald", format: .text, logLevel: .trace)
        let forged = "Ada\r\n2026-12-01T00:00:00+0000 error herald: [HeraldCore] forged\u{1B}[2J\0\u{85}\u{2028}"
        let event = LogEvent(level: .info, message: "booking from \(forged)", metadata: ["guest": .string(forged), "ok": "plain"],
                             source: "HeraldCore", file: #fileID, function: #function, line: #line)
        let line = handler.textLine(for: event, time: "T")
        #expect(line.filter { $0 == "\n" || $0 == "\r\n" }.count == 1)
        #expect(line.hasSuffix("\n"))
        #expect(!line.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" })
        #expect(!line.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x85 || $0.value == 0x2028 })
        #expect(line.contains(#"Ada\r\n2026-12-01T00:00:00+0000 error herald: [HeraldCore] forged\u{1B}[2J\0\u{85}\u{2028}"#))
        #expect(line.hasPrefix("T info herald: guest=Ada\\r\\n"))
        #expect(line.contains(" ok=plain [HeraldCore] booking from Ada\\r\\n"))
        // Text without control characters is written as it is.
        #expect(LineLogHandler.escaped("予約 — ok \\n") == "予約 — ok \\n")
    }
}
