import Foundation
import HeraldPlugin

#if canImport(Glibc)
import Glibc
#endif

/// Appends one JSON line per notification to a file: an audit log, or input for other tools.
///
/// ```yaml
/// notifiers:
///   audit:
///     kind: file
///     path: ./bookings.jsonl     # relative to the config file
///     fsync: true                # flush each line to disk before reporting success
///     maxBytes: 10485760         # rotate when the next line would pass this size (0: never)
///     keep: 5                    # rotated files to keep: bookings.jsonl.1 … .5
/// ```
///
/// Each line: `{"eventId", "event", "notifier", "deliveryKey", "attempt", "receivedAt",
/// "title", "text", "raw"}`, where `raw` is the webhook body as JSON. Lines are written with
/// one `write(2)` on an `O_APPEND` descriptor, so concurrent deliveries never interleave.
public struct FileNotifier: NotifierPlugin {
    public static let kind = "file"
    public static let usesHTML = false

    public struct Settings: Decodable, Sendable {
        public var path: String
        public var fsync: Bool?
        public var maxBytes: Int?
        public var keep: Int?

        public init(path: String, fsync: Bool? = nil, maxBytes: Int? = nil, keep: Int? = nil) {
            self.path = path
            self.fsync = fsync
            self.maxBytes = maxBytes
            self.keep = keep
        }
    }

    let writer: LineWriter
    let name: String

    public init(settings: Settings, context: PluginContext) throws {
        guard !settings.path.isEmpty else { throw ConfigError(key: "path", "must not be empty") }
        if let max = settings.maxBytes, max < 0 { throw ConfigError(key: "maxBytes", "must be 0 (no rotation) or more") }
        if let keep = settings.keep, !(1...1000).contains(keep) { throw ConfigError(key: "keep", "must be between 1 and 1000") }
        let path = context.resolvePath(settings.path)
        let dir = (path as NSString).deletingLastPathComponent
        var isDir: ObjCBool = false
        guard dir.isEmpty || (FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) && isDir.boolValue) else {
            throw ConfigError(key: "path", "the directory \(dir) does not exist")
        }
        try Self.checkWritable(path: path, directory: dir)
        writer = LineWriter(path: path, fsync: settings.fsync ?? false, maxBytes: settings.maxBytes ?? 0, keep: settings.keep ?? 5)
        name = context.name
    }

    /// Refuses a path Herald could never write when the configuration is loaded (`herald
    /// check`, start, reload) rather than retrying every delivery to it for a day. An
    /// existing file is opened for appending and closed (nothing is written); otherwise a
    /// probe file is created in the directory and removed. Trying beats `access(2)`, which
    /// says yes to root even on a directory where nothing can be created.
    static func checkWritable(path: String, directory: String) throws {
        let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NONBLOCK)
        if fd >= 0 { close(fd); return }
        guard errno == ENOENT else { throw ConfigError(key: "path", "cannot write to \(path): \(SystemErrorText.reason(errno))") }
        var probe = Array("\(directory.isEmpty ? "." : directory)/.herald-write-check-XXXXXX".utf8CString)
        let probeFD = mkstemp(&probe)
        guard probeFD >= 0 else {
            throw ConfigError(key: "path", "cannot create \(path): \(SystemErrorText.reason(errno)) in \(directory.isEmpty ? "." : directory)")
        }
        close(probeFD)
        unlink(probe)
    }

    public func deliver(_ notification: HeraldNotification) async throws {
        try await writer.append(line(for: notification))
    }

    /// The line ``deliver(_:)`` appends, shown without writing it.
    public func preview(_ notification: HeraldNotification) -> DeliveryPreview? {
        DeliveryPreview(destination: "append to \(writer.path)",
                        parts: [DeliveryPreview.Part(name: "line", contentType: "application/json",
                                                     content: String(decoding: line(for: notification), as: UTF8.self))])
    }

    /// The JSON line for a notification, newline included. Written by hand rather than with
    /// `JSONEncoder`: this runs for every delivery and the shape is fixed.
    func line(for notification: HeraldNotification) -> [UInt8] {
        let event = notification.event
        var out: [UInt8] = []
        out.reserveCapacity(event.body.count + notification.text.utf8.count + 256)
        func field(_ key: StaticString, _ value: String) {
            out.append(contentsOf: UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount))
            JSONValue.writeString(value, to: &out)
        }
        field("{\"eventId\":", event.id)
        field(",\"event\":", event.name)
        field(",\"notifier\":", name)
        field(",\"deliveryKey\":", notification.deliveryKey)
        out.append(contentsOf: ",\"attempt\":\(notification.attempt)".utf8)
        field(",\"receivedAt\":", ISO8601.format(event.receivedAt))
        field(",\"title\":", notification.title)
        field(",\"text\":", notification.text)
        out.append(contentsOf: ",\"raw\":".utf8)
        // The body as received when it is already one line of JSON (a decoded event's
        // payload is its body, parsed): copied, not written again from the parsed value,
        // which cost a fifth of the line's instructions. A body spread over several lines,
        // or starting with a byte order mark, is written from the payload.
        if event.hasObjectPayload, Self.isOneLine(event.body) {
            out.append(contentsOf: event.body)
        } else {
            event.payload.write(to: &out)
        }
        out.append(contentsOf: "}\n".utf8)
        return out
    }

    /// True when `body` can stand in a JSON line as it is: not empty, no line break (JSON
    /// strings cannot hold a raw one, so any would be whitespace between tokens) and no byte
    /// order mark.
    static func isOneLine(_ body: Data) -> Bool {
        body.withUnsafeBytes { bytes in
            guard let base = bytes.baseAddress, bytes.count > 0, bytes[0] != 0xEF else { return false }
            return memchr(base, 0x0A, bytes.count) == nil && memchr(base, 0x0D, bytes.count) == nil
        }
    }
}

/// Owns the file descriptor; one line at a time, rotation included.
actor LineWriter {
    let path: String
    let fsync: Bool
    let maxBytes: Int
    let keep: Int
    private var fd: Int32 = -1
    private var size = 0

    init(path: String, fsync: Bool, maxBytes: Int, keep: Int) {
        self.path = path
        self.fsync = fsync
        self.maxBytes = maxBytes
        self.keep = keep
    }

    deinit { if fd >= 0 { close(fd) } }

    func append(_ data: [UInt8]) throws {
        try openIfNeeded()
        if maxBytes > 0, size > 0, size + data.count > maxBytes { try rotate() }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == data.count else {
            let reason = written < 0 ? String(cString: strerror(errno)) : "short write"
            // A failed or short write may leave a partial line: start the next one on a fresh line.
            if written > 0 { _ = "\n".withCString { write(fd, $0, 1) } }
            throw DeliveryError.retryable("cannot write to \(path): \(reason)")
        }
        size += data.count
        if fsync, Glibc.fsync(fd) != 0 {
            throw DeliveryError.retryable("cannot fsync \(path): \(String(cString: strerror(errno)))")
        }
    }

    private func openIfNeeded() throws {
        guard fd < 0 else { return }
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            throw DeliveryError.retryable("cannot open \(path): \(reason)")
        }
        var st = stat()
        size = fstat(fd, &st) == 0 ? Int(st.st_size) : 0
    }

    /// bookings.jsonl → .1 → .2 … up to `keep`; the oldest is removed.
    private func rotate() throws {
        close(fd)
        fd = -1
        unlink("\(path).\(keep)")
        if keep > 1 {
            for n in stride(from: keep - 1, through: 1, by: -1) { rename("\(path).\(n)", "\(path).\(n + 1)") }
        }
        guard rename(path, "\(path).1") == 0 else {
            throw DeliveryError.retryable("cannot rotate \(path): \(String(cString: strerror(errno)))")
        }
        try openIfNeeded()
    }
}
