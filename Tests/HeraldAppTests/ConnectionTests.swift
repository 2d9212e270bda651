import Foundation
@testable import HeraldCore
import Hummingbird
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import Testing

@testable import HeraldApp

/// The HTTP server against raw TCP connections on 127.0.0.1: slow and idle senders, the
/// connection cap, the body budget and broken framing. Timeouts are configured short; the
/// tests check what the server did (closed the connection, answered 400), never how fast.
@Suite("Connections")
struct ConnectionTests {
    /// Who serves a POST to the webhook endpoint: the router (a journal in memory, awaited in
    /// a task) or `WebhookChannel` on the event loop (a SQLite journal, answering by callback).
    /// Both must answer alike.
    enum Served: CaseIterable, Sendable { case router, eventLoop }

    /// Runs Herald's HTTP application in-process with `server` settings and gives the port.
    func withServer(_ server: String, served: Served = .router, _ body: @Sendable (Int) async throws -> Void) async throws {
        try await withServer(server, served: served) { port, _ in try await body(port) }
    }

    /// The same, also giving the server's connection limits and body budget.
    func withServer(_ server: String, served: Served = .router,
                    _ body: @Sendable (Int, ConnectionLimits) async throws -> Void) async throws {
        let pipeline = try await WebhookRouteTests.pipeline(server: "listen: \"127.0.0.1:0\", \(server)",
                                                            sqlite: served == .eventLoop)
        let config = pipeline.config
        let router = WebhookServer.router(pipeline: pipeline, readiness: WebhookServer.Readiness())
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let logger = Logger(label: "test.http")
        let limits = ConnectionLimits(config.server, logger: logger)
        let app = WebhookServer.application(router: router, server: config.server, pipeline: pipeline, limits: limits,
                                            logger: logger) { channel in
            portSink.yield(channel.localAddress?.port ?? 0)
            portSink.finish()
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService(gracefulShutdownSignals: []) }
            defer { group.cancelAll() }
            var listening = ports.makeAsyncIterator()
            let port = await listening.next() ?? 0
            try #require(port != 0)
            try await body(port, limits)
        }
    }

    @Test func partialHeaderIsClosedAfterTheHeaderTimeout() async throws {
        try await withServer("headerTimeout: 200ms") { port in
            let c = try RawConnection(port: port)
            defer { c.close() }
            c.send("POST /hooks/jicoo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
            #expect(await c.readUntilClosed().closed)
        }
    }

    @Test(arguments: Served.allCases)
    func partialBodyIsClosedAfterTheBodyTimeout(_ served: Served) async throws {
        try await withServer("bodyTimeout: 200ms", served: served) { port in
            let c = try RawConnection(port: port)
            defer { c.close() }
            c.send("POST /hooks/jicoo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n0123456789")
            #expect(await c.readUntilClosed().closed)
        }
    }

    @Test func idleKeepAliveConnectionIsClosedAfterTheIdleTimeout() async throws {
        try await withServer("idleTimeout: 200ms") { port in
            let c = try RawConnection(port: port)
            defer { c.close() }
            c.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            let response = await c.readResponse()
            #expect(response?.status == 200)
            // Kept alive by the response, then closed by the server.
            #expect(response?.headers.lowercased().contains("connection: close") == false)
            #expect(await c.readUntilClosed().closed)
        }
    }

    @Test func connectionsPastTheCapAreClosedAndOpenOnesStillAnswer() async throws {
        try await withServer("maxConnections: 2") { port in
            let first = try RawConnection(port: port), second = try RawConnection(port: port)
            defer { first.close() }
            // Both count once the server has answered on them.
            for c in [first, second] {
                c.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                #expect(await c.readResponse()?.status == 200)
            }
            let third = try RawConnection(port: port)
            let refused = await third.readUntilClosed()
            third.close()
            #expect(refused.closed)
            #expect(refused.text.isEmpty)
            first.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            #expect(await first.readResponse()?.status == 200)
            // Once one closes, a new connection is served again.
            second.close()
            #expect(try await waitUntil {
                let c = try RawConnection(port: port)
                defer { c.close() }
                c.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                return await c.readResponse()?.status == 200
            })
        }
    }

    /// Sends `request` and returns the answer and whether the server then closed the connection.
    /// `awaitClose`: also wait for the server to close the connection (or the safety net).
    func exchange(_ port: Int, _ request: String, halfClose: Bool = false, awaitClose: Bool = false)
        async throws -> (status: Int, headers: String, body: [String: Any], closed: Bool) {
        let c = try RawConnection(port: port)
        defer { c.close() }
        c.send(request)
        if halfClose { c.shutdownWrite() }
        let response = try #require(await c.readResponse())
        let body = (try? JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any]) ?? [:]
        return (response.status, response.headers, body, awaitClose ? await c.readUntilClosed().closed : false)
    }

    @Test(arguments: Served.allCases)
    func brokenFramingIs400WithTheReason(_ served: Served) async throws {
        try await withServer("maxBodyBytes: 4096", served: served) { port in
            let head = "POST /hooks/jicoo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            let badChunk = try await exchange(port, head + "Transfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n", awaitClose: true)
            #expect(badChunk.status == 400)
            #expect(badChunk.body["error"] as? String == "malformed_request")
            #expect((badChunk.body["detail"] as? String)?.contains("chunk size") == true)
            #expect(badChunk.closed)

            let truncated = try await exchange(port, head + "Content-Length: 100\r\n\r\n{\"event\":", halfClose: true)
            #expect(truncated.status == 400)
            #expect(truncated.body["error"] as? String == "malformed_request")
            #expect((truncated.body["detail"] as? String)?.contains("truncated") == true)

            let unknownEncoding = try await exchange(port, head + "Transfer-Encoding: gzip\r\n\r\n{}")
            #expect(unknownEncoding.status == 400)
            #expect((unknownEncoding.body["detail"] as? String)?.contains("Transfer-Encoding") == true)

            // A header that cannot be parsed gets the reason too.
            let badHeader = try await exchange(port, "POST /hooks/jicoo HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\n\r\n",
                                               awaitClose: true)
            #expect(badHeader.status == 400)
            #expect(badHeader.body["error"] as? String == "malformed_request")
            #expect((badHeader.body["detail"] as? String)?.contains("header") == true)
            #expect(badHeader.closed)

            // A body that really is too large is still 413.
            let big = String(repeating: "x", count: 5000)
            let tooLarge = try await exchange(port, head + "Transfer-Encoding: chunked\r\n\r\n1388\r\n\(big)\r\n0\r\n\r\n")
            #expect(tooLarge.status == 413)
        }
    }

    @Test(arguments: Served.allCases)
    func bodiesPastTheBudgetGet503AndTheBudgetComesBack(_ served: Served) async throws {
        try await withServer("maxBodyBytes: 2048, maxBodyBytesInFlight: 2048, bodyTimeout: 60s", served: served) { port, limits in
            let head = "POST /hooks/jicoo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            func post(_ size: Int) -> String { head + "Content-Length: \(size)\r\n\r\n" + String(repeating: " ", count: size) }
            // `holder` sends 1,500 of its 2,000 bytes and waits: those bytes are held.
            let holder = try RawConnection(port: port)
            defer { holder.close() }
            holder.send(head + "Content-Length: 2000\r\n\r\n" + String(repeating: " ", count: 1500))
            #expect(try await waitUntil { limits.bodies.inUse == 1500 })
            let refused = try await exchange(port, post(1000), awaitClose: true)
            #expect(refused.status == 503)
            #expect(refused.headers.lowercased().contains("retry-after: 1"))
            #expect(refused.body["error"] as? String == "unavailable")
            #expect(refused.closed)
            #expect(limits.bodies.inUse == 1500)
            // Answered (401: nothing is signed) and released once its body is complete.
            holder.send(String(repeating: " ", count: 500))
            #expect(await holder.readResponse()?.status == 401)
            #expect(limits.bodies.inUse == 0)
            #expect(try await exchange(port, post(1000)).status == 401)

            // A sender that disconnects halfway gives its bytes back too.
            let quitter = try RawConnection(port: port)
            quitter.send(head + "Content-Length: 2000\r\n\r\n" + String(repeating: " ", count: 1500))
            #expect(try await waitUntil { limits.bodies.inUse == 1500 })
            quitter.close()
            #expect(try await waitUntil { limits.bodies.inUse == 0 })
            #expect(try await exchange(port, post(1000)).status == 401)
            // So does a request answered before its body was read (413 on Content-Length).
            #expect(try await exchange(port, head + "Content-Length: 4096\r\n\r\n" + String(repeating: " ", count: 1000)).status == 413)
            #expect(try await waitUntil { limits.bodies.inUse == 0 })
        }
    }

    /// A signed Jicoo request for `/hooks/jicoo` with its own booking uid; `close` asks the
    /// server to close the connection after answering.
    func signedRequest(uid: String, close: Bool = false) throws -> String {
        let template = try String(contentsOf: HeraldProcess.sharedVectors.appendingPathComponent("jicoo-events/guest_booked.json"),
                                  encoding: .utf8)
        let body = template.replacingOccurrences(of: "bk_7Qx2mZp9", with: uid)
        let signature = JicooSignature(secrets: [Secret(WebhookRouteTests.secret)])
            .sign(body: Data(body.utf8), timestamp: Int64(Date().timeIntervalSince1970), id: "")
            .map { "\($0.name): \($0.value)\r\n" }.joined()
        return "POST /hooks/jicoo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\(signature)"
            + (close ? "Connection: close\r\n" : "") + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    @Test func theEventLoopAnswersWebhooksAsTheRouterDoes() async throws {
        try await withServer("maxBodyBytes: 65536", served: .eventLoop) { port in
            let first = try await exchange(port, try signedRequest(uid: "bk_loop_1"))
            #expect(first.status == 202)
            #expect((first.body["id"] as? String)?.hasPrefix("evt_") == true)
            #expect(first.body["deliveries"] as? Int == 1)
            let headers = first.headers.lowercased()
            #expect(headers.contains("server: herald"))
            #expect(headers.contains("date: "))
            #expect(headers.contains("content-type: application/json"))
            #expect(!headers.contains("connection: close"))
            // The same booking event again: a duplicate of the first.
            let again = try await exchange(port, try signedRequest(uid: "bk_loop_1"))
            #expect(again.status == 200)
            #expect(again.body["duplicate"] as? Bool == true)
            #expect(again.body["id"] as? String == first.body["id"] as? String)
            // A path with a query and a trailing slash is the same endpoint; an unknown one is
            // the router's 404; a bad signature is 401.
            let query = try signedRequest(uid: "bk_loop_2").replacingOccurrences(of: "POST /hooks/jicoo ", with: "POST /hooks/jicoo/?x=1 ")
            #expect(try await exchange(port, query).status == 202)
            let unknown = try signedRequest(uid: "bk_loop_3").replacingOccurrences(of: "POST /hooks/jicoo ", with: "POST /hooks/other ")
            let notFound = try await exchange(port, unknown)
            #expect(notFound.status == 404)
            #expect(notFound.body["error"] as? String == "no_such_endpoint")
            let forged = try signedRequest(uid: "bk_loop_4").replacingOccurrences(of: "v1=", with: "v1=00")
            #expect(try await exchange(port, forged).status == 401)
            // A sender that closes its side once the request is sent still gets the answer.
            #expect(try await exchange(port, try signedRequest(uid: "bk_loop_5"), halfClose: true).status == 202)
        }
    }

    /// A webhook's answer, encoded by Herald in one buffer, is byte for byte what SwiftNIO's
    /// response encoder writes for the same head and body: every outcome, with and without
    /// `Connection: close`, asked for by the answer or by the sender.
    @Test func anEncodedAnswerIsWhatSwiftNIOsEncoderWrites() throws {
        let answers: [WebhookServer.Answer] = [
            WebhookServer.answer(for: .accepted(eventID: "evt_0123abc", deliveries: 3)),
            WebhookServer.answer(for: .duplicate(eventID: "evt_0123abc")),
            WebhookServer.answer(for: .rejected(.signatureMismatch)),
            WebhookServer.answer(for: .malformed("no \"event\" field")),
            WebhookServer.answer(for: .unavailable(retryAfter: 7, reason: "the journal is full")),
            WebhookServer.answer(for: .unknownEndpoint),
            WebhookServer.bodyTooLarge(limit: 65536),
            WebhookServer.jsonAnswer(.badRequest, ["error": "malformed_request"], closing: true),
        ]
        let date = "Sun, 06 Dec 2026 02:30:00 GMT"
        for answer in answers {
            for closing in [false, true] {
                var head = answer.head
                head.headers.add(name: "Content-Length", value: String(answer.body.readableBytes))
                head.headers.add(name: "Date", value: date)
                head.headers.add(name: "Server", value: "Herald")
                if closing, answer.headers[.connection] == nil { head.headers.add(name: "Connection", value: "close") }
                let channel = EmbeddedChannel(handler: HTTPResponseEncoder())
                try channel.writeOutbound(HTTPServerResponsePart.head(head))
                try channel.writeOutbound(HTTPServerResponsePart.body(.byteBuffer(answer.body)))
                try channel.writeOutbound(HTTPServerResponsePart.end(nil))
                var expected = ByteBuffer()
                while var part = try channel.readOutbound(as: ByteBuffer.self) { expected.writeBuffer(&part) }
                _ = try channel.finish()
                let encoded = answer.encoded(date: date, server: "Herald", closing: closing, allocator: ByteBufferAllocator())
                #expect(String(buffer: encoded) == String(buffer: expected), "\(answer.status), closing: \(closing)")
            }
        }
    }

    /// The `202` the event loop writes for an accepted webhook without building an ``Answer``
    /// is the same bytes as that answer encoded, and its body the JSON the sender expects.
    @Test func anAcceptanceIsEncodedAsItsAnswer() {
        let date = "Sun, 06 Dec 2026 02:30:00 GMT"
        for (id, deliveries) in [("evt_0123abc", 3), ("evt_1", 0), ("evt_19c0ffee0123456789abcdef01234567", 12_345)] {
            for closing in [false, true] {
                let answer = WebhookServer.answer(for: .accepted(eventID: id, deliveries: deliveries))
                #expect(String(buffer: answer.body) == #"{"deliveries":\#(deliveries),"id":"\#(id)"}"# + "\n")
                let expected = answer.encoded(date: date, server: "Herald", closing: closing, allocator: ByteBufferAllocator())
                let direct = WebhookServer.encodedAcceptance(eventID: id, deliveries: deliveries, date: date, server: "Herald",
                                                             closing: closing, allocator: ByteBufferAllocator())
                #expect(String(buffer: direct) == String(buffer: expected), "\(id), \(deliveries), closing: \(closing)")
            }
        }
    }

    /// The path the event loop looks a webhook up by: the query and fragment dropped, then one
    /// trailing slash; a request target of another form (`*`, an absolute URL) is no webhook.
    @Test func aWebhookPathIsTheTargetWithoutQueryAndOneTrailingSlash() {
        #expect(WebhookChannel.webhookPath("/hooks/jicoo") == "/hooks/jicoo")
        #expect(WebhookChannel.webhookPath("/hooks/jicoo/") == "/hooks/jicoo")
        #expect(WebhookChannel.webhookPath("/hooks/jicoo//") == "/hooks/jicoo/")
        #expect(WebhookChannel.webhookPath("/hooks/jicoo/?x=1#top") == "/hooks/jicoo")
        #expect(WebhookChannel.webhookPath("/hooks/jicoo#a?b") == "/hooks/jicoo")
        #expect(WebhookChannel.webhookPath("/フック/予約/") == "/フック/予約")
        #expect(WebhookChannel.webhookPath("/") == "/")
        #expect(WebhookChannel.webhookPath("/?x") == "/")
        #expect(WebhookChannel.webhookPath("*") == nil)
        #expect(WebhookChannel.webhookPath("http://127.0.0.1/hooks/jicoo") == nil)
        #expect(WebhookChannel.webhookPath("") == nil)
    }

    /// Hummingbird's own connection state never sees a webhook served on the event loop: told
    /// to quiesce, it would close the connection at once, before the journal has answered.
    @Test func aWebhookWithTheJournalWhenShutdownStartsIsStillAnswered() async throws {
        let pipeline = try await WebhookRouteTests.pipeline(server: "listen: \"127.0.0.1:0\"", sqlite: true)
        let journal = try #require(pipeline.journal as? SQLiteJournal)
        let router = WebhookServer.router(pipeline: pipeline, readiness: WebhookServer.Readiness())
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let logger = Logger(label: "test.http")
        let app = WebhookServer.application(router: router, server: pipeline.config.server, pipeline: pipeline,
                                            logger: logger) { channel in
            portSink.yield(channel.localAddress?.port ?? 0)
            portSink.finish()
        }
        let services = ServiceGroup(configuration: .init(services: [.init(service: app)], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await services.run() }
            var listening = ports.makeAsyncIterator()
            let port = await listening.next() ?? 0
            try #require(port != 0)
            // The writer is held, so the webhook below waits in the journal.
            let holding = Mutex(false), released = Mutex(false)
            group.addTask {
                try await journal.holdWriter(holding: { holding.withLock { $0 = true } },
                                             until: { released.withLock { $0 } }, timeout: .seconds(30))
            }
            #expect(try await waitUntil { holding.withLock { $0 } })
            let c = try RawConnection(port: port)
            defer { c.close() }
            c.send(try signedRequest(uid: "bk_quiesce"))
            #expect(try await waitUntil { journal.queuedWrites == 1 })
            // Shutdown starts: the server stops accepting and asks every connection to quiesce.
            await services.triggerGracefulShutdown()
            #expect(try await waitUntil {
                guard let other = try? RawConnection(port: port) else { return true }
                other.close()
                return false
            })
            released.withLock { $0 = true }
            let answer = await c.readResponse()
            #expect(answer?.status == 202)
            // Then the connection closes, and the server with it.
            #expect(await c.readUntilClosed().closed)
            try await group.waitForAll()
        }
    }

    @Test func pipelinedRequestsAreAnsweredInOrderAcrossBothServers() async throws {
        try await withServer("maxBodyBytes: 65536", served: .eventLoop) { port in
            let c = try RawConnection(port: port)
            defer { c.close() }
            // Webhooks (the event loop), a health check (the router) between them, a webhook
            // while the router still owes its answer, and the last one closing the connection.
            let unsigned = "POST /hooks/jicoo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}"
            c.send(try signedRequest(uid: "bk_pipe_1") + "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                   + signedRequest(uid: "bk_pipe_2") + unsigned + signedRequest(uid: "bk_pipe_1", close: true))
            let (text, closed) = await c.readUntilClosed()
            let statuses = text.components(separatedBy: "HTTP/1.1 ").dropFirst().map { Int($0.prefix(3)) ?? 0 }
            #expect(statuses == [202, 200, 202, 401, 200])
            #expect(closed)
        }
    }
}

/// The real binary with few descriptors: when accepts fail with EMFILE, open connections are
/// still answered, the failure is logged once per interval, and accepting resumes once
/// connections close.
@Suite("Running out of descriptors")
struct DescriptorExhaustionTests {
    func writeConfig(_ dir: String) throws -> String {
        try """
            server: { headerTimeout: 120s }
            storage: { memory: true }
            endpoints: [{ path: /hooks/jicoo, secrets: [descriptor-test-secret] }]
            notifiers:
              audit: { kind: file, path: \(dir)/out.jsonl }
            routes:
              - { events: ["*"], notify: [audit] }
            """.write(toFile: "\(dir)/herald.yaml", atomically: true, encoding: .utf8)
        return "\(dir)/herald.yaml"
    }

    /// A script that starts `herald` after `ulimit <limit>`.
    func wrapper(_ dir: String, limit: String) throws -> String {
        let path = "\(dir)/herald-limited"
        try "#!/bin/sh\nulimit \(limit)\nexec '\(HeraldProcess.binary)' \"$@\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    @Test func openConnectionsAreServedAndTheFailureIsLoggedOnce() async throws {
        let dir = tempDir()
        // A hard limit Herald cannot raise, with room for its event loops (three descriptors each)
        // and little else.
        let limit = 64 + 3 * ProcessInfo.processInfo.activeProcessorCount
        let herald = try await HeraldProcess(config: try writeConfig(dir), binary: try wrapper(dir, limit: "-n \(limit)"))
        #expect(herald.log.contains("open files limit \(limit)"))
        let healthz = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        let first = try RawConnection(port: herald.port)
        defer { first.close() }
        first.send(healthz)
        #expect(await first.readResponse()?.status == 200)

        var flood: [RawConnection] = []
        for _ in 0..<(limit + 40) { flood.append(try RawConnection(port: herald.port)) }
        let message = "cannot accept connections: out of file descriptors"
        #expect(try await waitUntil { herald.log.contains(message) })
        // Connections Herald has no room for are closed rather than left hanging (and the
        // event loop does not spin on the failing accept meanwhile).
        #expect(await RawConnection.anyClosedByPeer(flood))
        first.send(healthz)
        #expect(await first.readResponse()?.status == 200)
        // Accepts are retried every second; the line comes once per 10 s, not once per failure.
        #expect(herald.log.components(separatedBy: message).count - 1 <= 2)

        for c in flood { c.close() }
        #expect(try await waitUntil {
            let c = try RawConnection(port: herald.port)
            defer { c.close() }
            c.send(healthz)
            return await c.readResponse()?.status == 200
        })
        #expect(try await herald.stop() == 0)
    }

    /// At start the soft limit is raised to the hard one, and the log says so.
    @Test func softOpenFilesLimitIsRaisedToTheHardLimit() async throws {
        let dir = tempDir()
        let herald = try await HeraldProcess(config: try writeConfig(dir), binary: try wrapper(dir, limit: "-S -n 256"))
        let limits = try String(contentsOfFile: "/proc/\(herald.process.processIdentifier)/limits", encoding: .utf8)
        let line = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
        let numbers = line.split(separator: " ").compactMap { Int($0) }
        #expect(numbers.count == 2 && numbers[0] == numbers[1] && numbers[0] > 256)
        #expect(herald.log.contains("open files limit \(numbers.first ?? 0) (raised from 256)"))
        #expect(try await herald.stop() == 0)
    }
}
