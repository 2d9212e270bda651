import Foundation
import Synchronization

/// Child processes for tests (the `herald` binary, Python servers, `openssl`, `psql`), waited
/// for on threads of their own.
///
/// `Process.waitUntilExit()` and reading a pipe block their thread until the child is done.
/// Called from a test, that thread is one of Swift's cooperative pool, which has one per core:
/// on a 2-core machine two tests waiting for a child stalled every other test of the run,
/// their time limits included, for as long as the children took to start.
///
/// Worse, Foundation on Linux learns of a child's exit when a socket the child inherited is
/// closed, and that socket is made without close-on-exec: a child another thread spawns at the
/// same moment can inherit it too, and the first child's exit is then seen only once the
/// second one has ended. Two tests stopping their SMTP servers with `waitUntilExit()` held
/// both threads of the pool that way, waiting on children that only tests still queued for
/// the pool would have stopped: the whole run hung until CI's time limit. So every child is
/// started through ``launch(_:)``, one at a time, and every wait for one suspends instead.
///
/// A child also inherits the signal mask of the thread that spawns it, and the threads of
/// Swift's pool block nearly every signal: a child started from a test ignored `terminate()`
/// (SIGTERM stayed pending) and lived until something else ended it. ``launch(_:)`` spawns
/// with no signal blocked, as a shell or systemd would.
package enum ChildProcess {
    /// Held while a child is being spawned, so that no child inherits another's exit socket.
    private static let spawning = Mutex(())

    /// Starts `process` with no signal blocked, never while another test is starting one (see
    /// the type's comment).
    package static func launch(_ process: Process) throws {
        try spawning.withLock { _ in
            var none = sigset_t()
            var previous = sigset_t()
            sigemptyset(&none)
            pthread_sigmask(SIG_SETMASK, &none, &previous)
            defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
            try process.run()
        }
    }

    /// Starts `process` and waits for it to end: its exit status and everything it wrote to
    /// `output` (set as its standard output or error by the caller), if given.
    package static func run(_ process: Process, output: Pipe? = nil) async throws -> (status: Int32, output: Data) {
        let exit = ChildExit(of: process)
        do {
            try launch(process)
        } catch {
            // Nothing will write to the pipe: close our end so that nobody waits on it.
            try? output?.fileHandleForWriting.close()
            throw error
        }
        let data = await readToEnd(output)
        return (await exit.status, data)
    }

    /// Starts `process` and returns what it wrote to `output` up to and including its first
    /// line break, or all of it if it ended first: how a test server says that it is ready and
    /// on which port. A child that has written no line break within `limit` is terminated, and
    /// what it wrote is returned.
    package static func start(_ process: Process, output: Pipe, limit: DispatchTimeInterval = .seconds(20)) async throws
        -> String {
        try launch(process)
        let handle = output.fileHandleForReading
        let done = Atomic(false)
        DispatchQueue.global().asyncAfter(deadline: .now() + limit) {
            if !done.load(ordering: .acquiring) { process.terminate() }
        }
        return await onThread {
            var text = ""
            while !text.contains("\n") {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
            }
            done.store(true, ordering: .releasing)
            return text
        }
    }

    /// Everything written to `pipe` until every writer has closed it.
    private static func readToEnd(_ pipe: Pipe?) async -> Data {
        guard let handle = pipe?.fileHandleForReading else { return Data() }
        return await onThread { handle.readDataToEndOfFile() }
    }

    /// The result of `work`, run on a new thread so that its blocking calls hold no thread of
    /// Swift's pool.
    private static func onThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: work()) }
        }
    }
}

/// A child's exit status, set by Foundation's termination handler and awaited by a test
/// without holding a thread.
package final class ChildExit: Sendable {
    private struct State {
        var status: Int32?
        /// The test waiting, and which of its waits it is (a time limit ends only its own).
        var waiter: (wait: UInt64, continuation: CheckedContinuation<Int32?, Never>)?
        var waits: UInt64 = 0
    }
    private let state = Mutex(State())

    /// Watches `process`'s exit; make it before the process is launched (it sets the
    /// process's `terminationHandler`).
    package init(of process: Process) {
        process.terminationHandler = { [self] ended in set(ended.terminationStatus) }
    }

    private func set(_ status: Int32) {
        let waiter = state.withLock { state in
            state.status = status
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.continuation.resume(returning: status)
    }

    /// The exit status, once the child has ended.
    package var status: Int32 {
        get async {
            // Without a limit the only answer is the status itself.
            await status(within: nil)!
        }
    }

    /// The exit status, or nil if the child has not ended within `limit`. One waiter at a time.
    package func status(within limit: Duration?) async -> Int32? {
        await withCheckedContinuation { continuation in
            let (ended, wait) = state.withLock { state -> (Int32?, UInt64) in
                if let status = state.status { return (status, 0) }
                state.waits += 1
                state.waiter = (state.waits, continuation)
                return (nil, state.waits)
            }
            if let ended {
                continuation.resume(returning: ended)
            } else if let limit {
                let (seconds, attoseconds) = limit.components
                // Checked: a limit past what DispatchTime holds waits as long as it can.
                let (whole, overflow) = Int(clamping: seconds).multipliedReportingOverflow(by: 1_000_000_000)
                let (sum, overflowAgain) = whole.addingReportingOverflow(Int(attoseconds / 1_000_000_000))
                let nanoseconds = overflow || overflowAgain ? Int.max : max(0, sum)
                DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) { [self] in
                    let late = state.withLock { state -> CheckedContinuation<Int32?, Never>? in
                        guard let waiter = state.waiter, waiter.wait == wait else { return nil }
                        state.waiter = nil
                        return waiter.continuation
                    }
                    late?.resume(returning: nil)
                }
            }
        }
    }
}
