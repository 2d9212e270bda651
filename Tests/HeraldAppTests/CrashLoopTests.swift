import Foundation
import HeraldCore
import HeraldTesting
import Testing

/// What once kept Herald down: a target's absurd `Retry-After` trapped the process, and the
/// delivery it was making stayed in flight, so every restart tried it again and trapped again.
extension IntegrationTests {
    /// A chat target answering 429 with a Retry-After no integer holds: Herald stays up, and
    /// the delivery waits at most `retry.maxRetryAfter` instead of dying.
    @Test(arguments: ["99999999999999999999999", "1e20"])
    func absurdRetryAfterDoesNotStopHerald(retryAfter: String) async throws {
        let replies: [HTTPRecorder.Reply] = [.init(status: 429, headers: ["Retry-After": retryAfter]), .init()]
        try await HTTPRecorder.with(replies: replies) { recorder in
            let dir = tempDir()
            let path = try config(dir, notifiers: """
                  sales: { kind: slack, webhookURL: "\(recorder.base)/hook", retry: { maxRetryAfter: 2s } }
                """, route: ["sales"])
            let herald = try await HeraldProcess(config: path, environment: ["IT_JICOO_SECRET": secret])
            #expect(try await postSigned("\(herald.url)/hooks/jicoo", body: try event("guest_booked"), secret: secret).0 == 202)
            // The 429, then the retry about 2 s later (the cap), which the recorder answers 200.
            #expect(try await waitUntil(.seconds(20)) { recorder.requests(to: "/hook").count == 2 })
            #expect(herald.process.isRunning, "herald stopped after a 429 with Retry-After: \(retryAfter)")
            #expect(try await waitUntil { try await cli(["deliveries", "list", "--config", path]).1.contains("delivered") })
            #expect(try await herald.stop() == 0)
            #expect(!herald.log.contains("cannot be converted"))
        }
    }

    /// A delivery that was in flight at three crashes is set aside as dead when Herald starts,
    /// with the reason, and the other deliveries are sent.
    @Test func deliveryInFlightAtThreeCrashesIsSetAsideOnStart() async throws {
        try await HTTPRecorder.with { recorder in
            let dir = tempDir()
            let path = try config(dir, notifiers: """
                  sales: { kind: slack, webhookURL: "\(recorder.base)/hook" }
                """, route: ["sales"])
            // Two events accepted by an earlier process; the first one's delivery was in flight
            // at two crashes already, and at a third.
            var stuck: Int64 = 0
            do {
                let journal = try SQLiteJournal(directory: "\(dir)/journal", dedupeTTL: .seconds(60))
                for (i, name) in ["guest_booked", "guest_cancelled"].enumerated() {
                    let event = try EventSource.jicoo.decode(body: try self.event(name), endpoint: "/hooks/jicoo")
                    guard case .accepted(let ids) = try await journal.append(JournalEntry(event: event, dedupeKey: nil, notifiers: ["sales"]))
                    else { Issue.record("not accepted"); return }
                    if i == 0 { stuck = ids["sales"]! }
                }
                // Three processes in turn took it and stopped during the attempt.
                for owner in ["crashed-1", "crashed-2", "crashed-3"] {
                    _ = try await journal.instanceStarted(owner: owner)
                    let taken = try await journal.lease(LeaseRequest(
                        notifier: "sales", owner: owner, now: Date(), until: Date() + 60, limit: 1, deadAfter: 3))
                    #expect(taken.deliveries.map(\.record.id) == [stuck])
                }
                try journal.close()
            }
            let herald = try await HeraldProcess(config: path, environment: ["IT_JICOO_SECRET": secret])
            #expect(try await waitUntil(.seconds(20)) { recorder.requests(to: "/hook").count == 1 })
            let (status, shown) = try await cli(["deliveries", "show", String(stuck), "--config", path])
            #expect(status == 0)
            #expect(shown.contains("dead"))
            #expect(shown.contains("the process stopped during this delivery 3 times"))
            #expect(herald.log.contains("set aside as dead"))
            #expect(try await herald.stop() == 0)
            #expect(recorder.requests(to: "/hook").count == 1)
        }
    }
}
