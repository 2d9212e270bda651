import Foundation
import HeraldCore
import Logging
import Synchronization
import Testing

@Suite("Log throttle")
struct LogThrottleTests {
    /// A clock the test moves by hand.
    final class ManualClock: Sendable {
        let start = ContinuousClock.now
        let offset = Mutex<Duration>(.zero)
        var now: ContinuousClock.Instant { start + offset.withLock { $0 } }
        func advance(_ d: Duration) { offset.withLock { $0 += d } }
    }

    @Test func firstIsLoggedThenCountedUntilTheIntervalPasses() {
        let clock = ManualClock()
        let throttle = LogThrottle(interval: .seconds(10)) { clock.now }
        #expect(throttle.admit() == 0)
        for _ in 0..<1234 { #expect(throttle.admit() == nil) }
        clock.advance(.seconds(9))
        #expect(throttle.admit() == nil)
        clock.advance(.seconds(1))
        #expect(throttle.admit() == 1235)
        #expect(throttle.admit() == nil)
        clock.advance(.seconds(30))
        #expect(throttle.admit() == 1)
        clock.advance(.seconds(10))
        #expect(throttle.admit() == 0)
    }

    @Test func logsOneLineWithTheCount() {
        let clock = ManualClock()
        let throttle = LogThrottle(interval: .seconds(10)) { clock.now }
        let lines = CapturedLines()
        let logger = Logger(label: "t") { _ in CapturingHandler(lines: lines) }
        for _ in 0..<29_514 { throttle.log(logger, .error, "cannot store the event; answering 503") }
        clock.advance(.seconds(10))
        throttle.log(logger, .error, "cannot store the event; answering 503")
        #expect(lines.all == [
            "cannot store the event; answering 503",
            "cannot store the event; answering 503 (and 29513 more like it in the last 10s)",
        ])
    }
}

@Suite("Repeated pipeline errors")
struct RepeatedPipelineErrorTests {
    /// A flood of unsigned requests: each is answered 401, one line is logged.
    @Test func rejectedWebhooksAreLoggedOncePerInterval() async throws {
        let config = try ConfigLoader.testing().load(yaml: """
            storage: { memory: true }
            endpoints: [{ path: /hooks/jicoo, secrets: [test-secret] }]
            """)
        let lines = CapturedLines()
        let pipeline = try await Pipeline(config: config, journal: MemoryJournal(),
                                          logger: Logger(label: "t") { _ in CapturingHandler(lines: lines) })
        for _ in 0..<500 {
            let outcome = await pipeline.receive(path: "/hooks/jicoo", body: Data("{}".utf8), header: { _ in nil })
            #expect(outcome == .rejected(.missingHeader))
        }
        #expect(lines.all == ["rejected webhook"])
    }
}

final class CapturedLines: Sendable {
    let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
}

struct CapturingHandler: LogHandler {
    let lines: CapturedLines
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) { lines.lines.withLock { $0.append(event.message.description) } }
}
