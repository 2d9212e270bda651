import Foundation
import GRDB
import Metrics
import Synchronization

/// Writes ``SQLiteJournal`` changes, letting concurrent ones share a transaction (and, for
/// appends, its fsync).
///
/// Each ``submit(_:)`` queues its item with a continuation. One batch at a time runs on
/// GRDB's writer queue (a dispatch queue, not a thread of Swift's cooperative pool, so the
/// synchronous fsync blocks no task): it takes everything queued, up to ``maxBatch``, stores it
/// in one transaction, and resumes every caller only once that transaction has committed, or
/// with the error that rolled it back. What arrives meanwhile forms the next batch, so batches
/// grow with load while a lone item still commits at once, with no timer. Items are stored in
/// arrival order, so e.g. dedupe inside a batch behaves as if they were written one by one.
/// A queued item is committed even if its task is cancelled: the caller learns its outcome.
///
/// The journal runs two: appends (`durable`: `synchronous = FULL`, so the commit is fsynced
/// before anyone is told "accepted") and delivery state changes (`synchronous = NORMAL`).
/// With `grouped: false` every item is a transaction of its own (for comparison).
final class GroupCommit<Item: Sendable, Outcome: Sendable>: Sendable {
    /// Stores items inside the current transaction, one outcome per item, in order.
    typealias Store = @Sendable ([Item], Database) throws -> [Outcome]

    /// The most items in one transaction, to bound its duration and memory.
    static var maxBatch: Int { 512 }

    private struct Waiter {
        var item: Item
        var continuation: CheckedContinuation<Outcome, any Error>
    }

    private struct State {
        var queue: [Waiter] = []
        /// A batch is scheduled or running; it schedules the next one while `queue` is not empty.
        var draining = false
        var statistics = SQLiteJournal.AppendStatistics()
    }

    private let pool: DatabasePool
    private let grouped: Bool
    private let durable: Bool
    private let store: Store
    private let state = Mutex(State())
    private let commitTimer: Timer

    /// - Parameters:
    ///   - durable: commit with the connection's `synchronous = FULL`; false switches to
    ///     `NORMAL` for these transactions (no fsync of their own).
    ///   - kind: the `kind` dimension of `herald_journal_commit_duration_seconds`.
    init(pool: DatabasePool, grouped: Bool, durable: Bool, kind: String, store: @escaping Store) {
        self.pool = pool
        self.grouped = grouped
        self.durable = durable
        self.store = store
        commitTimer = Timer(label: "herald_journal_commit_duration_seconds", dimensions: [("kind", kind)],
                            preferredDisplayUnit: .seconds)
    }

    var statistics: SQLiteJournal.AppendStatistics { state.withLock { $0.statistics } }

    /// Returns once `item` is committed; throws if its transaction failed.
    func submit(_ item: Item) async throws -> Outcome {
        guard grouped else {
            return try await pool.writeWithoutTransaction { db in try self.commit([item], db)[0] }
        }
        return try await withCheckedThrowingContinuation { continuation in
            let start = state.withLock { state in
                state.queue.append(Waiter(item: item, continuation: continuation))
                defer { state.draining = true }
                return !state.draining
            }
            if start { scheduleBatch() }
        }
    }

    private func scheduleBatch() {
        pool.asyncWriteWithoutTransaction { db in
            let batch = self.state.withLock { state in
                let count = min(state.queue.count, Self.maxBatch)
                defer { state.queue.removeFirst(count) }
                return state.queue.prefix(count)
            }
            do {
                let outcomes = try self.commit(batch.map(\.item), db)
                for (waiter, outcome) in zip(batch, outcomes) { waiter.continuation.resume(returning: outcome) }
            } catch {
                for waiter in batch { waiter.continuation.resume(throwing: error) }
            }
            let more = self.state.withLock { state in
                state.draining = !state.queue.isEmpty
                return state.draining
            }
            if more { self.scheduleBatch() }
        }
    }

    /// Stores `items` in one transaction, committed (and, if durable, fsynced) when this returns.
    private func commit(_ items: [Item], _ db: Database) throws -> [Outcome] {
        let started = ContinuousClock.now
        var outcomes: [Outcome] = []
        if !durable { try db.execute(sql: "PRAGMA synchronous = NORMAL") }
        defer { if !durable { try? db.execute(sql: "PRAGMA synchronous = FULL") } }
        try db.inTransaction(.immediate) {
            outcomes = try store(items, db)
            return .commit
        }
        let elapsed = started.duration(to: .now).components
        commitTimer.recordNanoseconds(elapsed.seconds * 1_000_000_000 + elapsed.attoseconds / 1_000_000_000)
        state.withLock {
            $0.statistics.commits += 1
            $0.statistics.appends += items.count
            $0.statistics.largestBatch = max($0.statistics.largestBatch, items.count)
        }
        return outcomes
    }
}
