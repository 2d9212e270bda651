import CSVNotifier
import Foundation
import HeraldPlugin
import HeraldTesting
import Testing

/// The CSV plugin tested as its author would: with Herald's test kit and nothing else.
@Suite("CSV notifier")
struct CSVNotifierTests {
    /// A fresh directory for one test's files.
    func directory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("csv-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func writesAHeaderThenOneRowPerNotification() async throws {
        let dir = try directory()
        let plugin = try CSVNotifier.configured("path: bookings.csv", context: .testing(baseDirectory: dir))
        for name in ["guest_booked", "guest_cancelled"] {
            try await plugin.deliver(HeraldNotification.rendered(SampleEvents.event(name), for: CSVNotifier.self))
        }
        let csv = try String(contentsOfFile: dir + "/bookings.csv", encoding: .utf8)
        #expect(csv == """
            event,date,start,end,guest,email,reason\r
            guest_booked,2026-11-27 (Fri),14:00,15:00,山田 太郎,taro.yamada@example.jp,\r
            guest_cancelled,2026-11-27 (Fri),14:00,15:00,山田 太郎,taro.yamada@example.jp,別の予定が入ったため\r

            """)
    }

    @Test func aGenericWebhookGetsARowWithoutBookingDetails() async throws {
        let dir = try directory()
        let plugin = try CSVNotifier.configured("path: out.csv\ncolumns: [event, guest, received]", context: .testing(baseDirectory: dir))
        try await plugin.deliver(HeraldNotification.rendered(SampleEvents.genericEvent(), for: CSVNotifier.self))
        let csv = try String(contentsOfFile: dir + "/out.csv", encoding: .utf8)
        #expect(csv == "event,guest,received\r\ninvoice.paid,,2026-11-22T04:00:05Z\r\n")
    }

    @Test func aMisspelledKeyIsAnErrorWithASuggestion() throws {
        #expect {
            _ = try CSVNotifier.configured("path: out.csv\ncolums: [event, date]")
        } throws: { error in
            let error = try #require(error as? ConfigError)
            return error.keyPath == "colums" && error.line == 2 && error.column == 1
                && error.message == "unknown key; did you mean \"columns\"? (known keys: columns, path)"
        }
    }

    @Test func anUnknownColumnIsLocated() throws {
        #expect(throws: ConfigError(file: "settings", keyPath: "columns[1]", line: 2, column: 18,
                                    message: "unknown column \"guset\"; known: \(CSVNotifier.knownColumns.joined(separator: ", "))")) {
            _ = try CSVNotifier.configured("path: out.csv\ncolumns: [event, guset]")
        }
    }

    @Test func aFileThatCannotBeWrittenIsRetried() async throws {
        let plugin = try CSVNotifier.configured("path: /nonexistent-directory/out.csv")
        let notification = try HeraldNotification.rendered(SampleEvents.event("guest_booked"), for: CSVNotifier.self)
        let error = await DeliveryError.thrown { try await plugin.deliver(notification) }
        #expect(error?.isRetryable == true)
    }
}
