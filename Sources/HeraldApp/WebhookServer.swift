import Foundation
import HTTPTypes
import HeraldCore
import Hummingbird
import Logging
import NIOCore
import Synchronization

/// Herald's HTTP surface: POST to a configured endpoint's path, plus health checks.
///
/// The handler reads the raw body once (refusing more than `server.maxBodyBytes` with 413),
/// hands it to ``Pipeline/receive(path:body:header:now:)`` and maps the outcome to a status:
/// 202 accepted (after the journal commit), 200 duplicate, 401 bad signature with the reason,
/// 400 malformed JSON, 503 with `Retry-After` when Herald cannot keep more.
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
        pipeline: Pipeline, readiness: Readiness, metrics: (@Sendable () -> String)? = nil
    ) -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        let limit = pipeline.config.server.maxBodyBytes
        // One route for every POST: the endpoints are looked up per request in the live
        // configuration, so a reload can add, remove or change them without a new router.
        router.post("**") { request, _ -> Response in
            var path = request.uri.path
            if path.count > 1, path.hasSuffix("/") { path.removeLast() }
            guard pipeline.endpoint(path: path) != nil else { return response(for: .unknownEndpoint) }
            if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
                return json(.contentTooLarge, ["error": "body_too_large", "detail": "the body is larger than \(limit) bytes"])
            }
            let buffer: ByteBuffer
            do { buffer = try await request.body.collect(upTo: limit) } catch {
                return json(.contentTooLarge, ["error": "body_too_large", "detail": "the body is larger than \(limit) bytes"])
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
            readiness.isReady ? json(.ok, ["status": "ready"]) : json(.serviceUnavailable, ["status": "not_ready"])
        }
        if let metrics {
            router.get("/metrics") { _, _ in
                Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                         body: ResponseBody(byteBuffer: ByteBuffer(string: metrics())))
            }
        }
        return router
    }

    /// The status and JSON body for each pipeline outcome.
    static func response(for outcome: Pipeline.Outcome) -> Response {
        switch outcome {
        case .accepted(let id, let deliveries):
            // The hot path: a fixed shape (event ids are [a-z0-9_]) without JSONSerialization.
            var buffer = ByteBuffer()
            buffer.writeString(#"{"deliveries":\#(deliveries),"id":"\#(id)"}"# + "\n")
            return Response(status: .accepted, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: buffer))
        case .duplicate(let id):
            return json(.ok, ["id": id, "duplicate": true])
        case .rejected(let reason):
            return json(.unauthorized, ["error": reason.rawValue])
        case .malformed(let reason):
            return json(.badRequest, ["error": "malformed_body", "detail": reason])
        case .unavailable(let retryAfter, let reason):
            var r = json(.serviceUnavailable, ["error": "unavailable", "detail": reason])
            r.headers[.retryAfter] = String(retryAfter)
            return r
        case .unknownEndpoint:
            return json(.notFound, ["error": "no_such_endpoint"])
        }
    }

    static func json(_ status: HTTPResponse.Status, _ object: [String: any Sendable]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        var buffer = ByteBuffer()
        buffer.writeBytes(data)
        buffer.writeInteger(UInt8(ascii: "\n"))
        return Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: buffer))
    }
}
