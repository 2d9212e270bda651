import Foundation
import HeraldCore
import Metrics
import Synchronization

/// Lets concurrent appends and outcome writes share one PostgreSQL transaction and its commit.
///
/// No task of its own: the first caller to find no batch running becomes the leader. It takes
/// everything queued (up to ``maxBatch``), stores it in one transaction, hands every follower
/// its outcome once the `COMMIT` returned (or the error that rolled it back), and then passes
/// the lead to the oldest caller still waiting, whose batch holds what arrived meanwhile. So
/// batches grow with load while a lone append commits at once, with no timer; and an
/// instance runs one commit at a time, which keeps its writes in arrival order.
final class PostgresGroupCommit: Sendable {
    enum Work: Sendable {
        case append(JournalEntry)
        case record([DeliveryOutcome], owner: String)

        var isAppend: Bool { if case .append = self { true } else { false } }
    }

    enum Outcome: Sendable {
        case appended(AppendResult)
        case recorded([Int64])
    }

    typealias ItemResult = Result<Outcome, JournalError>
    /// Stores a batch in one transaction: one result per item, in order; throws if the
    /// transaction failed as a whole.
    typealias Store = @Sendable ([Work]) async throws -> [ItemResult]

    /// The most items in one transaction, to bound its duration and memory.
    static let maxBatch = 512

    private enum Role: Sendable {
        case done(Result<ItemResult, any Error>)
        case lead
    }

    private struct Waiter {
        var work: Work
        var continuation: CheckedContinuation<Role, Never>
    }

    private struct State {
        var queue: [Waiter] = []
        var leading = false
    }

    private let state = Mutex(State())
    private let durableTimer = Timer(label: "herald_journal_commit_duration_seconds", dimensions: [("sync", "full")],
                                     preferredDisplayUnit: .seconds)
    private let lightTimer = Timer(label: "herald_journal_commit_duration_seconds", dimensions: [("sync", "normal")],
                                   preferredDisplayUnit: .seconds)

    /// Returns once `work` is committed, with its own result; throws if its transaction failed.
    func submit(_ work: Work, store: Store) async throws -> ItemResult {
        let role = await withCheckedContinuation { (continuation: CheckedContinuation<Role, Never>) in
            let lead = state.withLock { state in
                if state.leading {
                    state.queue.append(Waiter(work: work, continuation: continuation))
                    return false
                }
                state.leading = true
                return true
            }
            if lead { continuation.resume(returning: .lead) }
        }
        switch role {
        case .done(let result):
            return try result.get()
        case .lead:
            return try await lead(with: work, store: store).get()
        }
    }

    /// Commits `own` with whatever is queued, answers the followers, passes the lead on.
    private func lead(with own: Work, store: Store) async -> Result<ItemResult, any Error> {
        let followers = state.withLock { state in
            let count = min(state.queue.count, Self.maxBatch - 1)
            defer { state.queue.removeFirst(count) }
            return Array(state.queue.prefix(count))
        }
        let batch = [own] + followers.map(\.work)
        let started = ContinuousClock.now
        let results: [Result<ItemResult, any Error>]
        do {
            let stored = try await store(batch)
            results = stored.map { .success($0) }
        } catch {
            results = Array(repeating: .failure(error), count: batch.count)
        }
        (batch.contains { $0.isAppend } ? durableTimer : lightTimer)
            .recordNanoseconds(started.duration(to: .now).saturatingNanoseconds)
        for (waiter, result) in zip(followers, results.dropFirst()) { waiter.continuation.resume(returning: .done(result)) }
        let next = state.withLock { state -> Waiter? in
            guard !state.queue.isEmpty else {
                state.leading = false
                return nil
            }
            return state.queue.removeFirst()
        }
        next?.continuation.resume(returning: .lead)
        return results[0]
    }
}
