import Foundation
import HeraldCore
import Logging
import PostgresNIO
import Synchronization

// How every operation of the PostgreSQL journal reaches the server: on a pooled connection or
// in a transaction, within the journal's operation timeout, its errors as `JournalError`s
// without the password.

extension PostgresJournal {
    /// Why a new connection to the server fails, as a ``JournalError``; nil if one succeeds.
    public func connectionProblem() async -> (any Error)? {
        do {
            let connection = try await PostgresConnection.connect(configuration: direct, id: 0, logger: logger)
            try? await connection.close()
            return nil
        } catch {
            return PostgresErrors.journalError(error, url: url)
        }
    }

    /// `body` on a pooled connection, within ``operationTimeout``; errors become ``JournalError``.
    func run<R: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> R) async throws -> R {
        try await guarded { try await self.client.withConnection { try await body($0) } }
    }

    /// `body` in one transaction (committed when it returns, rolled back when it throws).
    ///
    /// Not postgres-nio's `withTransaction`: after a failed query it sends `ROLLBACK` even when
    /// the connection has just closed, and a query written to a closed channel never completes,
    /// so one lost connection would hang the group commit. A closed connection needs no
    /// rollback: the server discards the transaction.
    func transaction<R: Sendable>(_ body: @escaping @Sendable (PostgresConnection) async throws -> R) async throws -> R {
        try await guarded {
            try await self.client.withConnection { connection in
                try await connection.query("BEGIN", logger: self.logger)
                let result: R
                do {
                    result = try await body(connection)
                } catch {
                    if !connection.isClosed { _ = try? await connection.query("ROLLBACK", logger: self.logger) }
                    throw error
                }
                try await connection.query("COMMIT", logger: self.logger)
                return result
            }
        }
    }

    /// `operation` within `timeout` (``operationTimeout`` by default): past it, the error says why
    /// a new connection fails when one does (`diagnose`), else that the server did not answer.
    func guarded<R: Sendable>(timeout: Duration? = nil, diagnose: Bool = true,
                                      _ operation: @escaping @Sendable () async throws -> R) async throws -> R {
        let timeout = timeout ?? operationTimeout
        do {
            guard let result = try await Self.first(of: operation, within: timeout, clock: deadlines) else {
                // The diagnosis connects afresh, which can hang the same way: bounded too.
                if diagnose, let found = try? await Self.first(of: { await self.connectionProblem() }, within: timeout, clock: deadlines),
                   let reason = found {
                    throw reason
                }
                throw JournalError(.unavailable, path: url.description,
                                   "PostgreSQL at \(url.server) did not answer within \(timeout)")
            }
            return result
        } catch {
            throw PostgresErrors.journalError(error, url: url)
        }
    }

    /// `operation`'s result, or nil once `timeout` has passed (as `clock` sees it, up to one of
    /// its ticks late), or CancellationError when the caller is cancelled, whichever comes first.
    ///
    /// Not a task group: a group returns only once every child has, and a postgres-nio query
    /// written to a connection that is closing may never complete nor heed cancellation, so the
    /// group commit, `/readyz` and shutdown would wait on it for good. The operation runs in a
    /// task of its own instead, cancelled at the timeout; if it ignores that, it is left behind
    /// and its answer dropped.
    static func first<R: Sendable>(of operation: @escaping @Sendable () async throws -> R,
                                   within timeout: Duration, clock: DeadlineClock) async throws -> R? {
        let race = Race<R?>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                race.start(continuation)
                let work = Task {
                    do { race.finish(.success(try await operation())) } catch { race.finish(.failure(error)) }
                }
                let expire: @Sendable () -> Void = { if race.finish(.success(nil)) { work.cancel() } }
                if let deadline = clock.schedule(at: .now + timeout, expire: expire) {
                    race.onFinish { work.cancel(); clock.cancel(deadline) }
                } else {
                    // The journal's clock is not running (nor is its pool): a timer of its own.
                    let timer = Task {
                        try? await Task.sleep(for: timeout)
                        expire()
                    }
                    race.onFinish { work.cancel(); timer.cancel() }
                }
            }
        } onCancel: {
            race.finish(.failure(CancellationError()))
        }
    }
}

/// The first of several outcomes to arrive resumes a continuation; the rest are dropped.
final class Race<R: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<R, any Error>?
        var early: Result<R, any Error>?
        var done = false
        var cleanup: (@Sendable () -> Void)?
    }
    private let state = Mutex(State())

    func start(_ continuation: CheckedContinuation<R, any Error>) {
        let early = state.withLock { s -> Result<R, any Error>? in
            if let early = s.early { return early }
            s.continuation = continuation
            return nil
        }
        if let early { continuation.resume(with: early) }
    }

    /// Runs `cleanup` once the race is decided (at once if it is).
    func onFinish(_ cleanup: @escaping @Sendable () -> Void) {
        let now = state.withLock { s -> Bool in
            if s.done { return true }
            s.cleanup = cleanup
            return false
        }
        if now { cleanup() }
    }

    /// Whether this outcome was the first.
    @discardableResult
    func finish(_ outcome: Result<R, any Error>) -> Bool {
        let (won, continuation, cleanup) = state.withLock { s -> (Bool, CheckedContinuation<R, any Error>?, (@Sendable () -> Void)?) in
            guard !s.done else { return (false, nil, nil) }
            s.done = true
            if s.continuation == nil { s.early = outcome }
            defer { s.continuation = nil; s.cleanup = nil }
            return (true, s.continuation, s.cleanup)
        }
        continuation?.resume(with: outcome)
        cleanup?()
        return won
    }
}
