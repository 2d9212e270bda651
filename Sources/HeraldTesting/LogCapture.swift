import Logging
import Synchronization

/// A log handler that keeps every record in memory, so a test can check what a plugin (or
/// Herald) logs, and that no secret is ever among it.
///
/// ```swift
/// let capture = LogCapture()
/// let context = PluginContext.testing(logger: capture.logger(level: .trace))
/// // … deliver …
/// #expect(!capture.text.contains(token))
/// ```
public final class LogCapture: LogHandler, Sendable {
    private let records = Mutex<[(message: String, metadata: Logger.Metadata)]>([])

    /// An empty capture.
    public init() {}

    /// A logger that writes into this capture, at `level` and above.
    public func logger(label: String = "test", level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: label) { _ in self }
        logger.logLevel = level
        return logger
    }

    /// Every message, in the order logged.
    public var messages: [String] { records.withLock { $0.map(\.message) } }

    /// Every record as one line, message then metadata, joined by newlines.
    public var text: String {
        records.withLock { $0.map { "\($0.message) \($0.metadata)" }.joined(separator: "\n") }
    }

    /// Keeps the record.
    public func log(event: LogEvent) {
        records.withLock { $0.append((event.message.description, event.metadata ?? [:])) }
    }

    /// Handler metadata is not kept apart: records carry what each call passed.
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }

    /// Always empty (see ``subscript(metadataKey:)``).
    public var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }

    /// Every level is kept; the logger's own level filters.
    public var logLevel: Logger.Level {
        get { .trace }
        set {}
    }
}
