import Foundation
import HeraldPlugin

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
public struct CSVNotifier: NotifierPlugin {
    /// What users write as `kind:`.
    public static let kind = "csv"
    /// Rows are plain text: Herald need not render HTML for this notifier.
    public static let usesHTML = false

    /// Decoded from the notifier's entry in the configuration. Herald refuses keys that this
    /// type does not read, so `colums:` is an error, not a silently ignored line.
    public struct Settings: Decodable, Sendable {
        /// The CSV file, relative to the configuration file's directory unless absolute.
        public var path: String
        /// Which columns, in order; see ``CSVNotifier/knownColumns``.
        public var columns: [String]?

        /// Settings as a test would write them.
        public init(path: String, columns: [String]? = nil) {
            self.path = path
            self.columns = columns
        }
    }

    /// The columns a row can have.
    public static let knownColumns = ["event", "date", "start", "end", "guest", "email", "reason", "booking", "received"]

    let file: CSVFile
    let columns: [String]

    /// Validates the settings; throws `ConfigError(key:_:)`, which Herald reports with the
    /// file, key path and line. No I/O here: the file is created on the first delivery.
    public init(settings: Settings, context: PluginContext) throws {
        let columns = settings.columns ?? ["event", "date", "start", "end", "guest", "email", "reason"]
        guard !columns.isEmpty else { throw ConfigError(key: "columns", "must name at least one column") }
        for (i, c) in columns.enumerated() where !Self.knownColumns.contains(c) {
            throw ConfigError(key: "columns[\(i)]", "unknown column \"\(c)\"; known: \(Self.knownColumns.joined(separator: ", "))")
        }
        self.columns = columns
        file = CSVFile(path: context.resolvePath(settings.path), header: columns)
    }

    /// One attempt. Herald retries retryable errors with backoff and keeps the delivery in
    /// its journal until this returns.
    public func deliver(_ notification: HeraldNotification) async throws {
        let row = Self.row(notification, columns: columns)
        do {
            try await file.append(row)
        } catch {
            throw DeliveryError.retryable("cannot write \(file.path): \(error.localizedDescription)")
        }
    }

    /// The values of `columns` for one notification; dates and times in the booking's own
    /// time zone, e.g. `2026-11-27 (Fri)` and `14:00`.
    static func row(_ notification: HeraldNotification, columns: [String]) -> [String] {
        let booking = notification.event.booking
        let zone = booking?.timeZone.flatMap(TimeZone.init(identifier:)) ?? TimeZone(identifier: "UTC")
        func format(_ date: Date?, _ pattern: String) -> String {
            guard let date else { return "" }
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = zone
            formatter.dateFormat = pattern
            return formatter.string(from: date)
        }
        return columns.map { column in
            switch column {
            case "event": notification.event.name
            case "date": format(booking?.startedAt, "yyyy-MM-dd (EEE)")
            case "start": format(booking?.startedAt, "HH:mm")
            case "end": format(booking?.endedAt, "HH:mm")
            case "guest": booking?.contact?.name ?? ""
            case "email": booking?.contact?.email ?? ""
            case "reason": booking?.cancelReason ?? ""
            case "booking": booking?.uid ?? ""
            default: ISO8601.format(notification.event.receivedAt)
            }
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
