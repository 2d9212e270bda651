@testable import FileNotifier
import Foundation
import Testing
import HeraldCore
import HeraldTesting

@Suite("File notifier")
struct FileNotifierTests {
    func tempDir() -> String {
        let path = NSTemporaryDirectory() + "herald-file-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func notifier(_ dir: String, _ settings: FileNotifier.Settings) throws -> FileNotifier {
        try FileNotifier(settings: settings, context: .testing(name: "audit", baseDirectory: dir))
    }

    func notification(_ name: String = "guest_booked", key: String = "k") throws -> HeraldNotification {
        try HeraldNotification.rendered(SampleEvents.event(name), for: FileNotifier.self, locale: .ja).with(key: key)
    }

    func lines(_ path: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    /// `herald render` shows the line `deliver` appends, and previewing writes nothing.
    @Test func previewIsTheLineWritten() async throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plugin = try notifier(dir, .init(path: "out.jsonl"))
        let n = try notification("guest_cancelled")
        let preview = try #require(plugin.preview(n))
        #expect(!FileManager.default.fileExists(atPath: "\(dir)/out.jsonl"))
        #expect(preview.destination == "append to \(dir)/out.jsonl")
        try await plugin.deliver(n)
        let part = try #require(preview.parts.first)
        #expect(part.name == "line")
        #expect(part.content == (try String(contentsOfFile: "\(dir)/out.jsonl", encoding: .utf8)))
    }

    /// A path that can never be written is refused when the configuration loads (check,
    /// start, reload), instead of passing and then retrying every delivery for 24 hours.
    @Test func pathThatCannotBeWrittenIsRefusedAtLoad() throws {
        let dir = tempDir()
        // Nothing can be created in /proc, not even by root (access(2) would say yes to root).
        let proc = try #require(throws: ConfigError.self) { try notifier(dir, .init(path: "/proc/herald-bookings.jsonl")) }
        #expect(proc.keyPath == "path")
        #expect(proc.message.hasPrefix("cannot create /proc/herald-bookings.jsonl: "))
        // An existing path that cannot be opened for appending: a directory.
        try FileManager.default.createDirectory(atPath: "\(dir)/taken.jsonl", withIntermediateDirectories: false)
        let taken = try #require(throws: ConfigError.self) { try notifier(dir, .init(path: "taken.jsonl")) }
        #expect(taken.message == "cannot write to \(dir)/taken.jsonl: is a directory")
        let missing = try #require(throws: ConfigError.self) { try notifier(dir, .init(path: "no/such/dir/out.jsonl")) }
        #expect(missing.message.contains("does not exist"))
        // A writable directory passes and is left as it was: no file, no probe.
        _ = try notifier(dir, .init(path: "fresh.jsonl"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["taken.jsonl"])
    }

    /// `raw` is the body as received when it is one line, and the parsed payload written
    /// compactly when the sender spread it over several: either way the line stays one line.
    @Test func rawIsTheBodyAsReceivedWhenItIsOneLine() async throws {
        let dir = tempDir()
        let n = try notifier(dir, .init(path: "out.jsonl"))
        let pretty = try #require(SampleEvents.jicooBody("guest_booked"))
        #expect(pretty.contains(UInt8(ascii: "\n")), "the sample body is pretty-printed")
        let compact = try JSONSerialization.data(withJSONObject: JSONSerialization.jsonObject(with: pretty))
        // Spacing JSONSerialization would never write: proof the bytes were copied, not re-encoded.
        let oneLine = Data(String(decoding: compact, as: UTF8.self).replacingOccurrences(of: ",\"", with: ",  \"").utf8)
        for body in [oneLine, pretty] {
            let event = try EventSource.jicoo.decode(body: body, endpoint: "/hooks/jicoo")
            try await n.deliver(try HeraldNotification.rendered(event, for: FileNotifier.self).with(key: "k"))
        }
        let text = try String(contentsOfFile: "\(dir)/out.jsonl", encoding: .utf8)
        let written = text.split(separator: "\n")
        #expect(written.count == 2)
        #expect(written[0].hasSuffix(",\"raw\":" + String(decoding: oneLine, as: UTF8.self) + "}"))
        let raws = try lines("\(dir)/out.jsonl").map { try #require($0["raw"] as? [String: Any]) }
        #expect(raws.map { ($0["object"] as? [String: Any])?["uid"] as? String } == ["bk_7Qx2mZp9", "bk_7Qx2mZp9"])
        #expect(NSDictionary(dictionary: raws[0]).isEqual(to: raws[1]))
    }

    /// The attempt is a JSON number for one digit and for several (written two ways).
    @Test(arguments: [1, 9, 10, 123])
    func attemptIsANumber(attempt: Int) throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var note = try notification()
        note.attempt = attempt
        let text = String(decoding: try notifier(dir, .init(path: "out.jsonl")).line(for: note), as: UTF8.self)
        #expect(text.contains(",\"attempt\":\(attempt),\"receivedAt\":"))
        let line = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(line["attempt"] as? Int == attempt)
    }

    @Test func writesOneJSONLinePerNotification() async throws {
        let dir = tempDir()
        let n = try notifier(dir, .init(path: "out.jsonl", fsync: true))
        let note = try notification("guest_cancelled", key: "evt_1.audit")
        try await n.deliver(note)
        let all = try lines("\(dir)/out.jsonl")
        #expect(all.count == 1)
        let line = all[0]
        #expect(line["eventId"] as? String == note.event.id)
        #expect(line["event"] as? String == "guest_cancelled")
        #expect(line["notifier"] as? String == "audit")
        #expect(line["deliveryKey"] as? String == "evt_1.audit")
        #expect((line["title"] as? String)?.contains("山田 太郎") == true)
        #expect((line["text"] as? String)?.contains("別の予定が入ったため") == true)
        let raw = try #require(line["raw"] as? [String: Any])
        #expect((raw["object"] as? [String: Any])?["uid"] as? String == "bk_7Qx2mZp9")
        #expect(line["receivedAt"] as? String != nil)
    }

    @Test func concurrentDeliveriesNeverInterleave() async throws {
        let dir = tempDir()
        let n = try notifier(dir, .init(path: "out.jsonl"))
        let note = try notification()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<500 { group.addTask { try await n.deliver(note.with(key: "key-\(i)")) } }
            try await group.waitForAll()
        }
        let keys = try lines("\(dir)/out.jsonl").compactMap { $0["deliveryKey"] as? String }
        #expect(keys.count == 500)
        #expect(Set(keys).count == 500)
    }

    @Test func rotatesBySizeAndKeepsACount() async throws {
        let dir = tempDir()
        let n = try notifier(dir, .init(path: "out.jsonl", maxBytes: 4000, keep: 2))
        for i in 0..<20 { try await n.deliver(try notification().with(key: "k\(i)")) }
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
        #expect(files == ["out.jsonl", "out.jsonl.1", "out.jsonl.2"])
        for f in files {
            let size = try #require(try FileManager.default.attributesOfItem(atPath: "\(dir)/\(f)")[.size] as? Int)
            #expect(size <= 4000)
            #expect(try lines("\(dir)/\(f)").count >= 1)
        }
        // The newest line is in the live file.
        #expect(try lines("\(dir)/out.jsonl").last?["deliveryKey"] as? String == "k19")
    }

    /// Lines of concurrent deliveries are written together; rotation still splits them line by
    /// line at the size limit, and each is written whole, once, fsynced or not.
    @Test(arguments: [false, true])
    func concurrentDeliveriesRotateLineByLine(fsync: Bool) async throws {
        let dir = tempDir()
        let n = try notifier(dir, .init(path: "out.jsonl", fsync: fsync, maxBytes: 20_000, keep: 1000))
        let note = try notification()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<300 { group.addTask { try await n.deliver(note.with(key: "key-\(i)")) } }
            try await group.waitForAll()
        }
        var keys: [String] = []
        for file in try FileManager.default.contentsOfDirectory(atPath: dir) {
            let size = try #require(try FileManager.default.attributesOfItem(atPath: "\(dir)/\(file)")[.size] as? Int)
            #expect(size <= 20_000, "\(file)")
            keys += try lines("\(dir)/\(file)").compactMap { $0["deliveryKey"] as? String }
        }
        #expect(keys.count == 300)
        #expect(Set(keys) == Set((0..<300).map { "key-\($0)" }))
    }

    /// Without fsync, each MiB appended is handed to the kernel's write-back at once rather
    /// than left to pile up in memory; with fsync nothing is left to hand over.
    @Test(arguments: [false, true])
    func eachMiBIsHandedToWriteBackWithoutFsync(fsync: Bool) async throws {
        let dir = tempDir()
        let n = try notifier(dir, .init(path: "out.jsonl", fsync: fsync))
        let note = try notification()
        var count = 0
        var size = 0
        while size < 3 * LineWriter.handOverBytes + LineWriter.handOverBytes / 2 {
            try await n.deliver(note.with(key: "key-\(count)"))
            count += 1
            size = try #require(try FileManager.default.attributesOfItem(atPath: "\(dir)/out.jsonl")[.size] as? Int)
        }
        #expect(n.writer.handOvers == (fsync ? 0 : 3))
        #expect(try lines("\(dir)/out.jsonl").count == count)
    }

    /// A rotated file is handed over from its own start: each file of 1.5 MiB is handed over
    /// once, though the new file usually gets the old one's descriptor number.
    @Test func aRotatedFileIsHandedOverFromItsStart() async throws {
        let dir = tempDir()
        let n = try notifier(dir, .init(path: "out.jsonl", maxBytes: 3 * LineWriter.handOverBytes / 2, keep: 10))
        let note = try notification()
        var written = 0
        var count = 0
        while written < 4 * LineWriter.handOverBytes + LineWriter.handOverBytes / 4 {
            let line = n.line(for: note.with(key: "key-\(count)"))
            try await n.deliver(note.with(key: "key-\(count)"))
            written += line.count
            count += 1
        }
        var full = 0
        for file in try FileManager.default.contentsOfDirectory(atPath: dir) {
            let size = try #require(try FileManager.default.attributesOfItem(atPath: "\(dir)/\(file)")[.size] as? Int)
            if size >= LineWriter.handOverBytes { full += 1 }
        }
        #expect(full == 3)
        #expect(n.writer.handOvers == full)
    }

    @Test func appendsToAnExistingFile() async throws {
        let dir = tempDir()
        try "{\"existing\":true}\n".write(toFile: "\(dir)/out.jsonl", atomically: true, encoding: .utf8)
        try await notifier(dir, .init(path: "out.jsonl")).deliver(try notification())
        #expect(try lines("\(dir)/out.jsonl").count == 2)
    }

    @Test func badSettingsAreConfigErrors() throws {
        let dir = tempDir()
        #expect(throws: ConfigError.self) { try notifier(dir, .init(path: "/nonexistent-dir/x.jsonl")) }
        #expect(throws: ConfigError.self) { try notifier(dir, .init(path: "x", keep: 0)) }
        #expect(throws: ConfigError.self) { try notifier(dir, .init(path: "")) }
    }

    @Test func misspelledSettingIsRefusedWithASuggestion() throws {
        let error = #expect(throws: ConfigError.self) {
            try FileNotifier.configured("path: out.jsonl\nfsnyc: true", context: .testing(baseDirectory: tempDir()))
        }
        #expect(error?.keyPath == "fsnyc")
        #expect(error?.line == 2)
        #expect(error?.column == 1)
        #expect(error?.message == "unknown key; did you mean \"fsync\"? (known keys: fsync, keep, maxBytes, path)")
    }

    /// A path that became unwritable after the configuration was loaded.
    @Test func unwritableFileIsARetryableDeliveryError() async throws {
        let dir = tempDir()
        let n = try notifier(dir, .init(path: "blocked.jsonl"))
        try FileManager.default.createDirectory(atPath: "\(dir)/blocked.jsonl", withIntermediateDirectories: true)
        let error = await #expect(throws: DeliveryError.self) { try await n.deliver(try notification()) }
        #expect(error?.isRetryable == true)
    }
}

extension HeraldNotification {
    func with(key: String) -> HeraldNotification {
        var copy = self
        copy.deliveryKey = key
        return copy
    }
}
