import GRDB
import Synchronization

/// Writes ``SQLiteJournal`` appends, letting concurrent ones share a transaction and its fsync.
///
/// Each ``append(_:)`` queues its item with a continuation. One batch at a time runs on
/// GRDB's writer queue (a dispatch queue, not a thread of Swift's cooperative pool, so the
/// synchronous fsync blocks no task): it takes everything queued, up to ``maxBatch``, stores it
/// in one transaction, and resumes every caller only once that transaction has committed, or
/// with the error that rolled it back. What arrives meanwhile forms the next batch, so batches
/// grow with load while a lone append still commits at once, with no timer. Items are stored in
/// arrival order, so dedupe inside a batch behaves as if they were appended one by one.
/// A queued append is committed even if its task is cancelled: the caller learns its outcome.
///
/// With `grouped: false` every append is a transaction of its own (for comparison).
final class GroupCommit: Sendable {
    struct Item: Sendable {
        var entry: JournalEntry
        /// The journal's clock when the append was called, unix seconds.
        var now: Double
    }

    /// One item's outcome inside a committed transaction.
    typealias Outcome = Result<AppendResult, any Error>
    /// Stores items inside the current transaction, one outcome per item, in order.
    typealias Store = @Sendable ([Item], Database) throws -> [Outcome]

    /// The most appends in one transaction, to bound its duration and memory.
    static let maxBatch = 512

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
    private let store: Store
    private let state = Mutex(State())

    init(pool: DatabasePool, grouped: Bool, store: @escaping Store) {
        self.pool = pool
        self.grouped = grouped
        self.store = store
    }

    var statistics: SQLiteJournal.AppendStatistics { state.withLock { $0.statistics } }

    /// Returns once `item` is committed; throws if its transaction failed.
    func append(_ item: Item) async throws -> Outcome {
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

    /// Stores `items` in one transaction, committed (and fsynced) when this returns.
    private func commit(_ items: [Item], _ db: Database) throws -> [Outcome] {
        var outcomes: [Outcome] = []
        try db.inTransaction(.immediate) {
            outcomes = try store(items, db)
            return .commit
        }
        state.withLock {
            $0.statistics.commits += 1
            $0.statistics.appends += items.count
            $0.statistics.largestBatch = max($0.statistics.largestBatch, items.count)
        }
        return outcomes
    }
}
