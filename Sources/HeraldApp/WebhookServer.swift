import Foundation
import HTTPTypes
import HeraldCore
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// Herald's HTTP surface: POST to a configured endpoint's path, plus health checks.
///
/// The handler reads the raw body once (refusing more than `server.maxBodyBytes` with 413 and
/// a broken framing with 400 and the reason; ``ConnectionGuard`` answers 503 before a body
/// would take the bytes held by all requests past `server.maxBodyBytesInFlight`), hands it to
/// ``Pipeline/receive(path:body:header:now:)`` and maps the outcome to a status:
/// 202 accepted (after the journal commit), 200 duplicate, 401 bad signature with the reason,
/// 400 malformed JSON, 503 with `Retry-After` when Herald cannot keep more. With a journal
/// that appends by callback (the SQLite journal), ``WebhookChannel`` serves these POSTs from
/// the event loop instead, with the same answers, and the router serves the rest.
public enum WebhookServer {
    /// Whether `/readyz` answers 200: set once everything has started, cleared on shutdown.
    public final class Readiness: Sendable {
        private let state = Atomic<Bool>(false)
        private let listened = Atomic<Bool>(false)
        public init() {}
        public var isReady: Bool { state.load(ordering: .relaxed) }
        /// Whether the server has been ready once: an error before that is a failure to start.
        public var hasListened: Bool { listened.load(ordering: .relaxed) }
        public func set(_ ready: Bool) {
            state.store(ready, ordering: .relaxed)
            if ready { listened.store(true, ordering: .relaxed) }
        }
    }

    /// The router with every route; `metrics` renders `/metrics` when given.
    public static func router(
        pipeline: Pipeline, readiness: Readiness, metrics: (@Sendable () -> String)? = nil,
        journalReachable: (@Sendable () async -> Bool)? = nil
    ) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        let limit = pipeline.config.server.maxBodyBytes
        // One route for every POST: the endpoints are looked up per request in the live
        // configuration, so a reload can add, remove or change them without a new router.
        router.post("**") { request, _ -> Response in
            let path = endpointPath(request.uri.path[...])
            guard pipeline.endpoint(path: path) != nil else { return response(for: .unknownEndpoint) }
            let length = request.headers[.contentLength].flatMap(Int.init)
            if let length, length > limit { return bodyTooLarge(limit: limit).response }
            // The body's bytes already count against server.maxBodyBytesInFlight (ConnectionGuard).
            var buffer = ByteBuffer()
            do {
                for try await part in request.body {
                    guard collect(part, into: &buffer, length: length, limit: limit) else {
                        return bodyTooLarge(limit: limit).response
                    }
                }
            } catch {
                return json(.badRequest, ["error": "malformed_request", "detail": describe(readError: error)],
                            closing: true)
            }
            let body = Data(buffer: buffer, byteTransferStrategy: .noCopy)
            let headers = request.headers
            let outcome = await pipeline.receive(path: path, body: body, header: { name in
                HTTPField.Name(name).flatMap { headers[$0] }
            })
            return response(for: outcome)
        }
        router.get("/healthz") { _, _ in json(.ok, ["status": "ok"]) }
        router.get("/readyz") { _, _ in
            guard readiness.isReady else { return json(.serviceUnavailable, ["status": "not_ready"]) }
            // A shared journal's database can go away while Herald runs: not ready until it is back.
            if let journalReachable, await !journalReachable() {
                return json(.serviceUnavailable, ["status": "journal_unreachable"])
            }
            return json(.ok, ["status": "ready"])
        }
        if let metrics {
            router.get("/metrics") { _, _ in
                Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                         body: ResponseBody(byteBuffer: ByteBuffer(string: metrics())))
            }
        }
        return router
    }

    /// The HTTP/1 application serving `router` on `server`'s address, with the connection cap and
    /// timeouts of `server` (see ``ConnectionGuard``) and accept errors logged. With `pipeline`,
    /// when its journal answers appends by callback, webhooks are served from the event loop
    /// (``WebhookChannel``) and everything else by `router`.
    public static func application(
        router: Router<BasicRequestContext>, server: HeraldConfig.Server, pipeline: Pipeline? = nil, logger: Logger,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        application(router: router, server: server, pipeline: pipeline, limits: ConnectionLimits(server, logger: logger),
                    logger: logger, onServerRunning: onServerRunning)
    }

    /// The same with the ``ConnectionLimits`` given (tests read the body bytes in flight from it).
    static func application(
        router: Router<BasicRequestContext>, server: HeraldConfig.Server, pipeline: Pipeline? = nil,
        limits: ConnectionLimits, logger: Logger,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void
    ) -> some ApplicationProtocol {
        let serverName = "Herald"
        let webhooks = pipeline.flatMap { pipeline in
            (pipeline.journal as? any AppendingWithoutWaiting).map { (pipeline, $0) }
        }
        return Application(
            router: router,
            server: HTTPServerChannel.builder(handlers: {
                guard let (pipeline, journal) = webhooks else { return [ConnectionGuard(limits: limits)] }
                return [ConnectionGuard(limits: limits),
                        WebhookChannel(pipeline: pipeline, journal: journal, serverName: serverName)]
            }),
            configuration: .init(address: .hostname(server.host, port: server.port), serverName: serverName),
            onServerRunning: { channel in
                await limits.watchAccepts(on: channel)
                await onServerRunning(channel)
            },
            logger: logger)
    }

    /// A status, header fields and a body: what the router's `Response` carries, and what
    /// ``WebhookChannel`` writes itself.
    struct Answer {
        var status: HTTPResponse.Status
        var headers: HTTPFields
        var body: ByteBuffer

        var response: Response { Response(status: status, headers: headers, body: ResponseBody(byteBuffer: body)) }

        /// The whole answer as HTTP/1.1 bytes, as SwiftNIO's response encoder would write
        /// ``head`` and ``body`` with `Content-Length`, `Date` and `Server` added, and
        /// `Connection: close` when `closing` and the fields do not say so already. One buffer
        /// written at once: what ``WebhookChannel`` sends for every webhook (see
        /// ``ConnectionGuard/EncodedAnswer``).
        func encoded(date: String, server: String, closing: Bool, allocator: ByteBufferAllocator) -> ByteBuffer {
            var bytes = allocator.buffer(capacity: 160 + body.readableBytes)
            bytes.writeStaticString("HTTP/1.1 ")
            bytes.writeString(String(status.code))
            bytes.writeStaticString(" ")
            // SwiftNIO's phrase for a status it knows, as the router's answers carry it.
            bytes.writeString(HTTPResponseStatus(statusCode: status.code, reasonPhrase: status.reasonPhrase).reasonPhrase)
            bytes.writeStaticString("\r\n")
            for field in headers {
                bytes.writeString(field.name.rawName)
                bytes.writeStaticString(": ")
                bytes.writeString(field.value)
                bytes.writeStaticString("\r\n")
            }
            WebhookServer.writeFraming(into: &bytes, bodyLength: body.readableBytes, date: date, server: server,
                                       closing: closing && headers[.connection] == nil)
            bytes.writeImmutableBuffer(body)
            return bytes
        }

        /// The status and header fields as SwiftNIO's HTTP/1 head, for the guard's own answers
        /// below Hummingbird's HTTPTypes codec (``ConnectionGuard``).
        var head: HTTPResponseHead {
            var fields = HTTPHeaders()
            fields.reserveCapacity(headers.count + 4)
            for field in headers { fields.add(name: field.name.rawName, value: field.value) }
            return HTTPResponseHead(version: .http1_1,
                                    status: HTTPResponseStatus(statusCode: status.code, reasonPhrase: status.reasonPhrase),
                                    headers: fields)
        }
    }

    /// The status and JSON body for each pipeline outcome.
    static func response(for outcome: Pipeline.Outcome) -> Response { answer(for: outcome).response }

    /// The `202` of an accepted webhook: the bytes ``Answer/encoded(date:server:closing:allocator:)``
    /// writes for ``answer(for:)``'s answer, written straight into one buffer. It is the answer
    /// of nearly every webhook, and building the ``Answer`` first (its body through a `String`,
    /// an `HTTPFields`, the status's phrase looked up) took about 1 % of the server's samples
    /// under wrk.
    static func encodedAcceptance(eventID: String, deliveries: Int, date: String, server: String, closing: Bool,
                                  allocator: ByteBufferAllocator) -> ByteBuffer {
        let count = String(deliveries)
        // The fixed parts of `writeAcceptanceBody`'s JSON: 24 bytes.
        let bodyLength = 24 + count.utf8.count + eventID.utf8.count
        var bytes = allocator.buffer(capacity: 160 + bodyLength)
        bytes.writeStaticString("HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n")
        writeFraming(into: &bytes, bodyLength: bodyLength, date: date, server: server, closing: closing)
        writeAcceptanceBody(into: &bytes, eventID: eventID, deliveries: count)
        return bytes
    }

    /// An accepted webhook's JSON body, `{"deliveries":N,"id":"ID"}` and a line feed, for both
    /// ways of answering it. Written without JSONSerialization: the shape is fixed and event
    /// ids are `[a-z0-9_]`, so nothing needs escaping.
    private static func writeAcceptanceBody(into bytes: inout ByteBuffer, eventID: String, deliveries: String) {
        bytes.writeStaticString("{\"deliveries\":")
        bytes.writeString(deliveries)
        bytes.writeStaticString(",\"id\":\"")
        bytes.writeString(eventID)
        bytes.writeStaticString("\"}\n")
    }

    /// The header fields SwiftNIO's response encoder adds after a response's own, and the blank
    /// line that ends the head: `Content-Length`, `Date`, `Server`, and `Connection: close`
    /// when `closing`. Shared by the two encoded answers, so that both frame a body alike.
    private static func writeFraming(into bytes: inout ByteBuffer, bodyLength: Int, date: String, server: String,
                                     closing: Bool) {
        bytes.writeStaticString("Content-Length: ")
        bytes.writeString(String(bodyLength))
        bytes.writeStaticString("\r\nDate: ")
        bytes.writeString(date)
        bytes.writeStaticString("\r\nServer: ")
        bytes.writeString(server)
        if closing { bytes.writeStaticString("\r\nConnection: close") }
        bytes.writeStaticString("\r\n\r\n")
    }

    /// The same as an ``Answer``.
    static func answer(for outcome: Pipeline.Outcome) -> Answer {
        switch outcome {
        case .accepted(let id, let deliveries):
            // The event loop writes the same bytes with `encodedAcceptance`, without building
            // this answer.
            var buffer = ByteBuffer()
            writeAcceptanceBody(into: &buffer, eventID: id, deliveries: String(deliveries))
            return Answer(status: .accepted, headers: [.contentType: "application/json"], body: buffer)
        case .duplicate(let id):
            return jsonAnswer(.ok, ["id": id, "duplicate": true])
        case .rejected(let reason):
            return jsonAnswer(.unauthorized, ["error": reason.rawValue])
        case .malformed(let reason):
            return jsonAnswer(.badRequest, ["error": "malformed_body", "detail": reason])
        case .unavailable(let retryAfter, let reason):
            var answer = jsonAnswer(.serviceUnavailable, ["error": "unavailable", "detail": reason])
            answer.headers[.retryAfter] = String(retryAfter)
            return answer
        case .unknownEndpoint:
            return jsonAnswer(.notFound, ["error": "no_such_endpoint"])
        }
    }

    /// `closing`: the response says `Connection: close`, and ``ConnectionGuard`` closes the
    /// connection once it is written (the rest of the request is not worth reading).
    static func json(_ status: HTTPResponse.Status, _ object: [String: any Sendable], closing: Bool = false) -> Response {
        jsonAnswer(status, object, closing: closing).response
    }

    /// The same as an ``Answer``.
    static func jsonAnswer(_ status: HTTPResponse.Status, _ object: [String: any Sendable], closing: Bool = false) -> Answer {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        var buffer = ByteBuffer()
        buffer.writeBytes(data)
        buffer.writeInteger(UInt8(ascii: "\n"))
        var headers: HTTPFields = [.contentType: "application/json"]
        if closing { headers[.connection] = "close" }
        return Answer(status: status, headers: headers, body: buffer)
    }

    /// The endpoint a request path names: one trailing slash is not part of it.
    ///
    /// Read as bytes: counting the path's Characters walked all of it with grapheme breaking,
    /// on every webhook.
    static func endpointPath(_ path: Substring) -> String {
        let utf8 = path.utf8
        guard utf8.count > 1, utf8.last == UInt8(ascii: "/") else { return String(path) }
        return String(Substring(utf8.dropLast()))
    }

    /// Adds one part of a request body to `body`; false, leaving `body` as it was, when the
    /// body would pass `limit` bytes. A body in one part is used as it is; one in several is
    /// copied into a buffer sized once from Content-Length (`length`), rather than one that
    /// doubles as it grows.
    static func collect(_ part: ByteBuffer, into body: inout ByteBuffer, length: Int?, limit: Int) -> Bool {
        guard part.readableBytes <= limit - body.readableBytes else { return false }
        if body.readableBytes == 0 {
            body = part
        } else {
            if let length, body.capacity < length { body.reserveCapacity(length) }
            body.writeImmutableBuffer(part)
        }
        return true
    }

    /// 413 for a body larger than `server.maxBodyBytes`.
    static func bodyTooLarge(limit: Int) -> Answer {
        jsonAnswer(.contentTooLarge, ["error": "body_too_large", "detail": "the body is larger than \(limit) bytes"])
    }

    /// Why a request body could not be read, for the 400 answer: the HTTP parser's reason in
    /// words (a truncated body, a bad chunk size, an unsupported `Transfer-Encoding`).
    static func describe(readError error: any Error) -> String {
        guard let parse = error as? HTTPParserError else { return "the request body could not be read: \(error)" }
        switch parse {
        case .invalidEOFState: return "the connection ended before the whole body arrived (truncated body)"
        case .invalidChunkSize: return "invalid chunk size in the chunked body"
        case .invalidContentLength: return "invalid Content-Length header"
        case .unexpectedContentLength: return "Content-Length together with Transfer-Encoding"
        case .unknown: return "invalid request framing: unsupported Transfer-Encoding or a malformed chunk"
        case .lfExpected: return "malformed line ending"
        case .invalidHeaderToken: return "invalid character in a header"
        case .headerOverflow: return "the header is too large"
        case .invalidMethod, .invalidURL, .invalidVersion: return "malformed request line: \(parse.debugDescription)"
        default: return "malformed HTTP request: \(parse.debugDescription)"
        }
    }
}
