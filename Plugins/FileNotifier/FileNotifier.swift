import Foundation
import HeraldPlugin
import Synchronization

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
/// "title", "text", "raw"}`, where `raw` is the webhook body as JSON. Lines are written whole,
/// each in one `write(2)` on an `O_APPEND` descriptor (lines of deliveries that finish together
/// share one), so concurrent deliveries never interleave.
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
        // Fixed text goes in from its static bytes: appending a String's UTF-8 view went
        // through a generic copy of about 170 instructions each time.
        func put(_ text: StaticString) {
            out.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
        }
        func field(_ key: StaticString, _ value: String) {
            put(key)
            JSONValue.writeString(value, to: &out)
        }
        field("{\"eventId\":", event.id)
        field(",\"event\":", event.name)
        field(",\"notifier\":", name)
        field(",\"deliveryKey\":", notification.deliveryKey)
        put(",\"attempt\":")
        if (0...9).contains(notification.attempt) {
            out.append(UInt8(ascii: "0") + UInt8(notification.attempt))
        } else {
            out.append(contentsOf: String(notification.attempt).utf8)
        }
        field(",\"receivedAt\":", ISO8601.format(event.receivedAt))
        field(",\"title\":", notification.title)
        field(",\"text\":", notification.text)
        put(",\"raw\":")
        // The body as received when it is already one line of JSON (a decoded event's
        // payload is its body, parsed): copied, not written again from the parsed value,
        // which cost a fifth of the line's instructions. A body spread over several lines,
        // or starting with a byte order mark, is written from the payload. Copied from its
        // bytes: `append(contentsOf: Data)` took the generic path, 1,800 instructions for 1 KB.
        if event.hasObjectPayload, Self.isOneLine(event.body) {
            event.body.withUnsafeBytes { out.append(contentsOf: $0) }
        } else {
            event.payload.write(to: &out)
        }
        put("}\n")
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
/// Appends lines to one file, each whole. Lines that arrive while another delivery is writing
/// wait, and that delivery then writes them too, together, with one `write(2)` (and one
/// `fsync`): under load a line costs a share of a system call instead of one of its own, and
/// what the file holds is the same as writing the lines one by one in that order.
final class LineWriter: Sendable {
    let path: String
    let fsync: Bool
    let maxBytes: Int
    let keep: Int

    private struct Waiter {
        let line: [UInt8]
        let continuation: UnsafeContinuation<Void, any Error>
    }

    private struct State {
        /// Lines waiting for the delivery that writes.
        var queue: [Waiter] = []
        /// A delivery is writing; it writes whatever is queued until the queue is empty.
        var writing = false
        /// The open file and its size: only the delivery that writes uses them.
        var fd: Int32 = -1
        var size = 0
        /// Where the kernel was last asked to write the file back (without `fsync`).
        var handedOver = 0
    }

    /// Without `fsync`, the bytes appended after which the kernel is asked to start writing
    /// them to disk (`posix_fadvise(POSIX_FADV_DONTNEED)`, which does not wait). Left alone,
    /// the lines of a busy minute pile up in the page cache (120 MB after 10 s of `wrk`) and
    /// the kernel writes them in one burst 30 s later; every fsync on the same disk (the
    /// journal's, before each answer) then waits behind it: p99 of the answer 21 and 34 ms
    /// at 1,000 webhooks a second, against 6.5 and 9.0 ms with nothing left to write back.
    static let handOverBytes = 1 << 20

    private let state = Mutex(State())
    private let handOverCount = Atomic<Int>(0)

    init(path: String, fsync: Bool, maxBytes: Int, keep: Int) {
        self.path = path
        self.fsync = fsync
        self.maxBytes = maxBytes
        self.keep = keep
    }

    deinit {
        let fd = state.withLock { $0.fd }
        if fd >= 0 { close(fd) }
    }

    func append(_ line: [UInt8]) async throws {
        // Unsafe, not checked: each waiter is resumed exactly once, by the delivery that writes its line.
        try await withUnsafeThrowingContinuation { continuation in
            let writes = state.withLock { state -> Bool in
                state.queue.append(Waiter(line: line, continuation: continuation))
                guard !state.writing else { return false }
                state.writing = true
                return true
            }
            if writes { drain() }
        }
    }

    /// How many times the kernel was asked to write the file back (for tests).
    var handOvers: Int { handOverCount.load(ordering: .relaxed) }

    /// Writes what is queued, then what was queued meanwhile, until nothing is.
    private func drain() {
        var (fd, size, handedOver) = state.withLock { ($0.fd, $0.size, $0.handedOver) }
        while true {
            let batch = state.withLock { state -> [Waiter] in
                defer { state.queue = [] }
                if state.queue.isEmpty {
                    state.writing = false
                    state.fd = fd
                    state.size = size
                    state.handedOver = handedOver
                }
                return state.queue
            }
            guard !batch.isEmpty else { return }
            let results = write(batch.map(\.line), fd: &fd, size: &size, handedOver: &handedOver)
            for (waiter, result) in zip(batch, results) { waiter.continuation.resume(with: result) }
        }
    }

    /// Writes `lines` in order: as few writes as rotation allows. Each line's result: a line
    /// fully written before a failure succeeds, the rest fail as they would one by one.
    /// Without `fsync`, each ``handOverBytes`` written since `handedOver` (a new file's size when
    /// it is opened) go to write-back.
    private func write(_ lines: [[UInt8]], fd: inout Int32, size: inout Int, handedOver: inout Int)
        -> [Result<Void, any Error>] {
        var results = [Result<Void, any Error>](repeating: .success(()), count: lines.count)
        var start = 0
        while start < lines.count {
            do {
                if fd < 0 {
                    (fd, size) = try open()
                    handedOver = size
                }
                if maxBytes > 0, size > 0, size + lines[start].count > maxBytes {
                    close(fd)
                    fd = -1
                    try rotate()
                    (fd, size) = try open()
                    handedOver = size
                }
                // The lines that fit before the next rotation, and at least this one.
                var end = start + 1
                var total = lines[start].count
                while end < lines.count, maxBytes == 0 || size + total + lines[end].count <= maxBytes {
                    total += lines[end].count
                    end += 1
                }
                let written = Self.write(lines[start..<end], total: total, to: fd)
                if written == total {
                    size += total
                    if fsync, Glibc.fsync(fd) != 0 {
                        let failure = DeliveryError.retryable("cannot fsync \(path): \(String(cString: strerror(errno)))")
                        for index in start..<end { results[index] = .failure(failure) }
                    } else if !fsync, size - handedOver >= Self.handOverBytes {
                        _ = posix_fadvise(fd, off_t(handedOver), off_t(size - handedOver), POSIX_FADV_DONTNEED)
                        handedOver = size
                        handOverCount.add(1, ordering: .relaxed)
                    }
                    start = end
                    continue
                }
                let reason = written < 0 ? String(cString: strerror(errno)) : "short write"
                var index = start
                if written > 0 {
                    size += written
                    var whole = 0
                    while index < end, whole + lines[index].count <= written {
                        whole += lines[index].count
                        index += 1
                    }
                    // A partial line: start the next one on a fresh line.
                    if whole < written, "\n".withCString({ Glibc.write(fd, $0, 1) }) == 1 { size += 1 }
                }
                for failed in index..<end {
                    results[failed] = .failure(DeliveryError.retryable("cannot write to \(path): \(reason)"))
                }
                start = end
            } catch {
                for failed in start..<lines.count { results[failed] = .failure(error) }
                break
            }
        }
        return results
    }

    /// One `write(2)` of `lines` (copied together when there are several); bytes written, or -1.
    private static func write(_ lines: ArraySlice<[UInt8]>, total: Int, to fd: Int32) -> Int {
        if lines.count == 1, let line = lines.first {
            return line.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        }
        var joined: [UInt8] = []
        joined.reserveCapacity(total)
        for line in lines { joined.append(contentsOf: line) }
        return joined.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    }

    /// Opens the file for appending; its descriptor and size.
    private func open() throws -> (Int32, Int) {
        let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            throw DeliveryError.retryable("cannot open \(path): \(reason)")
        }
        var st = stat()
        return (fd, fstat(fd, &st) == 0 ? Int(st.st_size) : 0)
    }

    /// bookings.jsonl → .1 → .2 … up to `keep`; the oldest is removed.
    private func rotate() throws {
        unlink("\(path).\(keep)")
        if keep > 1 {
            for n in stride(from: keep - 1, through: 1, by: -1) { rename("\(path).\(n)", "\(path).\(n + 1)") }
        }
        guard rename(path, "\(path).1") == 0 else {
            throw DeliveryError.retryable("cannot rotate \(path): \(String(cString: strerror(errno)))")
        }
    }
}
