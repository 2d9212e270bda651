import Logging
import ServiceLifecycle
import Synchronization

/// Runs the plugin instances that are also a `Service` (e.g. the email notifier's
/// connection pool), and swaps them when a reload replaces a notifier.
///
/// Each instance runs in its own `ServiceGroup` (no signals) inside this service's task
/// group, so one instance can be shut down gracefully while the others keep running. On a
/// reload, the new instance is started before any delivery can reach it, and the old one
/// is shut down once the deliveries that started on it have finished.
///
/// Place it before the dispatchers in Herald's service group: it stops after them, when no
/// delivery is running any more, and then shuts every instance down.
public final class PluginServices: Service, Sendable {
    /// One running instance.
    public struct Handle: Sendable, Hashable {
        let id: Int
    }

    /// Thrown by ``replace(_:with:)`` once Herald is shutting down.
    public struct ShuttingDown: Error, CustomStringConvertible {
        public var description: String { "Herald is shutting down" }
    }

    /// Thrown by ``run()`` when a plugin's service stopped or failed on its own.
    public struct ServiceFailed: Error, CustomStringConvertible {
        public let name: String
        public let reason: String
        public var description: String { "the service of \(name) stopped: \(reason)" }
    }

    private enum Command: Sendable {
        case start(Handle, name: String, group: ServiceGroup, started: StartLatch)
        case stop([ServiceGroup], after: @Sendable () async -> Void)
    }

    private struct Entry {
        var name: String
        var group: ServiceGroup
        var retired = false
    }

    private struct State {
        var nextID = 0
        /// The instance of each name that deliveries use now.
        var current: [String: Handle] = [:]
        /// Every instance whose group has not finished, current or retired.
        var running: [Handle: Entry] = [:]
        var stopping = false
        var failure: (any Error)?
    }

    private let state = Mutex(State())
    private let commands: AsyncStream<Command>
    private let continuation: AsyncStream<Command>.Continuation
    private let logger: Logger

    /// - Parameter initial: the services to run from the start, by notifier name.
    public init(_ initial: [String: any Service] = [:], logger: Logger = Logger(label: "herald.plugins")) {
        (commands, continuation) = AsyncStream.makeStream(of: Command.self)
        self.logger = logger
        for (name, service) in initial.sorted(by: { $0.key < $1.key }) {
            _ = launch(name: name, service: service)
        }
    }

    /// The names whose instance is running now.
    public var names: [String] { state.withLock { $0.current.keys.sorted() } }

    /// Replaces the instances of `names`: starts each service in `services` and returns once
    /// all of them are running. The instances they replace keep running; hand the returned
    /// handles to ``retire(_:after:)``.
    ///
    /// A name in `names` without a service in `services` just loses its instance (its new
    /// plugin is not a `Service`). If Herald is shutting down, nothing changes and this throws
    /// ``ShuttingDown``.
    public func replace(_ names: [String], with services: [String: any Service]) async throws -> [Handle] {
        var started: [(Handle, StartLatch)] = []
        for (name, service) in services.sorted(by: { $0.key < $1.key }) {
            guard let launched = launch(name: name, service: service, replacing: false) else {
                stopUnused(started.map(\.0))
                throw ShuttingDown()
            }
            started.append(launched)
        }
        do {
            for (_, latch) in started { try await latch.wait() }
        } catch {
            stopUnused(started.map(\.0))
            throw error
        }
        return state.withLock { state in
            var replaced: [Handle] = []
            for name in names {
                if let old = state.current.removeValue(forKey: name) { replaced.append(old) }
            }
            for (handle, _) in started {
                if let name = state.running[handle]?.name { state.current[name] = handle }
            }
            return replaced
        }
    }

    /// Shuts the instances down gracefully once `after` returns (typically when the
    /// deliveries that could still use them have finished).
    public func retire(_ handles: [Handle], after: @escaping @Sendable () async -> Void) {
        let groups = state.withLock { state in
            handles.compactMap { handle -> ServiceGroup? in
                state.running[handle]?.retired = true
                return state.running[handle]?.group
            }
        }
        guard !groups.isEmpty else { return }
        continuation.yield(.stop(groups, after: after))
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                for await command in commands {
                    switch command {
                    case .start(let handle, let name, let serviceGroup, let started):
                        group.addTask { await self.runInstance(handle, name: name, group: serviceGroup, started: started) }
                    case .stop(let groups, let after):
                        group.addTask {
                            await after()
                            for serviceGroup in groups { await serviceGroup.triggerGracefulShutdown() }
                        }
                    }
                }
                // Shutting down (or an instance failed): stop every instance still running.
                let running = state.withLock { $0.running.values.map(\.group) }
                for serviceGroup in running { await serviceGroup.triggerGracefulShutdown() }
                await group.waitForAll()
            }
        } onGracefulShutdown: {
            self.stop()
        }
        if let failure = state.withLock({ $0.failure }) { throw failure }
    }

    /// Creates the group of one service and queues it for ``run()``; nil once stopping.
    private func launch(name: String, service: any Service, replacing: Bool = true) -> (Handle, StartLatch)? {
        let started = StartLatch()
        let serviceGroup = ServiceGroup(configuration: .init(
            services: [.init(service: AnnouncingService(service: service, started: started))], logger: logger))
        // Queued under the lock that ``stop()`` takes: a start is either refused or queued
        // before the queue ends, never silently dropped.
        let handle: Handle? = state.withLock { state in
            guard !state.stopping else { return nil }
            let handle = Handle(id: state.nextID)
            state.nextID += 1
            state.running[handle] = Entry(name: name, group: serviceGroup)
            if replacing { state.current[name] = handle }
            continuation.yield(.start(handle, name: name, group: serviceGroup, started: started))
            return handle
        }
        guard let handle else { return nil }
        return (handle, started)
    }

    /// Runs one instance until it is retired or Herald stops; anything else stops Herald.
    private func runInstance(_ handle: Handle, name: String, group serviceGroup: ServiceGroup, started: StartLatch) async {
        var failure: String?
        do {
            try await serviceGroup.run()
        } catch {
            failure = "\(error)"
        }
        started.fail(ShuttingDown())
        let expected = state.withLock { state in
            let entry = state.running.removeValue(forKey: handle)
            return state.stopping || entry?.retired == true
        }
        if expected {
            if let failure { logger.error("the service of \(name) failed while stopping: \(failure)") }
            return
        }
        let error = ServiceFailed(name: name, reason: failure ?? "it returned while still in use")
        logger.error("\(error)")
        state.withLock { if $0.failure == nil { $0.failure = error } }
        stop()
    }

    /// Instances started for a reload that did not happen.
    private func stopUnused(_ handles: [Handle]) {
        retire(handles, after: {})
    }

    private func stop() {
        state.withLock { state in
            state.stopping = true
            continuation.finish()
        }
    }
}

/// Runs a plugin's service and says when its `run()` has begun.
private struct AnnouncingService: Service {
    let service: any Service
    let started: StartLatch

    func run() async throws {
        started.open()
        try await service.run()
    }
}

/// Opened once, by the first of ``open()`` or ``fail(_:)``; ``wait()`` returns or throws then.
private final class StartLatch: Sendable {
    private struct State {
        var result: Result<Void, any Error>?
        var waiters: [CheckedContinuation<Void, any Error>] = []
    }
    private let state = Mutex(State())

    func open() { finish(.success(())) }
    func fail(_ error: any Error) { finish(.failure(error)) }

    func wait() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let result = state.withLock { state -> Result<Void, any Error>? in
                if let result = state.result { return result }
                state.waiters.append(continuation)
                return nil
            }
            if let result { continuation.resume(with: result) }
        }
    }

    private func finish(_ result: Result<Void, any Error>) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            guard state.result == nil else { return [] }
            state.result = result
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }
}
