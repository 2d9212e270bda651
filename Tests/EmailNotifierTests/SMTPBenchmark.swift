import Foundation
import HeraldCore
import Testing
@testable import EmailNotifier

/// Throughput against the SMTP server that `benchmarks/smtp/run.sh` starts. Skipped unless
/// `HERALD_BENCH=1`; the result goes to `HERALD_BENCH_OUT` as `name msgs_per_second`.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["HERALD_BENCH"] == "1"))
struct SMTPBenchmark {
    let environment = ProcessInfo.processInfo.environment

    @Test func messagesPerSecond() async throws {
        let port = try #require(environment["HERALD_BENCH_PORT"].flatMap(Int.init), "HERALD_BENCH_PORT is not set")
        let count = environment["HERALD_BENCH_N"].flatMap(Int.init) ?? 2000
        let notification = try Fixtures.notification(html: false)

        // One connection, one message at a time: the same work as smtplib over one session.
        let sequential = try EmailNotifier(settings: Fixtures.settings(port: port) { $0.cc = nil; $0.bcc = nil; $0.maxConnections = 1 },
                                           context: Fixtures.context())
        try await sequential.deliver(notification)  // connect and EHLO outside the clock
        let start = ContinuousClock.now
        for _ in 0..<count { try await sequential.deliver(notification) }
        let sequentialRate = Double(count) / (ContinuousClock.now - start).seconds
        await sequential.shutdown()

        // Four pooled connections, eight deliveries in flight.
        let pooled = try EmailNotifier(settings: Fixtures.settings(port: port) { $0.cc = nil; $0.bcc = nil; $0.maxConnections = 4 },
                                       context: Fixtures.context())
        let pooledStart = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    for _ in stride(from: worker, to: count, by: 8) { try await pooled.deliver(notification) }
                }
            }
            try await group.waitForAll()
        }
        let pooledRate = Double(count) / (ContinuousClock.now - pooledStart).seconds
        await pooled.shutdown()

        let report = "herald_sequential \(Int(sequentialRate))\nherald_pooled_4 \(Int(pooledRate))\n"
        if let out = environment["HERALD_BENCH_OUT"] {
            try report.write(toFile: out, atomically: true, encoding: .utf8)
        }
        #expect(sequentialRate > 0 && pooledRate > 0)
    }
}
