import Foundation
import HTTPTypes
import HeraldCore
import NIOCore
import NIOHTTP1
import Synchronization

/// Serves webhooks from the event loop that read them, when the journal answers appends by
/// callback (``AppendingWithoutWaiting``, Herald's SQLite journal).
///
/// A POST to a configured endpoint is read, verified, decoded and routed here, handed to the
/// journal's writer, and answered here once the writer has committed it: no task per request,
/// no hop to Swift's thread pool and back for the body and again for the answer. Those hops
/// and the router's async streams cost about 30 µs of CPU per request, a quarter of a
/// webhook's (benchmarks/README.md, "floor: SwiftNIO handler"). Everything else (health
/// checks, metrics, unknown paths, and every request while the router still owes an answer on
/// the connection) goes on to Hummingbird's router unchanged, and the answers are the same:
/// ``WebhookServer/answer(for:)``, 413 past `server.maxBodyBytes`, 400 with the reason for a
/// broken body.
///
/// It reads SwiftNIO's HTTP/1 request parts as the parser makes them, below Hummingbird's
/// HTTPTypes codec (``HTTPServerChannel``): a webhook never becomes an `HTTPRequest`, and its
/// answer is written already encoded, below SwiftNIO's response encoder. What goes on to the
/// router passes the codec.
///
/// One request at a time per connection: what arrives while the journal has a request
/// (pipelining) is held, and no more read, until that request is answered, so answers keep the
/// order of their requests. A graceful shutdown's quiesce and the sender's half-close wait for the
/// answer too: Hummingbird's side, which never sees these requests, would close at once.
final class WebhookChannel: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private enum Reading {
        /// Between requests.
        case idle
        /// A request for the router: its parts go on.
        case forwarding
        /// A webhook being read here, with its `Content-Length` (read once, not per part).
        case taking(path: String, head: HTTPRequestHead, length: Int?, body: ByteBuffer)
        /// A webhook already answered (413): the rest of its body is read and dropped.
        case dropping
    }

    private let pipeline: Pipeline
    private let journal: any AppendingWithoutWaiting
    private let serverName: String
    private var reading = Reading.idle
    /// Requests sent on to the router whose answer has not been written in full.
    private var routerOwes = 0
    /// A webhook is with the journal; what arrives meanwhile waits in `held`.
    private var waiting = false
    private var held: [NIOAny] = []
    /// A read the channel asked for while a webhook was with the journal: made once it is answered.
    private var readPending = false
    /// Events that would end the connection (a quiesce, the sender's half-close), held while a
    /// webhook is being read or stored.
    private var endings: [Any] = []
    private var removed = false

    init(pipeline: Pipeline, journal: any AppendingWithoutWaiting, serverName: String) {
        self.pipeline = pipeline
        self.journal = journal
        self.serverName = serverName
    }

    func handlerRemoved(context: ChannelHandlerContext) { removed = true }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if waiting || !held.isEmpty {
            held.append(data)
            return
        }
        take(context, data)
    }

    private func take(_ context: ChannelHandlerContext, _ data: NIOAny) {
        switch (unwrapInboundIn(data), reading) {
        case (.head(let head), _):
            guard routerOwes == 0, head.method == .POST, let path = Self.webhookPath(head.uri),
                  pipeline.endpoint(path: path) != nil else {
                routerOwes += 1
                reading = .forwarding
                context.fireChannelRead(data)
                return
            }
            let limit = pipeline.maxBodyBytes
            let length = head.headers.first(name: "content-length").flatMap { Int($0) }
            if let length, length > limit {
                reading = .dropping
                answer(context, WebhookServer.bodyTooLarge(limit: limit), request: head)
                return
            }
            reading = .taking(path: path, head: head, length: length, body: ByteBuffer())
        case (.body, .forwarding), (.end, .forwarding):
            if case .end = unwrapInboundIn(data) { reading = .idle }
            context.fireChannelRead(data)
        case (.body, .dropping):
            break
        case (.end, .dropping):
            reading = .idle
        case (.body(let part), .taking(let path, let head, let length, var body)):
            let limit = pipeline.maxBodyBytes
            reading = .idle  // lets `body` go uniquely referenced while it grows
            guard WebhookServer.collect(part, into: &body, length: length, limit: limit) else {
                reading = .dropping
                answer(context, WebhookServer.bodyTooLarge(limit: limit), request: head)
                return
            }
            reading = .taking(path: path, head: head, length: length, body: body)
        case (.end, .taking(let path, let head, _, let body)):
            reading = .idle
            store(context, path: path, head: head, body: body)
        case (.body, .idle), (.end, .idle):
            // Parts of no request: not produced by NIO's parser; the router reports them.
            context.fireChannelRead(data)
        }
    }

    /// Hands the webhook to the pipeline and answers once the journal has (or at once when
    /// the pipeline needs no journal for it).
    private func store(_ context: ChannelHandlerContext, path: String, head: HTTPRequestHead, body: ByteBuffer) {
        waiting = true
        let loop = context.eventLoop
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        let headers = head.headers
        pipeline.receive(path: path, body: Data(buffer: body, byteTransferStrategy: .noCopy), header: { name in
            Self.value(of: name, in: headers)
        }, journal: journal) { outcome in
            loop.execute {
                let (handler, context) = bound.value
                handler.answered(context, outcome, request: head)
            }
        }
    }

    private func answered(_ context: ChannelHandlerContext, _ outcome: Pipeline.Outcome, request: HTTPRequestHead) {
        waiting = false
        guard !removed else { return }
        if case .accepted(let id, let deliveries) = outcome {
            let closing = Self.asksToClose(request)
            send(context, WebhookServer.encodedAcceptance(eventID: id, deliveries: deliveries, date: DateHeader.now(),
                                                          server: serverName, closing: closing,
                                                          allocator: context.channel.allocator), closing: closing)
        } else {
            answer(context, WebhookServer.answer(for: outcome), request: request)
        }
        // What arrived meanwhile, in order, until a webhook goes to the journal again. The
        // router reads what it is passed at the end of a read (NIOAsyncChannel delivers its
        // buffered parts on `channelReadComplete`), so one is signalled after the replay.
        if !held.isEmpty {
            while !waiting, !held.isEmpty, !removed {
                take(context, held.removeFirst())
            }
            if !removed { context.fireChannelReadComplete() }
        }
        if readPending, held.isEmpty, !removed {
            readPending = false
            context.read()
        }
        passEndingsIfIdle(context)
    }

    /// Writes `answer` for `request`, closing after it when the answer or the sender says so.
    ///
    /// Already encoded, in one buffer, and handed to ``ConnectionGuard``, which ends the
    /// response's bookkeeping and writes it below SwiftNIO's response encoder: as three parts
    /// (head, body, end) it went through both handlers three times, and the encoder rebuilt a
    /// head of fields converted from `HTTPFields`. Under wrk, writing an answer took 5.8–6.6 %
    /// of the server's CPU besides the kernel's send, and takes 3.9–4.2 % so; the bytes are
    /// the same.
    private func answer(_ context: ChannelHandlerContext, _ answer: WebhookServer.Answer, request: HTTPRequestHead) {
        let closing = answer.headers[.connection]?.lowercased() == "close" || Self.asksToClose(request)
        send(context, answer.encoded(date: DateHeader.now(), server: serverName, closing: closing,
                                     allocator: context.channel.allocator), closing: closing)
    }

    /// Hands an encoded answer to ``ConnectionGuard``; `closing`: it says `Connection: close`.
    private func send(_ context: ChannelHandlerContext, _ bytes: ByteBuffer, closing: Bool) {
        context.triggerUserOutboundEvent(ConnectionGuard.EncodedAnswer(bytes: bytes, closing: closing), promise: nil)
    }

    /// The sender asked for the connection to be closed after this request's answer.
    private static func asksToClose(_ request: HTTPRequestHead) -> Bool {
        request.headers.first(name: "connection")?.lowercased() == "close"
    }

    /// Reading goes on while a webhook is with the journal until something arrives meanwhile
    /// (a pipelining sender): from then on no more is read until it is answered, so the rest
    /// stays in the kernel's buffers and `held` gets at most the one read already asked for.
    /// Not pausing at every webhook: SwiftNIO stops watching a socket whose read ended with no
    /// next read asked for, and watching it again cost two `epoll_ctl` calls per request.
    func read(context: ChannelHandlerContext) {
        if waiting && !held.isEmpty { readPending = true } else { context.read() }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // Only the router's answers pass here (this handler's own start below it).
        if case .end = unwrapOutboundIn(data) { routerOwes = max(0, routerOwes - 1) }
        context.write(data, promise: promise)
    }

    /// A broken body (truncated, a bad chunk) of a webhook read here: 400 with the reason and
    /// the connection closed, as the router answers; other errors go on.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard case .taking(_, let head, _, _) = reading else { return context.fireErrorCaught(error) }
        reading = .dropping
        let detail = WebhookServer.describe(readError: error)
        self.answer(context, WebhookServer.jsonAnswer(.badRequest, ["error": "malformed_request", "detail": detail],
                                                      closing: true), request: head)
    }

    /// A graceful shutdown's quiesce and the sender's half-close wait for the webhook being
    /// read or stored here: Hummingbird's side of the connection, which never sees that
    /// request, would close the connection at once, before its answer.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent || (event as? ChannelEvent) == .inputClosed else {
            return context.fireUserInboundEventTriggered(event)
        }
        endings.append(event)
        passEndingsIfIdle(context)
    }

    /// Passes held ending events on once no webhook is being read or stored here.
    private func passEndingsIfIdle(_ context: ChannelHandlerContext) {
        guard !endings.isEmpty, !waiting, held.isEmpty else { return }
        if case .taking = reading { return }
        let events = endings
        endings.removeAll()
        for event in events { context.fireUserInboundEventTriggered(event) }
    }

    /// The path of a request for one of the webhook endpoints (query dropped, one trailing
    /// slash dropped, as the router does); nil for a request target of another form.
    static func webhookPath(_ target: String) -> String? {
        // Bytes, as the router splits a target; its separators are ASCII.
        let utf8 = target.utf8
        guard utf8.first == UInt8(ascii: "/") else { return nil }
        let end = utf8.firstIndex { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") } ?? utf8.endIndex
        return WebhookServer.endpointPath(Substring(utf8[..<end]))
    }

    /// A request header's value as the router's `HTTPFields` gives it: the values of all
    /// fields of that name (case-insensitive), joined with ", "; nil if there is none.
    static func value(of name: String, in headers: HTTPHeaders) -> String? {
        let values = headers[name]
        switch values.count {
        case 0: return nil
        case 1: return values[0]
        default: return values.joined(separator: ", ")
        }
    }
}

/// The `Date` header's text (``HTTPDate/format(_:)``), made once a second.
enum DateHeader {
    private static let cache = Mutex<(second: Int, text: String)>((-1, ""))

    static func now() -> String {
        let now = Date()
        let second = Int(now.timeIntervalSince1970.rounded(.down))
        return cache.withLock { cached in
            if cached.second != second { cached = (second, HTTPDate.format(now)) }
            return cached.text
        }
    }
}
