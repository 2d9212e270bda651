import Foundation
import HeraldCore

/// A custom notifier, written as a Herald user would: every booking event becomes a row in a
/// CSV file that opens in Excel or Google Sheets.
///
/// ```yaml
/// notifiers:
///   sheet:
///     kind: csv
///     path: ./bookings.csv
///     columns: [event, date, start, end, guest, email, reason]   # optional
/// ```
struct CSVNotifier: NotifierPlugin {
    /// What users write as `kind:`.
    static let kind = "csv"

    /// Decoded from the notifier's entry in the configuration.
    struct Settings: Decodable, Sendable {
        var path: String
        var columns: [String]?
    }

    static let knownColumns = ["event", "date", "start", "end", "guest", "email", "reason", "booking", "received"]

    let file: CSVFile
    let columns: [String]

    /// Validate settings here; throw `ConfigError(key:_:)` and Herald reports file, key and line.
    init(settings: Settings, context: PluginContext) throws {
        let columns = settings.columns ?? ["event", "date", "start", "end", "guest", "email", "reason"]
        for (i, c) in columns.enumerated() where !Self.knownColumns.contains(c) {
            throw ConfigError(key: "columns[\(i)]", "unknown column \"\(c)\"; known: \(Self.knownColumns.joined(separator: ", "))")
        }
        self.columns = columns
        file = CSVFile(path: context.resolvePath(settings.path), header: columns)
    }

    /// One attempt. Herald retries retryable errors with backoff and keeps the delivery in
    /// its journal until this returns.
    func deliver(_ notification: HeraldNotification) async throws {
        let booking = notification.event.booking
        let zone = booking?.timeZone
        func value(_ column: String) -> String {
            switch column {
            case "event": notification.event.name
            case "date": booking?.startedAt.map { TimeText.parts($0, zone: zone, locale: .en).date } ?? ""
            case "start": booking?.startedAt.map { TimeText.parts($0, zone: zone, locale: .en).time } ?? ""
            case "end": booking?.endedAt.map { TimeText.parts($0, zone: zone, locale: .en).time } ?? ""
            case "guest": booking?.contact?.name ?? ""
            case "email": booking?.contact?.email ?? ""
            case "reason": booking?.cancelReason ?? ""
            case "booking": booking?.uid ?? ""
            default: ISO8601.format(notification.event.receivedAt)
            }
        }
        do {
            try await file.append(columns.map(value))
        } catch {
            throw DeliveryError.retryable("cannot write \(file.path): \(error.localizedDescription)")
        }
    }
}

/// Appends rows one at a time (an actor, so concurrent deliveries cannot interleave).
actor CSVFile {
    let path: String
    let header: [String]

    init(path: String, header: [String]) {
        self.path = path
        self.header = header
    }

    func append(_ row: [String]) throws {
        let exists = FileManager.default.fileExists(atPath: path)
        if !exists, !FileManager.default.createFile(atPath: path, contents: Data()) {
            throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seekToEnd()
        var text = exists ? "" : Self.line(header)
        text += Self.line(row)
        try handle.write(contentsOf: Data(text.utf8))
    }

    /// RFC 4180: quote fields with commas, quotes or line breaks; double inner quotes.
    static func line(_ fields: [String]) -> String {
        fields.map { f in
            f.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" })
                ? "\"" + f.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : f
        }.joined(separator: ",") + "\r\n"
    }
}
