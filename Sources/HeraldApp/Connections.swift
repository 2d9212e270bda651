import Foundation
import HTTPTypes
import HeraldCore
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// What every connection of one server shares: the open-connection count and cap, the
/// timeouts, the body budget, the reserve descriptor, and the throttled log lines for refused
/// connections, failed accepts and bodies past the budget.
final class ConnectionLimits: Sendable {
    let maxConnections: Int
    let headerTimeout: TimeAmount
    let bodyTimeout: TimeAmount
    let idleTimeout: TimeAmount
    let openConnections = Atomic<Int>(0)
    let bodies: BodyBudget
    let logger: Logger
    let refusals = LogThrottle()
    let acceptFailures = LogThrottle()
    let overBudget = LogThrottle()
    /// A descriptor held in reserve (`/dev/null`) for when accepts fail with EMFILE; see ``AcceptErrorLog``.
    private let reserve = Mutex<Int32>(-1)
    /// Set while there is no reserve descriptor: each closing connection tries to take one.
    let reserveMissing = Atomic<Bool>(true)
    /// Set when the reserve was given up: the next connection to open is closed at once.
    let shedNext = Atomic<Bool>(false)

    init(_ server: HeraldConfig.Server, logger: Logger) {
        maxConnections = server.maxConnections
        bodies = BodyBudget(limit: server.maxBodyBytesInFlight)
        headerTimeout = TimeAmount(server.headerTimeout)
        bodyTimeout = TimeAmount(server.bodyTimeout)
        idleTimeout = TimeAmount(server.idleTimeout)
        self.logger = logger
    }

    deinit { _ = releaseReserve() }

    /// Takes the reserve descriptor and puts ``AcceptErrorLog`` in front of the listening
    /// channel's pipeline, where it sees accept errors before NIO's `AcceptBackoffHandler`
    /// swallows them.
    func watchAccepts(on channel: any Channel) async {
        holdReserve()
        do {
            try await channel.eventLoop.submit {
                try channel.pipeline.syncOperations.addHandler(AcceptErrorLog(limits: self), position: .first)
            }.get()
        } catch {
            logger.warning("cannot watch the listening socket for accept errors: \(error)")
        }
    }
}

extension ConnectionLimits {
    func holdReserve() {
        reserve.withLock { fd in
            if fd < 0 { fd = open("/dev/null", O_RDONLY | O_CLOEXEC) }
            reserveMissing.store(fd < 0, ordering: .relaxed)
        }
    }

    /// Closes the reserve descriptor; false if there was none to close.
    func releaseReserve() -> Bool {
        reserve.withLock { fd in
            guard fd >= 0 else { return false }
            close(fd)
            fd = -1
            reserveMissing.store(true, ordering: .relaxed)
            return true
        }
    }
}

/// Logs accept errors on the listening channel (once per interval, with a count), and keeps
/// the event loop from spinning when descriptors run out.
///
/// NIO stops polling the listening socket (and lets `AcceptBackoffHandler` wait a second)
/// only after an accept succeeds; while every accept fails with EMFILE it calls accept again
/// at once, pinning a core. So on EMFILE the reserve descriptor is closed, the next accept
/// succeeds, and that connection, one Herald has no room for, is closed as soon as it opens
/// (by ``ConnectionGuard``): the client learns promptly instead of hanging, connections
/// already open keep being served, and the reserve is taken again once a descriptor is free.
final class AcceptErrorLog: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = any Channel
    let limits: ConnectionLimits

    init(limits: ConnectionLimits) { self.limits = limits }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let reason: String
        if let io = error as? IOError, io.errnoCode == EMFILE || io.errnoCode == ENFILE {
            // ConnectionGuard closes the connection this makes room for, and takes the reserve back.
            if limits.releaseReserve() { limits.shedNext.store(true, ordering: .relaxed) }
            reason = "cannot accept connections: out of file descriptors (\(io.errnoCode == EMFILE ? "EMFILE" : "ENFILE")); "
                + "open connections are still served, new ones are closed until some close"
        } else {
            reason = "cannot accept a connection: \(error)"
        }
        limits.acceptFailures.log(limits.logger, .error, reason)
        context.fireErrorCaught(error)
    }
}

/// One per connection, right after SwiftNIO's HTTP/1 parser (``HTTPServerChannel``): enforces
/// the connection cap, the header, body and idle timeouts and the body budget, and closes the
/// connection after a response that says `Connection: close`.
///
/// Body bytes are counted against ``BodyBudget`` as they come off the socket, before anything
/// buffers them, and given back once the request is answered or the connection closes. A part
/// that does not fit gets `503` with `Retry-After` (unless the response has begun) and the
/// connection is closed, so memory stays bounded however many senders there are.
///
/// Timeouts are deadlines, not inactivity timers, so a sender cannot hold a connection by
/// dripping a byte at a time: a new connection has `headerTimeout` to deliver a complete
/// header; a request then has `bodyTimeout` to deliver its body; after a response, a kept-alive
/// connection has `idleTimeout` to deliver its next header. While Herald itself works on a
/// request (the body is in, the response is not out), no timer runs.
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    /// What a connection is waiting for when its deadline passes, for the debug line.
    private enum Wait: String {
        case header = "no complete request header in time (server.headerTimeout)"
        case body = "the request body did not arrive in time (server.bodyTimeout)"
        case nextRequest = "no new request in time (server.idleTimeout)"
        case drain = "the sender went on sending after an answer that closes (server.bodyTimeout)"
    }

    private let limits: ConnectionLimits
    private var counted = false
    /// Requests whose header was read and whose response has not been written in full.
    private var unanswered = 0
    private var readingBody = false
    private var closeAfterResponse = false
    /// Whether body parts count against the budget: from a request's header until its response ends.
    private var countingBody = false
    /// Body bytes this connection has taken from the budget.
    private var held = 0
    private var responseStarted = false
    /// After an answer of the guard's own (503 over budget, 400 bad header): the output is
    /// closed and whatever still arrives is dropped until the sender closes.
    private var draining = false
    /// Closed on opening to give its descriptor back to the reserve (see ``AcceptErrorLog``).
    private var shed = false
    /// When the connection is closed unless something happens first, and why; nil while Herald works.
    private var deadline: (at: NIODeadline, waiting: Wait)?
    /// One timer, rescheduled only when it fires early or a deadline comes sooner: moving the
    /// deadline on every request costs no allocation.
    private var timer: Scheduled<Void>?
    private var timerFiresAt = NIODeadline.distantFuture

    /// A whole response already in HTTP/1.1 bytes (``WebhookServer/Answer/encoded(date:server:closing:allocator:)``),
    /// sent down the pipeline as an outbound user event by ``WebhookChannel``. The guard does
    /// what it does when a response ends, and writes the bytes below SwiftNIO's response
    /// encoder, which would otherwise expect the response in parts. `closing`: the response
    /// says `Connection: close`.
    struct EncodedAnswer {
        let bytes: ByteBuffer
        let closing: Bool
    }

    /// SwiftNIO's response encoder, below the guard: encoded answers are written from its
    /// context, so that they pass on to the socket as they are. Nil without one (the bytes
    /// are then written from the guard's own context) and once the guard is removed.
    private var encoder: ChannelHandlerContext?

    init(limits: ConnectionLimits) { self.limits = limits }

    func handlerAdded(context: ChannelHandlerContext) {
        encoder = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self)
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

    func handlerRemoved(context: ChannelHandlerContext) {
        encoder = nil
        closed()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if draining, let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !draining else { return }
        switch unwrapInboundIn(data) {
        case .head:
            unanswered += 1
            readingBody = true
            countingBody = true
            responseStarted = false
            arm(context, limits.bodyTimeout, .body)
        case .body(let part):
            if countingBody {
                guard limits.bodies.take(part.readableBytes) else {
                    refuseOverBudget(context)
                    return
                }
                held += part.readableBytes
            }
        case .end:
            readingBody = false
            if unanswered == 0 { arm(context, limits.idleTimeout, .nextRequest) } else { deadline = nil }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let response):
            responseStarted = true
            if response.headers.first(name: "connection")?.lowercased() == "close" { closeAfterResponse = true }
            context.write(data, promise: promise)
        case .body:
            context.write(data, promise: promise)
        case .end:
            let closing = ended()
            if closing { context.writeAndFlush(data, promise: promise) } else { context.write(data, promise: promise) }
            afterResponse(context, closing: closing)
        }
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard let answer = event as? EncodedAnswer else {
            return context.triggerUserOutboundEvent(event, promise: promise)
        }
        responseStarted = true
        if answer.closing { closeAfterResponse = true }
        let closing = ended()
        (encoder ?? context).writeAndFlush(NIOAny(answer.bytes), promise: promise)
        afterResponse(context, closing: closing)
    }

    /// Once a response's last bytes are written: the connection closes when ``ended()`` said so,
    /// or, with nothing left to answer or read, waits for the next request within the idle time.
    private func afterResponse(_ context: ChannelHandlerContext, closing: Bool) {
        if closing {
            context.close(promise: nil)
        } else if unanswered == 0, !readingBody {
            arm(context, limits.idleTimeout, .nextRequest)
        }
    }

    /// A response ends: its body's bytes go back to the budget. Whether the connection closes
    /// after it (it said `Connection: close` and no other request waits for an answer).
    private func ended() -> Bool {
        unanswered = max(0, unanswered - 1)
        // The handler is done with the body; what still arrives of it is read and dropped.
        countingBody = false
        giveBackBody()
        return closeAfterResponse && unanswered == 0
    }

    private func opened(_ context: ChannelHandlerContext) {
        guard !counted else { return }
        counted = true
        if limits.shedNext.compareExchange(expected: true, desired: false, ordering: .relaxed).exchanged {
            shed = true
            context.close(promise: nil)
            return
        }
        let open = limits.openConnections.wrappingAdd(1, ordering: .relaxed).newValue
        guard open <= limits.maxConnections else {
            limits.refusals.log(limits.logger, .warning,
                                "refusing connections: \(limits.maxConnections) are open (server.maxConnections)")
            context.close(promise: nil)
            return
        }
        arm(context, limits.headerTimeout, .header)
    }

    private func giveBackBody() {
        if held > 0 { limits.bodies.give(held) }
        held = 0
    }

    /// 503 + `Retry-After` for a body that would take the bytes in flight past
    /// `server.maxBodyBytesInFlight`, then close: the rest of the body is not worth keeping.
    private func refuseOverBudget(_ context: ChannelHandlerContext) {
        limits.overBudget.log(limits.logger, .warning, """
            answering 503: request bodies in flight would pass server.maxBodyBytesInFlight (\(limits.bodies.limit) bytes)
            """)
        countingBody = false
        giveBackBody()
        // Only when no response is being written (a pipelined earlier one included).
        if !responseStarted, unanswered <= 1 {
            answerAndDrain(context, .serviceUnavailable, ["error": "unavailable",
                                                          "detail": "too many request bodies are being received at once; try again shortly"],
                           retryAfter: "1")
        } else {
            context.close(promise: nil)
        }
    }

    /// A header Herald cannot parse gets 400 with the parser's reason, like a broken body does
    /// (Hummingbird would answer a bare 400); other errors go on to Hummingbird.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard !draining else { return }
        if error is HTTPParserError, unanswered == 0, !readingBody {
            answerAndDrain(context, .badRequest, ["error": "malformed_request", "detail": WebhookServer.describe(readError: error)])
            return
        }
        context.fireErrorCaught(error)
    }

    /// Writes a JSON answer with `Connection: close` on the guard's own account, closes the
    /// output, and drops what still arrives until the sender closes (or `server.bodyTimeout`):
    /// closing at once, with the sender's bytes unread, would send a reset that can destroy the
    /// answer before the sender reads it.
    private func answerAndDrain(_ context: ChannelHandlerContext, _ status: HTTPResponse.Status,
                                _ object: [String: String], retryAfter: String? = nil) {
        responseStarted = true
        draining = true
        var body = ByteBuffer(bytes: (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8))
        body.writeString("\n")
        var fields: HTTPFields = [.contentType: "application/json", .contentLength: String(body.readableBytes), .connection: "close"]
        if let retryAfter { fields[.retryAfter] = retryAfter }
        let answer = WebhookServer.Answer(status: status, headers: fields, body: body)
        context.write(wrapOutboundOut(.head(answer.head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.close(mode: .output, promise: nil)
        arm(context, limits.bodyTimeout, .drain)
    }

    private func closed() {
        giveBackBody()
        countingBody = false
        deadline = nil
        timer?.cancel()
        timer = nil
        if shed {
            shed = false
            counted = false
        } else if counted {
            counted = false
            limits.openConnections.wrappingSubtract(1, ordering: .relaxed)
        }
        // A descriptor is free now (this one's is closed): take it as the reserve if there is none.
        if limits.reserveMissing.load(ordering: .relaxed) { limits.holdReserve() }
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
/// all back when it is answered or its connection closes, whatever the outcome.
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

/// Keeps request-sized buffers (128 KiB and more) out of glibc's heap.
///
/// glibc raises its mmap threshold each time a large block is freed, so after the first few
/// bodies, 1 MiB buffers are carved from the heap, where fragmentation keeps them: 900 senders
/// of 1 MiB left RSS at 1.26 GB, and 921 MB stayed after they closed. With a fixed threshold
/// they are mapped and unmapped, and RSS comes back down. `mallopt` is looked up at run time
/// because Swift's Glibc module does not import `malloc.h`; without glibc this does nothing.
func keepLargeBuffersOutOfTheHeap() {
    typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
    let mMmapThreshold: Int32 = -3  // M_MMAP_THRESHOLD in malloc.h
    _ = unsafeBitCast(symbol, to: Mallopt.self)(mMmapThreshold, 128 << 10)
}
