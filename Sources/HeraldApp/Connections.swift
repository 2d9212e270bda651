import Foundation
import HTTPTypes
import HeraldCore
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization

/// What every connection of one server shares: the open-connection count and cap, the
/// timeouts, and the throttled log lines for refused connections and failed accepts.
final class ConnectionLimits: Sendable {
    let maxConnections: Int
    let headerTimeout: TimeAmount
    let bodyTimeout: TimeAmount
    let idleTimeout: TimeAmount
    let open = Atomic<Int>(0)
    let logger: Logger
    let refusals = LogThrottle()
    let acceptFailures = LogThrottle()

    init(_ server: HeraldConfig.Server, logger: Logger) {
        maxConnections = server.maxConnections
        headerTimeout = TimeAmount(server.headerTimeout)
        bodyTimeout = TimeAmount(server.bodyTimeout)
        idleTimeout = TimeAmount(server.idleTimeout)
        self.logger = logger
    }

    /// Puts ``AcceptErrorLog`` in front of the listening channel's pipeline, where it sees
    /// accept errors before NIO's `AcceptBackoffHandler` (which waits a second before
    /// accepting again, so that running out of descriptors does not spin a core) swallows them.
    func watchAccepts(on channel: any Channel) async {
        do {
            try await channel.eventLoop.submit {
                try channel.pipeline.syncOperations.addHandler(AcceptErrorLog(limits: self), position: .first)
            }.get()
        } catch {
            logger.warning("cannot watch the listening socket for accept errors: \(error)")
        }
    }
}

/// Logs accept errors on the listening channel (once per interval, with a count) and passes
/// them on. `EMFILE`/`ENFILE` mean descriptors ran out: connections already open keep working,
/// new ones wait in the backlog until some close.
final class AcceptErrorLog: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = any Channel
    let limits: ConnectionLimits

    init(limits: ConnectionLimits) { self.limits = limits }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let reason: String
        if let io = error as? IOError, io.errnoCode == EMFILE || io.errnoCode == ENFILE {
            reason = "cannot accept connections: out of file descriptors (\(io.errnoCode == EMFILE ? "EMFILE" : "ENFILE")); "
                + "open connections are still served, new ones wait until some close"
        } else {
            reason = "cannot accept a connection: \(error)"
        }
        limits.acceptFailures.log(limits.logger, .error, reason)
        context.fireErrorCaught(error)
    }
}

/// One per connection, between the HTTP codec and Hummingbird: enforces the connection cap
/// and the header, body and idle timeouts, and closes the connection after a response that
/// says `Connection: close`.
///
/// Timeouts are deadlines, not inactivity timers, so a sender cannot hold a connection by
/// dripping a byte at a time: a new connection has `headerTimeout` to deliver a complete
/// header; a request then has `bodyTimeout` to deliver its body; after a response, a kept-alive
/// connection has `idleTimeout` to deliver its next header. While Herald itself works on a
/// request (the body is in, the response is not out), no timer runs.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// What a connection is waiting for when its deadline passes, for the debug line.
    private enum Wait: String {
        case header = "no complete request header in time (server.headerTimeout)"
        case body = "the request body did not arrive in time (server.bodyTimeout)"
        case nextRequest = "no new request in time (server.idleTimeout)"
    }

    private let limits: ConnectionLimits
    private var counted = false
    /// Requests whose header was read and whose response has not been written in full.
    private var unanswered = 0
    private var readingBody = false
    private var closeAfterResponse = false
    /// When the connection is closed unless something happens first, and why; nil while Herald works.
    private var deadline: (at: NIODeadline, waiting: Wait)?
    /// One timer, rescheduled only when it fires early or a deadline comes sooner: moving the
    /// deadline on every request costs no allocation.
    private var timer: Scheduled<Void>?
    private var timerFiresAt = NIODeadline.distantFuture

    init(limits: ConnectionLimits) { self.limits = limits }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { opened(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        opened(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { closed() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            unanswered += 1
            readingBody = true
            arm(context, limits.bodyTimeout, .body)
        case .body:
            break
        case .end:
            readingBody = false
            if unanswered == 0 { arm(context, limits.idleTimeout, .nextRequest) } else { deadline = nil }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let response):
            if response.headerFields[.connection]?.lowercased() == "close" { closeAfterResponse = true }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            unanswered = max(0, unanswered - 1)
            if closeAfterResponse, unanswered == 0 {
                context.writeAndFlush(data, promise: promise)
                context.close(promise: nil)
                return
            }
            context.write(data, promise: promise)
            if unanswered == 0, !readingBody { arm(context, limits.idleTimeout, .nextRequest) }
        }
    }

    private func opened(_ context: ChannelHandlerContext) {
        guard !counted else { return }
        counted = true
        let open = limits.open.wrappingAdd(1, ordering: .relaxed).newValue
        guard open <= limits.maxConnections else {
            limits.refusals.log(limits.logger, .warning,
                                "refusing connections: \(limits.maxConnections) are open (server.maxConnections)")
            context.close(promise: nil)
            return
        }
        arm(context, limits.headerTimeout, .header)
    }

    private func closed() {
        deadline = nil
        timer?.cancel()
        timer = nil
        if counted {
            counted = false
            limits.open.wrappingSubtract(1, ordering: .relaxed)
        }
    }

    private func arm(_ context: ChannelHandlerContext, _ after: TimeAmount, _ waiting: Wait) {
        let at = NIODeadline.now() + after
        deadline = (at, waiting)
        if timer == nil || at < timerFiresAt { schedule(context, at: at) }
    }

    private func schedule(_ context: ChannelHandlerContext, at: NIODeadline) {
        timer?.cancel()
        timerFiresAt = at
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: at) { self.fire(context) }
    }

    private func fire(_ context: ChannelHandlerContext) {
        timer = nil
        guard let deadline else { return }
        if NIODeadline.now() < deadline.at {
            schedule(context, at: deadline.at)
        } else {
            limits.logger.debug("closing a connection: \(deadline.waiting.rawValue)")
            context.close(promise: nil)
        }
    }
}

/// The process-wide budget of request body bytes held in memory at once
/// (`server.maxBodyBytesInFlight`). A request takes bytes as its body arrives and gives them
/// all back when it is answered, whatever the outcome.
final class BodyBudget: Sendable {
    let limit: Int
    private let held = Atomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    /// Body bytes held now, by all requests together.
    var inUse: Int { held.load(ordering: .relaxed) }

    /// Takes `bytes` if they fit, and says whether they did.
    func take(_ bytes: Int) -> Bool {
        var current = held.load(ordering: .relaxed)
        while true {
            guard bytes <= limit - current else { return false }
            let (exchanged, original) = held.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    func give(_ bytes: Int) {
        held.wrappingSubtract(bytes, ordering: .relaxed)
    }
}

/// Raises the soft limit on open files to the hard limit, so that connections, the journal
/// and outbound deliveries do not run out of descriptors at the 1,024 that many systems start
/// with. Returns the limit before and after, or nil when it cannot be read.
func raiseOpenFilesLimit() -> (before: UInt64, after: UInt64)? {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return nil }
    let before = UInt64(limit.rlim_cur)
    guard limit.rlim_cur < limit.rlim_max else { return (before, before) }
    var raised = limit
    raised.rlim_cur = limit.rlim_max
    guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 else { return (before, before) }
    return (before, UInt64(raised.rlim_cur))
}
