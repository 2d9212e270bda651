import Foundation
import Synchronization

/// Child processes for tests (the `herald` binary, Python servers, `openssl`, `psql`), waited
/// for on threads of their own.
///
/// `Process.waitUntilExit()` and reading a pipe block their thread until the child is done.
/// Called from a test, that thread is one of Swift's cooperative pool, which has one per core:
/// on a 2-core machine two tests waiting for a child stalled every other test of the run,
/// their time limits included, for as long as the children took to start.
package enum ChildProcess {
    /// Starts `process` and waits for it to end: its exit status and everything it wrote to
    /// `output` (set as its standard output or error by the caller), if given.
    package static func run(_ process: Process, output: Pipe? = nil) async throws -> (status: Int32, output: Data) {
        let exit = ExitStatus()
        process.terminationHandler = { ended in exit.set(ended.terminationStatus) }
        do {
            try process.run()
        } catch {
            // Nothing will write to the pipe: close our end so that nobody waits on it.
            try? output?.fileHandleForWriting.close()
            throw error
        }
        let data = await readToEnd(output)
        return (await exit.value, data)
    }

    /// Starts `process` and returns what it wrote to `output` up to and including its first
    /// line break, or all of it if it ended first: how a test server says that it is ready and
    /// on which port. A child that has written no line break within `limit` is terminated, and
    /// what it wrote is returned.
    package static func start(_ process: Process, output: Pipe, limit: DispatchTimeInterval = .seconds(20)) async throws
        -> String {
        try process.run()
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

    /// A child's exit status, set by Foundation's termination handler, awaited by the test.
    private final class ExitStatus: Sendable {
        private enum State { case running, waiting(CheckedContinuation<Int32, Never>), ended(Int32) }
        private let state = Mutex<State>(.running)

        func set(_ status: Int32) {
            let waiter = state.withLock { state -> CheckedContinuation<Int32, Never>? in
                defer { state = .ended(status) }
                if case .waiting(let continuation) = state { return continuation }
                return nil
            }
            waiter?.resume(returning: status)
        }

        var value: Int32 {
            get async {
                await withCheckedContinuation { continuation in
                    let ended = state.withLock { state -> Int32? in
                        if case .ended(let status) = state { return status }
                        state = .waiting(continuation)
                        return nil
                    }
                    if let ended { continuation.resume(returning: ended) }
                }
            }
        }
    }
}
