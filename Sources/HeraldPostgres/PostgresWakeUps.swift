import Foundation
import HeraldCore
import Logging
import PostgresNIO
import Synchronization

/// Wakes the dispatchers of every instance when one stores work they could take: appends with
/// pending deliveries, outcomes that make a delivery pending again (a retry, quiet hours) and
/// `herald deliveries retry` send `NOTIFY herald_work, '<notifier>'` in their transaction (so
/// it goes out on commit), and each instance LISTENs on one connection of its own. A woken
/// sweep learns from its lease when the work is due. Only a hint: a sweep looks at least once
/// per lease time, so a notification lost while the connection is being re-made only delays
/// work until then.
final class PostgresWakeUps: Sendable {
    static let channel = "herald_work"

    private struct Waiter {
        var notifier: String
        var continuation: CheckedContinuation<Void, Never>
    }

    private let waiters = Mutex<[UInt64: Waiter]>([:])
    private let nextID = Atomic<UInt64>(0)

    /// Returns at the next notification for `notifier`, or when the task is cancelled.
    func wait(notifier: String) async {
        let id = nextID.add(1, ordering: .relaxed).oldValue
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let cancelled = waiters.withLock { waiters -> Bool in
                    if Task.isCancelled { return true }
                    waiters[id] = Waiter(notifier: notifier, continuation: continuation)
                    return false
                }
                if cancelled { continuation.resume() }
            }
        } onCancel: {
            waiters.withLock { $0.removeValue(forKey: id) }?.continuation.resume()
        }
    }

    /// Wakes every waiter for `notifier`.
    func wake(_ notifier: String) {
        let woken = waiters.withLock { waiters -> [Waiter] in
            let matching = waiters.filter { $0.value.notifier == notifier }
            for id in matching.keys { waiters[id] = nil }
            return Array(matching.values)
        }
        for waiter in woken { waiter.continuation.resume() }
    }

    /// LISTENs until cancelled, making the connection again (after a pause) when it is lost.
    func listen(_ configuration: PostgresConnection.Configuration, logger: Logger) async {
        var pause = Duration.milliseconds(100)
        while !Task.isCancelled {
            do {
                let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
                pause = .milliseconds(100)
                do {
                    try await connection.listen(on: Self.channel) { notifications in
                        for try await notification in notifications { wake(notification.payload) }
                    }
                } catch {
                    try? await connection.close()
                    throw error
                }
                try? await connection.close()
            } catch {
                if Task.isCancelled { return }
            }
            try? await Task.sleep(for: pause)
            pause = min(pause * 2, .seconds(5))
        }
    }
}
