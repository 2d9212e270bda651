import Foundation
import HeraldPlugin
import Hummingbird
import Logging
import Synchronization

/// A real HTTP server on 127.0.0.1 (an ephemeral port) that records every request and answers
/// as the test says: success, an error status, `429` with `Retry-After`, or a sequence of them.
///
/// Point a plugin's URL setting at ``url`` and check what it sent, or how it treats an answer:
///
/// ```swift
/// try await HTTPRecorder.with(replies: [.retryAfter(seconds: 7), .init()]) { server in
///     let plugin = try MyNotifier.configured("url: \(server.url)")
///     let error = await DeliveryError.thrown { try await plugin.deliver(notification) }
///     #expect(error?.disposition == .retryable(after: .seconds(7)))
///     #expect(server.requests.count == 1)
/// }
/// ```
public struct HTTPRecorder: Sendable {
    /// A request the server received.
    public struct Request: Sendable {
        /// `POST`, `GET`, …
        public var method: String
        /// Path and query, as sent.
        public var uri: String
        /// Header values by lowercased name (the last one wins).
        public var headers: [String: String]
        /// The body, whole.
        public var body: Data
        /// When the request arrived, to check that a client waited as long as it was asked.
        public var receivedAt: ContinuousClock.Instant

        /// Creates a request record (the server makes these).
        public init(method: String, uri: String, headers: [String: String], body: Data,
                    receivedAt: ContinuousClock.Instant = .now) {
            self.method = method
            self.uri = uri
            self.headers = headers
            self.body = body
            self.receivedAt = receivedAt
        }

        /// The path, without the query.
        public var path: String { String(uri.prefix { $0 != "?" }) }

        /// The body as UTF-8 text.
        public var text: String { String(decoding: body, as: UTF8.self) }

        /// The body parsed as JSON, or nil if it is not JSON.
        public var json: JSONValue? { try? JSONValue.parse(body) }

        /// The body as `application/x-www-form-urlencoded` fields.
        public var form: [String: String] {
            var result: [String: String] = [:]
            for pair in String(decoding: body, as: UTF8.self).split(separator: "&") {
                let parts = pair.split(separator: "=", maxSplits: 1).map {
                    String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
                }
                result[parts[0]] = parts.count > 1 ? parts[1] : ""
            }
            return result
        }
    }

    /// What the server answers.
    public struct Reply: Sendable {
        /// The HTTP status code.
        public var status: Int
        /// Response headers by name.
        public var headers: [String: String]
        /// The response body, as text.
        public var body: String

        /// An answer; the default is `200 ok`.
        public init(status: Int = 200, headers: [String: String] = [:], body: String = "ok") {
            self.status = status
            self.headers = headers
            self.body = body
        }

        /// A refusal that asks the client to wait: `status` (429 unless given) with
        /// `Retry-After: <seconds>`.
        public static func retryAfter(seconds: Int, status: Int = 429) -> Reply {
            Reply(status: status, headers: ["Retry-After": String(seconds)], body: "slow down")
        }
    }

    /// The port the server listens on.
    public let port: Int
    private let log: Log

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    public var base: String { "http://127.0.0.1:\(port)" }

    /// ``base`` with `/hook` appended: a URL for a plugin's settings.
    public var url: String { base + "/hook" }

    /// Every request received so far, in order of arrival.
    public var requests: [Request] { log.requests.withLock { $0 } }

    /// The requests received for `path` (the query ignored), in order of arrival.
    public func requests(to path: String) -> [Request] { requests.filter { $0.path == path } }

    /// Runs `body` with a server that answers each request with `reply(request)`, then stops it.
    public static func with<T: Sendable>(
        reply: @escaping @Sendable (Request) -> Reply = { _ in Reply() },
        _ body: (HTTPRecorder) async throws -> T
    ) async throws -> T {
        let log = Log()
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let app = Application(
            responder: CallbackResponder<BasicRequestContext> { request, _ in
                var request = request
                let buffer = try await request.collectBody(upTo: 1 << 22)
                var headers: [String: String] = [:]
                for field in request.headers { headers[field.name.canonicalName] = field.value }
                let recorded = Request(method: request.method.rawValue, uri: request.uri.string, headers: headers,
                                       body: Data(buffer.readableBytesView))
                log.requests.withLock { $0.append(recorded) }
                let answer = reply(recorded)
                var fields = HTTPFields()
                for (name, value) in answer.headers {
                    if let name = HTTPFields.Element.Name(name) { fields[name] = value }
                }
                return Response(status: .init(code: answer.status), headers: fields,
                                body: .init(byteBuffer: ByteBuffer(string: answer.body)))
            },
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                portSink.yield(channel.localAddress?.port ?? 0)
                portSink.finish()
            },
            logger: Logger(label: "herald.testing.http") { _ in SwiftLogNoOpLogHandler() }
        )
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.run() }
            var iterator = ports.makeAsyncIterator()
            let server = HTTPRecorder(port: await iterator.next() ?? 0, log: log)
            defer { group.cancelAll() }
            return try await body(server)
        }
    }

    /// Runs `body` with a server that answers with `replies` in turn, repeating the last one.
    public static func with<T: Sendable>(replies: [Reply], _ body: (HTTPRecorder) async throws -> T) async throws -> T {
        let next = Mutex(0)
        return try await with(reply: { _ in
            let index = next.withLock { i in
                defer { i += 1 }
                return i
            }
            return replies.isEmpty ? Reply() : replies[min(index, replies.count - 1)]
        }, body)
    }

    /// Requests received, shared between the server's handler and the test.
    private final class Log: Sendable {
        let requests = Mutex<[Request]>([])
    }
}
