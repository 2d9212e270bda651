import Foundation
import HeraldCore
import Hummingbird
import Logging
import Testing

@testable import HeraldApp

/// The HTTP server against raw TCP connections on 127.0.0.1: slow and idle senders, the
/// connection cap, the body budget and broken framing. Timeouts are configured short; the
/// tests check what the server did (closed the connection, answered 400), never how fast.
@Suite("Connections")
struct ConnectionTests {
    /// Runs Herald's HTTP application in-process with `server` settings and gives the port.
    func withServer(_ server: String, _ body: @Sendable (Int) async throws -> Void) async throws {
        try await withServer(server) { port, _ in try await body(port) }
    }

    /// The same, also giving the server's connection limits and body budget.
    func withServer(_ server: String, _ body: @Sendable (Int, ConnectionLimits) async throws -> Void) async throws {
        let pipeline = try await WebhookRouteTests.pipeline(server: "listen: \"127.0.0.1:0\", \(server)")
        let config = pipeline.config
        let router = WebhookServer.router(pipeline: pipeline, readiness: WebhookServer.Readiness())
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let logger = Logger(label: "test.http")
        let limits = ConnectionLimits(config.server, logger: logger)
        let app = WebhookServer.application(router: router, server: config.server, limits: limits, logger: logger) { channel in
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

    @Test func partialBodyIsClosedAfterTheBodyTimeout() async throws {
        try await withServer("bodyTimeout: 200ms") { port in
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

    @Test func brokenFramingIs400WithTheReason() async throws {
        try await withServer("maxBodyBytes: 4096") { port in
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

    @Test func bodiesPastTheBudgetGet503AndTheBudgetComesBack() async throws {
        try await withServer("maxBodyBytes: 2048, maxBodyBytesInFlight: 2048, bodyTimeout: 60s") { port, limits in
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
