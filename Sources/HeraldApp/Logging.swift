import Foundation
import HeraldCore
import Logging

/// Sets up swift-log once per process: `text` (human-readable) or `json` (one object per line,
/// for log shippers), both on stderr.
enum LogSetup {
    static func bootstrap(_ config: HeraldConfig.Log) {
        let level = config.level
        switch config.format {
        case .text:
            LoggingSystem.bootstrap { label in
                var h = StreamLogHandler.standardError(label: label)
                h.logLevel = level
                return h
            }
        case .json:
            LoggingSystem.bootstrap { label in JSONLogHandler(label: label, logLevel: level) }
        }
    }
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
