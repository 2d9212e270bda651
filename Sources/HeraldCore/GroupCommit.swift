import Foundation
import GRDB
import Metrics
import Synchronization

/// Writes ``SQLiteJournal`` changes, letting concurrent ones share a transaction and its fsync.
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
/// Appends and delivery state changes go through the same one: a batch holding any durable
/// item (an append) commits with `synchronous = FULL`, fsynced before anyone is told
/// "accepted", and the state changes in it ride along at no extra cost; a batch of state
/// changes only commits with `synchronous = NORMAL` (no fsync of its own).
/// An item that `canWait` (a delivery's outcome) does not start a batch of its own at once:
/// it waits up to `waitLimit` (10 ms) for one that must start (an append, a lease) and rides in
/// it. At low load every request otherwise cost two transactions, its append and its
/// outcome, each with its own hop to the writer's thread and the same delivery pages written
/// twice to the WAL.
/// Under load a batch gathers: when the last batch holding durable items held at least
/// ``gatherFrom`` of them, the next one, once it holds a durable item, waits until it holds as
/// many, or for as long as that batch's own work took (at most ``gatherLimit``), whichever comes
/// first. The appenders that arrive meanwhile would otherwise wait for this commit and then for
/// one of their own; now they share it, and each transaction's fsync, WAL pages and locks serve
/// more requests. (wrk, 50 connections, four alternating pairs: 97.6–99.2 µs of CPU per webhook
/// without, 89.8–96.6 with, at the same throughput; full commits per run 10,470 → 5,640.)
/// It does not wait idle: it begins its transaction with what it holds, and stores each part
/// that arrives, a few items at a time, as it comes. What is left once the last arrives is that
/// part and the commit (wrk, seven alternating pairs: 18,100–19,050 webhooks a second before,
/// 18,970–20,200 after; commits per run 5,150–5,350 → 4,300–4,570; the same instructions per
/// request in `herald-bench pipeline`). At low load batches are small and commit at once.
/// With `grouped: false` every item is a transaction of its own (for comparison).
final class GroupCommit<Item: Sendable, Outcome: Sendable>: Sendable {
    /// Stores items inside the current transaction, one outcome per item, in order.
    typealias Store = @Sendable ([Item], Database) throws -> [Outcome]

    /// The most items in one transaction, to bound its duration and memory.
    static var maxBatch: Int { 512 }

    /// The durable items a batch must have held for the next to gather (see above).
    static var gatherFrom: Int { 4 }

    /// The longest a batch gathers, whatever the last commit took.
    static var gatherLimit: Duration { .milliseconds(1) }

    private enum Start { case none, now, timer }

    /// Who hears an item's outcome: a task waiting for it, or a callback.
    private enum Reply {
        case task(UnsafeContinuation<Outcome, any Error>)
        case call(@Sendable (Result<Outcome, any Error>) -> Void)

        func send(_ result: Result<Outcome, any Error>) {
            switch self {
            case .task(let continuation): continuation.resume(with: result)
            case .call(let call): call(result)
            }
        }
    }

    private struct Waiter {
        var item: Item
        var reply: Reply
        var isDurable: Bool
    }

    /// How long an item that `canWait` waits for a batch to ride in before it starts one.
    private let waitLimit: DispatchTimeInterval

    private struct State {
        var queue: [Waiter] = []
        /// A batch is scheduled or running; it schedules the next one while `queue` is not empty.
        var draining = false
        /// Items that can wait are queued and a timer will start a batch for them.
        var timerArmed = false
        /// Of transactions holding durable items, counting those items.
        var statistics = SQLiteJournal.AppendStatistics()
        /// Durable items in `queue`.
        var durableQueued = 0
        /// The durable items of the last batch that held any, and how long its own work took
        /// (its waits for more items excluded).
        var lastDurable = 0
        var lastDurableCommit: Duration = .zero
        /// While the writer gathers: the durable items it waits for (`gathered` is signalled
        /// once they are queued).
        var gatherTarget: Int?
        /// Items taken into the transaction being written, not yet committed.
        var taken = 0
    }

    private let pool: DatabasePool
    private let statements: SQLiteStatements
    private let grouped: Bool
    private let isDurable: @Sendable (Item) -> Bool
    private let canWait: @Sendable (Item) -> Bool
    private let store: Store
    private let state = Mutex(State())
    /// Wakes the writer gathering a batch once the items it waits for are queued.
    private let gathered = DispatchSemaphore(value: 0)
    /// How long a batch gathers; nil: as long as the last commit took, at most ``gatherLimit``.
    private let gatherWait: Duration?
    private let durableTimer = Timer(label: "herald_journal_commit_duration_seconds", dimensions: [("sync", "full")],
                                     preferredDisplayUnit: .seconds)
    private let lightTimer = Timer(label: "herald_journal_commit_duration_seconds", dimensions: [("sync", "normal")],
                                   preferredDisplayUnit: .seconds)

    /// - Parameters:
    ///   - statements: the writer's prepared statements, which begin and commit each batch.
    ///   - isDurable: whether an item must be fsynced before its caller hears back.
    ///   - canWait: whether an item may wait up to `waitLimit` for another batch.
    ///   - gatherWait: how long a batch gathers under load; nil, the default, is as long as the
    ///     last commit took, at most ``gatherLimit`` (tests give a fixed one).
    init(pool: DatabasePool, statements: SQLiteStatements, grouped: Bool, isDurable: @escaping @Sendable (Item) -> Bool,
         canWait: @escaping @Sendable (Item) -> Bool = { _ in false }, waitLimit: Duration = .milliseconds(10),
         gatherWait: Duration? = nil, store: @escaping Store) {
        self.pool = pool
        self.gatherWait = gatherWait
        self.statements = statements
        self.waitLimit = .nanoseconds(Int(clamping: max(0, waitLimit.saturatingNanoseconds)))
        self.grouped = grouped
        self.isDurable = isDurable
        self.canWait = canWait
        self.store = store
    }

    var statistics: SQLiteJournal.AppendStatistics { state.withLock { $0.statistics } }

    /// Items waiting for their commit: queued, or taken into the transaction being written
    /// (for tests).
    var queued: Int { state.withLock { $0.queue.count + $0.taken } }

    /// Items stored in the transaction being written, not yet committed (for tests).
    var taken: Int { state.withLock { $0.taken } }

    /// Returns once `item` is committed; throws if its transaction failed.
    func submit(_ item: Item) async throws -> Outcome {
        guard grouped else {
            return try await pool.writeWithoutTransaction { db in try self.commitAlone(item, db) }
        }
        // Unsafe, not checked: each waiter is resumed exactly once, by the batch that takes it
        // (below). The checked kind allocated a canary and looked up its generic metadata on
        // every append and every outcome.
        return try await withUnsafeThrowingContinuation { continuation in
            enqueue(Waiter(item: item, reply: .task(continuation), isDurable: isDurable(item)))
        }
    }

    /// Queues `item` like ``submit(_:)`` and returns at once; `done` is called with its outcome
    /// once its transaction has committed or failed, on the writer's queue. It must be quick
    /// and must not wait for the journal: the next batch waits for it.
    ///
    /// For a caller with nothing left to do after the write but bookkeeping (a delivery's
    /// outcome): its task ends now instead of being resumed only to finish.
    func submit(_ item: Item, then done: @escaping @Sendable (Result<Outcome, any Error>) -> Void) {
        guard grouped else {
            pool.asyncWriteWithoutTransaction { db in done(Result { try self.commitAlone(item, db) }) }
            return
        }
        enqueue(Waiter(item: item, reply: .call(done), isDurable: isDurable(item)))
    }

    private func enqueue(_ waiter: Waiter) {
        let waits = canWait(waiter.item)
        var wake = false
        let start = state.withLock { state -> Start in
            state.queue.append(waiter)
            if waiter.isDurable {
                state.durableQueued += 1
                if let target = state.gatherTarget, state.durableQueued >= target {
                    state.gatherTarget = nil
                    wake = true
                }
            }
            if state.draining { return .none }
            if waits {
                if state.timerArmed { return .none }
                state.timerArmed = true
                return .timer
            }
            state.draining = true
            return .now
        }
        if wake { gathered.signal() }
        switch start {
        case .none: break
        case .now: scheduleBatch()
        case .timer:
            DispatchQueue.global().asyncAfter(deadline: .now() + waitLimit) {
                // No batch took them meanwhile: start one.
                let go = self.state.withLock { state -> Bool in
                    state.timerArmed = false
                    guard !state.draining, !state.queue.isEmpty else { return false }
                    state.draining = true
                    return true
                }
                if go { self.scheduleBatch() }
            }
        }
    }

    private func scheduleBatch() {
        pool.asyncWriteWithoutTransaction { db in
            var batch = self.take(upTo: Self.maxBatch)
            do {
                let outcomes = try self.commit(&batch, db)
                for (waiter, outcome) in zip(batch, outcomes) { waiter.reply.send(.success(outcome)) }
            } catch {
                for waiter in batch { waiter.reply.send(.failure(error)) }
            }
            let more = self.state.withLock { state in
                state.draining = !state.queue.isEmpty
                return state.draining
            }
            if more { self.scheduleBatch() }
        }
    }

    /// Takes up to `limit` queued items, oldest first.
    private func take(upTo limit: Int) -> [Waiter] {
        state.withLock { state in
            let count = min(state.queue.count, limit)
            defer { state.queue.removeFirst(count) }
            let taken = Array(state.queue.prefix(count))
            state.durableQueued -= taken.count(where: \.isDurable)
            state.taken += taken.count
            return taken
        }
    }

    /// How a batch that holds durable items gathers under load (see the type's notes): until it
    /// holds `target` durable items, or until `deadline`.
    private struct Gathering {
        var target: Int
        var deadline: DispatchTime
    }

    private func gathering(holding durable: Int) -> Gathering? {
        state.withLock { state -> Gathering? in
            guard durable > 0, state.lastDurable >= Self.gatherFrom, durable < state.lastDurable else { return nil }
            let wait = gatherWait ?? min(state.lastDurableCommit, Self.gatherLimit)
            return Gathering(target: state.lastDurable,  // never above maxBatch: it counts one batch
                             deadline: .now() + .nanoseconds(Int(clamping: wait.saturatingNanoseconds)))
        }
    }

    /// While a batch gathers: waits on the writer's queue (not a task's thread) until `count`
    /// durable items are queued or `deadline` passes. The wait ends at once when they are.
    private func wait(forDurable count: Int, until deadline: DispatchTime) {
        let waits = state.withLock { state -> Bool in
            guard state.durableQueued < count else { return false }
            state.gatherTarget = count
            return true
        }
        guard waits, gathered.wait(timeout: deadline) == .timedOut else { return }
        let signalled = state.withLock { state in
            defer { state.gatherTarget = nil }
            return state.gatherTarget == nil
        }
        // The items arrived between the timeout and the lock: take the signal they sent, so
        // that it cannot end the next wait early.
        if signalled { gathered.wait() }
    }

    /// Stores `item` in a transaction of its own (`grouped: false`).
    private func commitAlone(_ item: Item, _ db: Database) throws -> Outcome {
        // Its reply is never sent: the outcome is returned. No batch of one gathers (see
        // `gathering(holding:)`), so nothing else joins it.
        var batch = [Waiter(item: item, reply: .call { _ in }, isDurable: isDurable(item))]
        return try commit(&batch, db)[0]
    }

    /// Stores `batch` in one transaction, committed (and, if any item is durable, fsynced) when
    /// this returns, with one outcome per item of `batch` in order.
    ///
    /// A batch holding durable items may gather more under load (``gathering(holding:)``): it
    /// stores what it holds, then, while it waits for the rest, stores each part that arrives,
    /// in the same transaction, appending those items to `batch`. The statements' work is done
    /// while the next requests are still arriving, and what is left once the last arrives is
    /// that part and the commit's fsync. On a throw, `batch` holds every item the transaction
    /// held, all of them rolled back.
    private func commit(_ batch: inout [Waiter], _ db: Database) throws -> [Outcome] {
        let started = ContinuousClock.now
        var waited = Duration.zero
        var durableCount = batch.count(where: \.isDurable)
        defer { state.withLock { $0.taken = 0 } }
        var outcomes: [Outcome] = []
        outcomes.reserveCapacity(batch.count)
        // Prepared once per connection: parsing the two pragmas again cost more than some batches.
        if durableCount == 0 { try statements.execute(.synchronousNormal, db) }
        defer { if durableCount == 0 { try? statements.execute(.synchronousFull, db) } }
        let gathering = gathering(holding: durableCount)
        try statements.transaction(db) {
            try store(batch, into: &outcomes, db)
            guard let gathering else { return }
            // Woken for parts of a few items, not for each one: each wake-up is a thread switch.
            let part = max(1, min(Self.gatherFrom, gathering.target / 4))
            while durableCount < gathering.target, batch.count < Self.maxBatch {
                let waitStarted = ContinuousClock.now
                wait(forDurable: min(part, gathering.target - durableCount), until: gathering.deadline)
                waited += waitStarted.duration(to: .now)
                let more = take(upTo: Self.maxBatch - batch.count)
                if more.isEmpty, DispatchTime.now() >= gathering.deadline { break }
                batch += more
                durableCount += more.count(where: \.isDurable)
                try store(more, into: &outcomes, db)
            }
        }
        // The batch's own work, without its waits: how long the next one may gather.
        let took = started.duration(to: .now) - waited
        (durableCount > 0 ? durableTimer : lightTimer).recordNanoseconds(took.saturatingNanoseconds)
        if durableCount == 0 {
            state.withLock { $0.statistics.stateCommits += 1 }
        } else {
            state.withLock {
                $0.statistics.commits += 1
                $0.statistics.appends += durableCount
                $0.statistics.largestBatch = max($0.statistics.largestBatch, durableCount)
                $0.lastDurable = durableCount
                $0.lastDurableCommit = took
            }
        }
        return outcomes
    }

    /// Stores `part` of a batch inside its transaction, adding one outcome per item.
    private func store(_ part: some Collection<Waiter>, into outcomes: inout [Outcome], _ db: Database) throws {
        guard !part.isEmpty else { return }
        let stored = try store(part.map(\.item), db)
        // Every waiter is resumed with its own outcome: a short answer rolls back instead.
        guard stored.count == part.count else {
            throw JournalError(.other, path: pool.path, "the journal stored \(part.count) changes but answered \(stored.count); nothing was committed")
        }
        outcomes += stored
    }
}
