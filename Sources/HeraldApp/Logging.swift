import Foundation
import HeraldCore
import Logging
import Synchronization

/// Sets up swift-log once per process: `text` (human-readable) or `json` (one object per line,
/// for log shippers), both on stderr.
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
        switch config.format {
        case .text:
            LoggingSystem.bootstrap { label in
                var h = StreamLogHandler.standardError(label: label)
                h.logLevel = .trace
                return LiveLevelLogHandler(inner: h)
            }
        case .json:
            LoggingSystem.bootstrap { label in LiveLevelLogHandler(inner: JSONLogHandler(label: label, logLevel: .trace)) }
        }
    }
}

/// Filters by the process-wide ``LogSetup/level`` unless a logger sets its own level, and
/// hands the rest to `inner` (which lets everything through).
struct LiveLevelLogHandler: LogHandler {
    var inner: any LogHandler
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

/// Writes each log record as one JSON object: time, level, logger, message and metadata.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    init(label: String, logLevel: Logger.Level) {
        self.label = label
        self.logLevel = logLevel
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
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
