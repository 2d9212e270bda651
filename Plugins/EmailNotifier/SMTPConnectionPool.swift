import Logging
import NIOCore
import Synchronization

/// A handle to one pooled SMTP connection.
///
/// The connection itself runs in its own task (``run(first:jobs:)``): it connects when the
/// first message arrives, keeps the session open and takes one message at a time from its
/// job stream. The pool hands the handle to one caller at a time; ``send(_:)`` passes the
/// message to the connection's task and waits for its answer. Finishing the job stream
/// (``close()``) makes the task send QUIT and close the socket.
final class SMTPConnection: Sendable {
    struct Job: Sendable {
        var transaction: SMTPTransaction
        var reply: CheckedContinuation<SMTPTransactionResult, any Error>
    }

    let id: Int
    private let jobs: AsyncStream<Job>.Continuation
    private let channel = Mutex<(any Channel)?>(nil)
    private let task = Mutex<Task<Void, Never>?>(nil)

    /// Creates the handle and starts the connection's task.
    init(id: Int, config: SMTPClientConfiguration, logger: Logger) {
        self.id = id
        let (stream, continuation) = AsyncStream.makeStream(of: Job.self)
        self.jobs = continuation
        var logger = logger
        logger[metadataKey: "smtp.connection"] = "\(id)"
        let task = Task { [logger] in await self.run(config: config, logger: logger, jobs: stream) }
        self.task.withLock { $0 = task }
    }

    /// Sends one message on this connection. Cancelling the caller closes the connection,
    /// which ends the attempt promptly.
    func send(_ transaction: SMTPTransaction) async throws -> SMTPTransactionResult {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                if case .terminated = jobs.yield(Job(transaction: transaction, reply: continuation)) {
                    continuation.resume(throwing: SMTPFailure(error: .retryable("the SMTP connection was closed"), connectionUsable: false))
                }
            }
        } onCancel: {
            abort()
        }
    }

    /// Whether the socket is still open (a server may drop an idle connection). Before the
    /// first message the connection does not exist yet and counts as open.
    var isOpen: Bool { channel.withLock { $0?.isActive ?? true } }

    /// Sends QUIT after the current message, if any, and closes.
    func close() { jobs.finish() }

    /// Closes the socket at once.
    func abort() {
        jobs.finish()
        channel.withLock { $0 }?.close(promise: nil)
    }

    /// Waits until the connection's task has finished.
    func closed() async {
        await task.withLock { $0 }?.value
    }

    private func run(config: SMTPClientConfiguration, logger: Logger, jobs stream: AsyncStream<Job>) async {
        var pending = stream.makeAsyncIterator()
        defer { jobs.finish() }
        guard let first = await pending.next() else { return }
        let asyncChannel: SMTPSession.AsyncChannel
        do {
            asyncChannel = try await SMTPSession.connect(config)
        } catch {
            first.reply.resume(throwing: SMTPFailure.from(error, server: config.server, stage: "connecting"))
            return
        }
        channel.withLock { $0 = asyncChannel.channel }
        logger.debug("connected to \(config.server)")
        try? await asyncChannel.executeThenClose { inbound, outbound in
            var session = SMTPSession(config: config, channel: asyncChannel.channel, inbound: inbound,
                                      outbound: outbound, logger: logger)
            do {
                try await session.open()
            } catch {
                first.reply.resume(throwing: SMTPFailure.from(error, server: config.server, stage: "session setup"))
                return
            }
            var job = first
            while true {
                var usable = true
                do {
                    job.reply.resume(returning: try await session.send(job.transaction))
                } catch {
                    let failure = SMTPFailure.from(error, server: config.server, stage: "sending")
                    usable = failure.connectionUsable
                    job.reply.resume(throwing: failure)
                }
                guard usable else { return }
                guard let next = await pending.next() else { break }
                job = next
            }
            await session.quit()
        }
        logger.debug("closed the connection to \(config.server)")
        // A job that raced with the end of the connection gets an answer too.
        jobs.finish()
        while let late = await pending.next() {
            late.reply.resume(throwing: SMTPFailure(error: .retryable("the SMTP connection was closed"), connectionUsable: false))
        }
    }
}

/// Up to `maxConnections` SMTP connections, kept open between messages.
///
/// Callers check a connection out, send one message on it and give it back; when all are
/// busy, callers wait in line. Connections idle for longer than `idleTimeout`, or closed
/// by the server meanwhile, are closed instead of handed out, and ``closeIdle()`` (called
/// periodically by the notifier's service) closes them even when no mail is flowing.
actor SMTPConnectionPool {
    private let config: SMTPClientConfiguration
    private let maxConnections: Int
    private let idleTimeout: Duration
    private let logger: Logger
    private var idle: [(connection: SMTPConnection, since: ContinuousClock.Instant)] = []
    private var all: [Int: SMTPConnection] = [:]
    private var waiters: [(id: Int, continuation: CheckedContinuation<SMTPConnection?, any Error>)] = []
    private var nextID = 1
    /// Slots promised to waiters that were told to open a connection of their own.
    private var reserved = 0
    private var isShutDown = false

    init(config: SMTPClientConfiguration, maxConnections: Int, idleTimeout: Duration, logger: Logger) {
        self.config = config
        self.maxConnections = max(1, maxConnections)
        self.idleTimeout = idleTimeout
        self.logger = logger
    }

    /// A connection for one message; `reused` says it has carried messages before (so a
    /// failure on it may only mean it went stale).
    func checkout() async throws -> (connection: SMTPConnection, reused: Bool) {
        while let entry = idle.popLast() {
            if entry.connection.isOpen && entry.since.duration(to: .now) < idleTimeout {
                return (entry.connection, true)
            }
            retire(entry.connection)
        }
        guard !isShutDown else { throw SMTPFailure(error: .retryable("the email notifier is shutting down"), connectionUsable: false) }
        if all.count + reserved < maxConnections { return (open(), false) }
        let id = nextID
        nextID += 1
        let handed = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiters.append((id, continuation))
            }
        } onCancel: {
            Task { await self.cancelWaiter(id) }
        }
        if let handed { return (handed, true) }
        reserved -= 1
        return (open(), false)
    }

    /// Gives a connection back: to the next waiter or the idle list when `reusable`,
    /// otherwise it is closed and a waiter may open a new one.
    func release(_ connection: SMTPConnection, reusable: Bool) {
        if reusable && !isShutDown && connection.isOpen {
            if !waiters.isEmpty {
                waiters.removeFirst().continuation.resume(returning: connection)
            } else {
                idle.append((connection, .now))
            }
            return
        }
        retire(connection)
        if !waiters.isEmpty && !isShutDown {
            reserved += 1
            waiters.removeFirst().continuation.resume(returning: nil)
        }
    }

    /// Closes (with QUIT) connections that have been idle for `idleTimeout` or were dropped.
    func closeIdle() {
        let now = ContinuousClock.now
        let (keep, expired) = (idle.filter { $0.connection.isOpen && $0.since.duration(to: now) < idleTimeout },
                               idle.filter { !$0.connection.isOpen || $0.since.duration(to: now) >= idleTimeout })
        idle = keep
        for entry in expired {
            logger.debug("closing idle SMTP connection \(entry.connection.id)")
            retire(entry.connection)
        }
    }

    /// Closes every connection (QUIT after the message in flight) and waits for them.
    func shutdown() async {
        isShutDown = true
        for waiter in waiters {
            waiter.continuation.resume(throwing: SMTPFailure(error: .retryable("the email notifier is shutting down"), connectionUsable: false))
        }
        waiters.removeAll()
        idle.removeAll()
        let connections = Array(all.values)
        for connection in connections { connection.close() }
        for connection in connections { await connection.closed() }
        all.removeAll()
    }

    /// How many connections exist (busy or idle); for tests.
    var connectionCount: Int { all.count }

    private func open() -> SMTPConnection {
        let id = nextID
        nextID += 1
        let connection = SMTPConnection(id: id, config: config, logger: logger)
        all[id] = connection
        return connection
    }

    private func retire(_ connection: SMTPConnection) {
        connection.close()
        all[connection.id] = nil
    }

    private func cancelWaiter(_ id: Int) {
        guard let index = waiters.firstIndex(where: { $0.id == id }) else { return }
        waiters.remove(at: index).continuation.resume(throwing: CancellationError())
    }
}
