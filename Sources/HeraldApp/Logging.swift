import Foundation
import HeraldCore
import Logging
import Synchronization

/// Sets up swift-log once per process: `text` (human-readable, one line per record, control
/// characters escaped) or `json` (one object per line, for log shippers), both on stderr.
///
/// Every handler reads the level from ``level``, so a configuration reload changes it for
/// loggers that already exist, not only for new ones.
enum LogSetup {
    /// The process-wide log level, as its index in `Logger.Level.allCases`: an atomic, because
    /// every log call reads it, even the ones it filters out.
    private static let current = Atomic<Int>(Logger.Level.allCases.firstIndex(of: .info) ?? 0)

    static var level: Logger.Level { Logger.Level.allCases[current.load(ordering: .relaxed)] }

    static func setLevel(_ level: Logger.Level) {
        current.store(Logger.Level.allCases.firstIndex(of: level) ?? 0, ordering: .relaxed)
    }

    static func bootstrap(_ config: HeraldConfig.Log) {
        setLevel(config.level)
        let format = config.format
        LoggingSystem.bootstrap { label in LiveLevelLogHandler(inner: LineLogHandler(label: label, format: format, logLevel: .trace)) }
    }
}

/// Filters by the process-wide ``LogSetup/level`` unless a logger sets its own level, and
/// hands the rest to `inner` (which lets everything through).
///
/// Generic over the inner handler rather than holding `any LogHandler`: a `Logger` is copied
/// and given metadata for every request (Hummingbird's request id), and an existential inside
/// the logger's existential was a second heap box to copy each time.
struct LiveLevelLogHandler<Inner: LogHandler>: LogHandler {
    var inner: Inner
    /// A level set on this logger (`logger.logLevel = …`), which then wins over the global one.
    var ownLevel: Logger.Level?

    var logLevel: Logger.Level {
        get { ownLevel ?? LogSetup.level }
        set { ownLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) { inner.log(event: event) }
}

/// Writes each log record as one line on stderr: a JSON object (time, level, logger, message
/// and metadata as fields), or text in swift-log's `StreamLogHandler` layout
/// (`time level label: key=value … [source] message`).
///
/// In text, every control character in the message, the metadata and the error is escaped (JSON
/// escapes them by itself): a signed event's fields reach the log, and a raw CR, LF, NUL or ESC
/// in them would let a sender forge whole log lines or drive the terminal.
struct LineLogHandler: LogHandler {
    let label: String
    let format: HeraldConfig.Log.Format
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    init(label: String, format: HeraldConfig.Log.Format, logLevel: Logger.Level) {
        self.label = label
        self.format = format
        self.logLevel = logLevel
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        switch format {
        case .text:
            FileHandle.standardError.write(Data(textLine(for: event, time: Self.localTimestamp()).utf8))
        case .json:
            var object: [String: Any] = [
                "time": ISO8601.format(Date()), "level": event.level.rawValue, "logger": label, "message": event.message.description,
            ]
            for (k, v) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { _, b in b }) { object[k] = v.description }
            if let error = event.error { object["error"] = String(describing: error) }
            guard var data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
            data.append(0x0A)
            FileHandle.standardError.write(data)
        }
    }

    /// The text line for one record, newline included.
    func textLine(for event: LogEvent, time: String) -> String {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { _, b in b } }
        if let error = event.error {
            all["error.message"] = "\(error)"
            all["error.type"] = "\(String(reflecting: type(of: error)))"
        }
        var line = "\(time) \(event.level) \(label):"
        for (key, value) in all.sorted(by: { $0.key < $1.key }) {
            line += " \(Self.escaped(key))=\(Self.escaped(value.description))"
        }
        line += " [\(Self.escaped(event.source))] \(Self.escaped(event.message.description))\n"
        return line
    }

    /// `text` with C0 and C1 control characters, DEL and the Unicode line and paragraph
    /// separators written as `\n`, `\r`, `\t`, `\0` or `\u{1B}`; everything else as it is.
    static func escaped(_ text: String) -> String {
        func needsEscape(_ v: UInt32) -> Bool { v < 0x20 || (0x7F...0x9F).contains(v) || v == 0x2028 || v == 0x2029 }
        guard text.unicodeScalars.contains(where: { needsEscape($0.value) }) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar.value) else { out.append(scalar); continue }
            let escape: String
            switch scalar {
            case "\n": escape = "\\n"
            case "\r": escape = "\\r"
            case "\t": escape = "\\t"
            case "\0": escape = "\\0"
            default: escape = "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
            }
            out.append(contentsOf: escape.unicodeScalars)
        }
        return String(out)
    }

    /// Local time as `2026-12-01T12:00:00+0000`, like `StreamLogHandler`.
    static func localTimestamp() -> String {
        var now = time(nil)
        var parts = tm()
        guard localtime_r(&now, &parts) != nil else { return "<unknown>" }
        var buffer = [CChar](repeating: 0, count: 64)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S%z", &parts)
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
