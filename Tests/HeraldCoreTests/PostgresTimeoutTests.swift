import Foundation
import HeraldCore
@testable import HeraldPostgres
import Synchronization
import Testing

/// The PostgreSQL journal's bound on every operation (``PostgresJournal/first(of:within:clock:)``),
/// and a server that accepts connections but never answers. No PostgreSQL server is needed.
@Suite("PostgreSQL operation timeout")
struct PostgresTimeoutTests {
    @Test func anAnswerInTimeIsReturned() async throws {
        try await withRunningClock { clock in
            let answer = try await PostgresJournal.first(of: { 42 }, within: .seconds(30), clock: clock)
            #expect(answer == 42)
            let error = await #expect(throws: JournalError.self) {
                try await PostgresJournal.first(of: { () async throws -> Int in throw JournalError(.other, path: "", "refused") },
                                                within: .seconds(30), clock: clock)
            }
            #expect(error?.message == "refused")
        }
    }

    /// Past its timeout the operation is answered nil and cancelled: by the journal's clock,
    /// and by a timer of its own when that clock is not running.
    @Test(arguments: [true, false])
    func anOperationPastItsTimeoutIsCancelledAndAnsweredNil(clockRunning: Bool) async throws {
        let cancelled = Mutex(false)
        let slow = { @Sendable () async throws -> Int in
            do { try await Task.sleep(for: .seconds(120)) } catch {
                cancelled.withLock { $0 = true }
                throw error
            }
            return 1
        }
        if clockRunning {
            try await withRunningClock { clock in
                let answer = try await PostgresJournal.first(of: slow, within: .milliseconds(100), clock: clock)
                #expect(answer == nil)
            }
        } else {
            let answer = try await PostgresJournal.first(of: slow, within: .milliseconds(100), clock: DeadlineClock())
            #expect(answer == nil)
        }
        #expect(try await waitUntil { cancelled.withLock { $0 } })
    }

    /// The caller's cancellation ends the wait with CancellationError, long before the timeout.
    @Test func theCallersCancellationEndsTheWait() async throws {
        try await withRunningClock { clock in
            let waiting = Task {
                try await PostgresJournal.first(of: { () async throws -> Int in
                    try await Task.sleep(for: .seconds(120))
                    return 1
                }, within: .seconds(120), clock: clock)
            }
            try await Task.sleep(for: .milliseconds(50))
            waiting.cancel()
            await #expect(throws: CancellationError.self) { try await waiting.value }
        }
    }

    /// The clock rests while nothing is pending, and wakes for the next deadline; what is
    /// still pending when it stops expires then, rather than never.
    @Test func theClockWakesForANewDeadlineAndExpiresWhatIsLeftWhenItStops() async throws {
        let clock = DeadlineClock(idleAfter: .zero)
        let expired = Mutex<[String]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await clock.run() }
            let started = try await waitUntil { clock.schedule(at: .now + .seconds(3600), expire: {}) != nil }
            #expect(started)
            try await Task.sleep(for: .milliseconds(50))  // nothing due: the clock rests
            _ = clock.schedule(at: .now + .milliseconds(20)) { expired.withLock { $0.append("soon") } }
            let gone = try #require(clock.schedule(at: .now + .milliseconds(20)) { expired.withLock { $0.append("gone") } })
            clock.cancel(gone)
            _ = clock.schedule(at: .now + .seconds(3600)) { expired.withLock { $0.append("late") } }
            let soon = try await waitUntil { expired.withLock { $0 } == ["soon"] }
            #expect(soon)
            group.cancelAll()
        }
        #expect(expired.withLock { $0.sorted() } == ["late", "soon"])
        #expect(clock.schedule(at: .now, expire: {}) == nil, "a stopped clock takes no deadline")
    }

    /// A server that takes the connection and never answers (here a socket that listens but
    /// never accepts: the kernel completes the handshake): an operation fails as unavailable
    /// once the operation timeout has passed, its diagnosis bounded by it too, instead of
    /// waiting for good. (Starting with `withJournal` fails earlier, on its connection check,
    /// bounded by the connect timeout.)
    @Test func aServerThatNeverAnswersIsUnavailable() async throws {
        let silent = SilentListener()
        let url = try PostgresURL(parsing: "postgresql://bot:not-the-password@127.0.0.1:\(silent.port)/db?sslmode=disable")
        let journal = try PostgresJournal(url: url, poolSize: 1, operationTimeout: .milliseconds(300))
        let error = await #expect(throws: JournalError.self) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await journal.run() }
                defer { group.cancelAll() }
                _ = try await journal.schemaVersion()
            }
        }
        #expect(error?.kind == .unavailable)
        #expect(error?.message == "PostgreSQL at 127.0.0.1:\(silent.port) did not answer within 0.3 seconds",
                "\(String(describing: error?.message))")
        #expect(error.map { !"\($0)".contains("not-the-password") } == true)
    }
}

/// Runs `body` with `clock` running, then stops it.
private func withRunningClock(_ body: (DeadlineClock) async throws -> Void) async throws {
    let clock = DeadlineClock()
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await clock.run() }
        defer { group.cancelAll() }
        let started = try await waitUntil { clock.schedule(at: .now + .seconds(3600), expire: {}) != nil }
        #expect(started)
        try await body(clock)
    }
}

/// A socket on 127.0.0.1 that listens and never accepts, for as long as this object lives.
private final class SilentListener: Sendable {
    let port: Int
    private let fd: Int32

    init() {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        listen(fd, 16)
        port = Int(UInt16(bigEndian: addr.sin_port))
    }

    deinit { close(fd) }
}
