import AsyncHTTPClient
import Foundation
import HeraldCore
import NIOCore
import Synchronization
import Testing

/// Herald's promise, tested on the real binary: once it answered 202, the notification is
/// delivered, even if the process is killed with SIGKILL right after.
@Suite("crash recovery", .serialized)
struct CrashRecoveryTests {
    let secret = "crash-test-secret"

    /// `count` distinct Jicoo bodies (a unique booking uid each, so dedupe cannot merge them).
    func bodies(_ count: Int) throws -> [Data] {
        let template = try String(contentsOf: HeraldProcess.sharedVectors.appendingPathComponent("jicoo-events/guest_booked.json"), encoding: .utf8)
        return (0..<count).map { Data(template.replacingOccurrences(of: "bk_7Qx2mZp9", with: "bk_crash_\($0)").utf8) }
    }

    @Test func everyAcknowledgedEventIsDeliveredAfterKill9() async throws {
        let dir = tempDir()
        let config = "\(dir)/herald.yaml"
        try """
            storage: { path: ./journal }
            log: { level: notice, format: json }
            endpoints: [{ path: /hooks/jicoo, secrets: [\(secret)] }]
            notifiers:
              audit: { kind: file, path: ./out.jsonl, concurrency: 8 }
            routes:
              - { events: ["*"], notify: [audit] }
            """.write(toFile: config, atomically: true, encoding: .utf8)

        let first = try await HeraldProcess(config: config)
        let all = try bodies(2000)
        let tally = Tally()
        let url = "\(first.url)/hooks/jicoo"
        // 2,000 requests, 64 at a time; SIGKILL once 600 have been acknowledged.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, body) in all.enumerated() {
                if i >= 64 { try await group.next() }
                // Once the server is dead, stop: a client would retry the refused connection
                // until each request's deadline.
                if tally.killed.load(ordering: .relaxed) { break }
                group.addTask {
                    guard let (status, text) = try? await postSigned(url, body: body, secret: secret, timeout: .seconds(10)), status == 202 else { return }
                    let id = (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])?["id"] as? String
                    let n = tally.acknowledged.withLock { list in
                        if let id { list.append(id) }
                        return list.count
                    }
                    if n >= 600, !tally.killed.exchange(true, ordering: .relaxed) {
                        kill(first.process.processIdentifier, SIGKILL)
                    }
                }
            }
            try await group.waitForAll()
        }
        let wasKilled = tally.killed.load(ordering: .relaxed)
        #expect(wasKilled)
        let accepted = Set(tally.acknowledged.withLock { $0 })
        #expect(accepted.count >= 600)
        #expect(accepted.count < 2000, "the kill must land partway")
        _ = try? await first.stop(signal: SIGKILL, timeout: .seconds(5))

        // Restart on the same journal: everything acknowledged must arrive.
        let second = try await HeraldProcess(config: config)
        let delivered = try await waitUntil(.seconds(60)) {
            accepted.isSubset(of: Set(jsonLines("\(dir)/out.jsonl").compactMap { $0["eventId"] as? String }))
        }
        let lines = jsonLines("\(dir)/out.jsonl").compactMap { $0["eventId"] as? String }
        let missing = accepted.subtracting(lines)
        #expect(delivered, "\(missing.count) acknowledged events were never delivered, e.g. \(missing.prefix(3))")
        // At-least-once: a duplicate line may only come from a delivery that was in flight.
        let recovered = second.log.firstMatch(of: /recovered (\d+) deliveries/).map { Int($0.1) ?? 0 } ?? 0
        let duplicates = lines.count - Set(lines).count
        #expect(duplicates <= recovered, "\(duplicates) duplicate lines but only \(recovered) deliveries were in flight")
        #expect(try await second.stop() == 0)
    }
}

/// What the load loop saw, shared by its tasks.
final class Tally: Sendable {
    let acknowledged = Mutex<[String]>([])
    let killed = Atomic<Bool>(false)
}
