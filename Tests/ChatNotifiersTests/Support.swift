import Foundation
import HeraldCore
import Hummingbird
import Logging
import Synchronization
import Testing

@testable import ChatNotifiers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A request the test server received.
struct Recorded: Sendable {
    var method: String
    /// Path and query, as sent.
    var uri: String
    /// Header values by lowercased name (the last one wins).
    var headers: [String: String]
    var body: Data

    var json: JSONValue? { try? JSONValue.parse(body) }

    /// The body as `application/x-www-form-urlencoded` fields.
    var form: [String: String] {
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

/// What the test server answers.
struct Reply: Sendable {
    var status: Int = 200
    var headers: [String: String] = [:]
    var body: String = "ok"
}

/// Requests the test server received, shared between its handler and the test.
final class RequestLog: Sendable {
    private let entries = Mutex<[Recorded]>([])
    func append(_ r: Recorded) { entries.withLock { $0.append(r) } }
    var all: [Recorded] { entries.withLock { $0 } }
}

/// A Hummingbird server on 127.0.0.1 (port 0) that records every request.
struct TestServer: Sendable {
    let port: Int
    let log: RequestLog

    var base: String { "http://127.0.0.1:\(port)" }
    var requests: [Recorded] { log.all }

    /// Runs `body` with a server that answers every request with `reply`, then stops it.
    static func with<T: Sendable>(
        reply: @escaping @Sendable (Recorded) -> Reply = { _ in Reply() },
        _ body: (TestServer) async throws -> T
    ) async throws -> T {
        let log = RequestLog()
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let app = Application(
            responder: CallbackResponder<BasicRequestContext> { request, _ in
                var request = request
                let buffer = try await request.collectBody(upTo: 1 << 22)
                var headers: [String: String] = [:]
                for field in request.headers { headers[field.name.canonicalName] = field.value }
                let recorded = Recorded(method: request.method.rawValue, uri: request.uri.string, headers: headers,
                                        body: Data(buffer.readableBytesView))
                log.append(recorded)
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
            logger: Logger(label: "test-server") { _ in SwiftLogNoOpLogHandler() }
        )
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.run() }
            var iterator = ports.makeAsyncIterator()
            let server = TestServer(port: await iterator.next() ?? 0, log: log)
            defer { group.cancelAll() }
            return try await body(server)
        }
    }
}

/// A TCP port on 127.0.0.1 held for one test. Listening, it accepts connections (the kernel
/// completes the handshake) but never reads or answers: a service that hangs. Bound but not
/// listening, it refuses connections; holding it keeps parallel tests from taking the port.
final class LocalPort: Sendable {
    let fd: Int32
    let port: Int

    init(listening: Bool) throws {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, length) == 0 && (!listening || listen(fd, 16) == 0) && getsockname(fd, sa, &length) == 0
            }
        }
        guard ok else {
            close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }
}

/// A plugin context with its own shared resources; ``shutdown()`` closes the HTTP client.
struct Harness: Sendable {
    let shared = SharedResources()

    var context: PluginContext {
        PluginContext(name: "test", logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() },
                      baseDirectory: "/tmp", shared: shared)
    }

    func shutdown() async throws {
        try await shared.get(SharedHTTPClient.self) { SharedHTTPClient() }.shutdown()
    }

    /// Runs `body`, then shuts the client down whether or not it threw.
    static func with<T: Sendable>(_ body: (Harness) async throws -> T) async throws -> T {
        let harness = Harness()
        do {
            let result = try await body(harness)
            try await harness.shutdown()
            return result
        } catch {
            try await harness.shutdown()
            throw error
        }
    }
}

/// Events and notifications to send.
enum Fixture {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let vectors = repoRoot.deletingLastPathComponent().appendingPathComponent("shared/vectors")
    static let receivedAt = Date(timeIntervalSince1970: 1_795_000_000)

    static func event(_ name: String = "guest_booked") throws -> Event {
        let url = vectors.appendingPathComponent("jicoo-events/\(name).json")
        return try EventSource.jicoo.decode(body: Data(contentsOf: url), endpoint: "/hooks/jicoo", id: "evt_0000test0001",
                                            receivedAt: receivedAt)
    }

    static let fields = [
        HeraldNotification.Field("日時", "2026年11月27日(金) 14:00〜15:00 (JST)"),
        HeraldNotification.Field("ゲスト", "山田 太郎 <taro.yamada@example.jp>", short: true),
        HeraldNotification.Field("ご相談内容", "料金プランについて 💴", short: true),
    ]

    /// A booking notification in Japanese with emoji and characters markup cares about.
    static func notification(
        title: String = "新しい予約: 山田 太郎 様 🎉", text: String = "ご予約ありがとうございます。\n<b>料金</b> & *プラン* について",
        fields: [HeraldNotification.Field] = fields, kind: HeraldNotification.Kind = .booked, event: String = "guest_booked",
        deliveryKey: String = "evt_0000test0001:chat", locale: HeraldLocale = .ja
    ) throws -> HeraldNotification {
        HeraldNotification(event: try Fixture.event(event), title: title, text: text, fields: fields, kind: kind,
                     locale: locale, deliveryKey: deliveryKey)
    }
}

/// Parses JSON text written in a test, for comparing bodies structurally.
func json(_ text: String) -> JSONValue {
    do { return try JSONValue.parse(Data(text.utf8)) } catch { fatalError("bad JSON in test: \(error)") }
}

/// The error `body` throws, as a ``DeliveryError``.
func deliveryError(_ body: () async throws -> Void) async -> DeliveryError? {
    do {
        try await body()
        return nil
    } catch let error as DeliveryError {
        return error
    } catch {
        Issue.record("expected a DeliveryError, got \(error)")
        return nil
    }
}
