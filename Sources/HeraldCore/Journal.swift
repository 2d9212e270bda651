import Foundation
import Synchronization

/// Where accepted events and their deliveries are kept until every delivery is done.
///
/// Herald answers 2xx only after ``append(_:)`` returns, so whatever the journal has
/// committed survives a crash. Deliveries are handed out under leases: the instance that
/// accepts an event stores its deliveries already leased to itself (a first attempt then
/// costs one write, its outcome), and everything else — retries, deliveries the in-memory
/// queue could not hold, work whose owner died or stalled — is taken with ``lease(_:)`` once
/// due. The same rules serve one process on SQLite and several on a shared database.
///
/// Implementations: ``SQLiteJournal`` (the default), ``MemoryJournal`` (tests and dry runs;
/// nothing survives the process), and a PostgreSQL journal for several instances. Each
/// passes the same conformance suite.
public protocol Journal: Sendable {
    /// Durably stores the event, its deliveries (one per distinct notifier) and its dedupe key
    /// in one commit, unless the endpoint has seen the same dedupe key within the dedupe TTL.
    /// In the same commit it schedules the entry's reminders (see ``ScheduledReminder``) and,
    /// for a cancellation, skips the booking's pending reminders.
    ///
    /// A delivery whose notifier is in ``JournalEntry/leased`` is stored leased to
    /// ``JournalEntry/lease`` with its first attempt counted, for the caller to attempt at once;
    /// the others are pending, due at ``JournalEntry/receivedAt``. Event ids must be unique: a
    /// second append with a stored id fails.
    func append(_ entry: consuming JournalEntry) async throws -> AppendResult

    /// Takes due work for one notifier: up to ``LeaseRequest/limit`` deliveries that are
    /// pending and due, or leased with an expired lease, oldest due first. Each becomes leased
    /// to the caller, with one more attempt counted, and comes with its stored event.
    ///
    /// Taking over an expired lease counts an interruption (its owner died or stalled during
    /// the attempt). A delivery whose interruptions reach ``LeaseRequest/deadAfter`` is set
    /// aside as dead with ``Interruptions/reason(_:)`` instead, so a delivery that crashes
    /// Herald cannot keep it down. No delivery is handed to two callers at once.
    func lease(_ request: LeaseRequest) async throws -> LeaseResult

    /// Extends the leases `owner` holds on `ids` until `until` (a long attempt, or work that
    /// waits in memory). Returns the ids it no longer holds: taken over by another owner after
    /// their lease expired, or final.
    func renew(_ ids: [Int64], owner: String, until: Date) async throws -> [Int64]

    /// Writes attempts' outcomes, in one commit. An outcome is written only while `owner`
    /// still holds the delivery's lease; returns the ids whose outcome was not written
    /// because the lease was lost.
    func record(_ outcomes: [DeliveryOutcome], owner: String) async throws -> [Int64]

    /// Called once when an instance starts. A journal that one process uses alone (memory,
    /// SQLite) expires every lease that earlier processes left, so work in flight at a crash
    /// is due at once, and returns how many; a shared journal changes nothing and returns 0
    /// (other instances may hold live leases; a dead instance's leases expire by themselves).
    func instanceStarted(owner: String) async throws -> Int

    /// The stored event with its raw body, to render it again after a restart.
    func event(id: String) async throws -> StoredEvent?

    /// Deliveries matching `query`, newest first.
    func deliveries(_ query: DeliveryQuery) async throws -> [DeliveryRecord]

    /// Number of deliveries per notifier and state, by notifier name, then in
    /// ``DeliveryState`` order.
    func counts() async throws -> [DeliveryCount]

    /// Deliveries not yet final (pending or leased): for backpressure and `/metrics`, read at
    /// start and every 30 s. Defaults to summing ``counts()``; a journal that can count only
    /// the undelivered ones without reading every delivery should.
    func undeliveredCount() async throws -> Int

    /// Dead, skipped or pending deliveries become pending and due now. Returns how many
    /// changed (an id listed twice counts twice); leased and delivered ones are left alone.
    func retry(_ selection: RetrySelection) async throws -> Int

    /// Removes events that arrived before `cutoff` and whose deliveries are all final, with
    /// their deliveries, dedupe keys older than the dedupe TTL, and bookings that ended
    /// before ``BookingSnapshot/pruneHorizon(cutoff:now:)``. Returns events removed.
    func prune(before cutoff: Date) async throws -> Int

    /// The latest known state of bookings starting in `[from, before)`, by start then uid:
    /// the bookings projection that appends keep (see ``JournalEntry/booking``), cancelled
    /// ones included.
    func bookings(startingFrom from: Date, before: Date) async throws -> [BookingSnapshot]

    /// Returns when another process may have stored due work for `notifier`, so a dispatcher
    /// can take it before its next sweep (PostgreSQL: LISTEN/NOTIFY). Only a hint: a journal
    /// used by one process never returns (the default), and a lost notification only delays
    /// work until the sweep. Cancellation ends the wait.
    func waitForWork(notifier: String) async
}

/// A journal that can answer an append by calling back instead of resuming a task.
///
/// With one, the HTTP server answers a webhook from the event loop that read it: the request
/// goes from the socket to the journal's writer and back, without a task per request and
/// without hops to Swift's thread pool and back (`WebhookChannel` in HeraldApp). Journals
/// without it are served through the router, awaited as usual.
package protocol AppendingWithoutWaiting: Journal {
    /// ``Journal/append(_:)``, whose result goes to `done`, called once on the journal's own
    /// thread after the commit (or the failure). `done` must be quick: the journal's next
    /// write waits for it.
    func append(_ entry: consuming JournalEntry, then done: @escaping @Sendable (Result<AppendResult, any Error>) -> Void)
}

/// A journal that can write outcomes without the writing task waiting for the commit.
///
/// A delivery's task has nothing left to do after its outcome but bookkeeping (its place in
/// the queue, a counter). With this, it hands the outcome over and ends; `done` does the
/// bookkeeping once the outcome is committed, on the journal's writer, instead of the task
/// being suspended and resumed only to finish. Journals without it are awaited as usual.
package protocol RecordingWithoutWaiting: Journal {
    /// ``Journal/record(_:owner:)``, answered through `done` (the ids whose lease was lost, or
    /// the error). `done` runs on the writer: it must be quick and must not wait for the journal.
    func record(_ outcomes: [DeliveryOutcome], owner: String,
                then done: @escaping @Sendable (Result<[Int64], any Error>) -> Void)
}

extension Journal {
    /// Waits until cancelled: in a journal no other process writes, nothing arrives unseen.
    ///
    /// A continuation, not a long `Task.sleep`: on Linux a cancelled sleep keeps its timer
    /// and its task until its deadline would have passed, and each dispatcher cancels this
    /// wait on every sweep. An hour's sleep held about 730 bytes for an hour each time: some
    /// 5 MB per notifier when idle, more while a backlog makes the sweeps quicker.
    public func waitForWork(notifier: String) async {
        let wait = CancellationWait()
        await withTaskCancellationHandler {
            await withUnsafeContinuation { wait.park($0) }
        } onCancel: {
            wait.cancel()
        }
    }

    /// One delivery by id.
    public func delivery(id: Int64) async throws -> DeliveryRecord? {
        try await deliveries(DeliveryQuery(id: id)).first
    }

    /// Deliveries not yet final, from ``counts()``.
    public func undeliveredCount() async throws -> Int {
        try await counts().filter { !$0.state.isFinal }.reduce(0) { $0 + $1.count }
    }
}

/// A suspension that only cancellation ends (``Journal/waitForWork(notifier:)``).
final class CancellationWait: Sendable {
    private struct State {
        var continuation: UnsafeContinuation<Void, Never>?
        var cancelled = false
    }
    private let state = Mutex(State())

    /// Keeps `continuation` until ``cancel()``; resumes it at once if that came first.
    func park(_ continuation: UnsafeContinuation<Void, Never>) {
        let now = state.withLock { s in
            if s.cancelled { return true }
            s.continuation = continuation
            return false
        }
        if now { continuation.resume() }
    }

    func cancel() {
        let parked = state.withLock { s in
            s.cancelled = true
            defer { s.continuation = nil }
            return s.continuation
        }
        parked?.resume()
    }
}
