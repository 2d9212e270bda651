import Foundation
#if canImport(Glibc)
import Glibc
#endif
import HeraldCore
import HeraldTesting
import Logging
import Synchronization
import Testing
@testable import EmailNotifier

/// Idle timeout, QUIT at shutdown, SMTPUTF8, and what the trace log may show.
@Suite(.timeLimit(.minutes(1)))
struct ConnectionLifecycleTests {
    @Test func idleConnectionsAreClosedWithQuitAndShutdownQuitsTheRest() async throws {
        try await withSMTPServer { server in
            let notifier = try EmailNotifier(settings: Fixtures.settings(port: server.port) { $0.idleTimeout = "150ms" },
                                             context: Fixtures.context())
            let service = Task { try await notifier.run() }
            try await notifier.deliver(try Fixtures.notification())
            // The service closes the idle connection after ~150 ms; the next message needs a new one.
            let deadline = ContinuousClock.now + .seconds(10)
            while server.quits().isEmpty, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            #expect(server.quits().count == 1)
            try await notifier.deliver(try Fixtures.notification())
            service.cancel()
            try await service.value
            let ports = try server.messages().map(\.peerPort)
            #expect(Set(ports).count == 2)
            // The server records the second QUIT when it reads it, which a loaded machine delays.
            let quitDeadline = ContinuousClock.now + .seconds(10)
            while server.quits() != ports, ContinuousClock.now < quitDeadline { try await Task.sleep(for: .milliseconds(50)) }
            #expect(server.quits() == ports)
        }
    }

    @Test func silentServerTimesOutAsRetryable() async throws {
        let listener = try SilentListener()
        defer { listener.close() }
        let notifier = try EmailNotifier(settings: Fixtures.settings(port: listener.port) { $0.commandTimeout = "300ms" },
                                         context: Fixtures.context())
        let error = try #require(await DeliveryError.thrown { try await notifier.deliver(try Fixtures.notification()) })
        await notifier.shutdown()
        // The command timeout ended the attempt (how fast is not asserted: a loaded or
        // sanitized run is slower, and the message already names what fired).
        #expect(error.isRetryable)
        #expect(error.message.contains("commandTimeout"))
    }

    @Test func internationalAddressesUseSMTPUTF8() async throws {
        try await withSMTPServer { server in
            let notifier = try EmailNotifier(settings: Fixtures.settings(port: server.port) {
                $0.to = ["山田 <やまだ@例え.jp>"]; $0.cc = nil; $0.bcc = nil
            }, context: Fixtures.context())
            try await notifier.deliver(try Fixtures.notification())
            await notifier.shutdown()
            let message = try #require(try server.messages().first)
            #expect(message.rcptTos == ["やまだ@例え.jp"])
            #expect(message.mailOptions.contains("SMTPUTF8"))
        }
    }

    @Test func traceLogNeverShowsCredentials() async throws {
        let args = try await tlsArguments("starttls") + ["--auth", "bot@example.com:s3cret"]
        try await withSMTPServer(args) { server in
            let lines = LogCapture()
            var logger = Logger(label: "herald.test.trace") { _ in lines }
            logger.logLevel = .trace
            let context = PluginContext.testing(name: "mail", baseDirectory: "/", logger: logger)
            let notifier = try await EmailNotifier(settings: Fixtures.tlsSettings(port: server.port, security: .starttls), context: context)
            try await notifier.deliver(try Fixtures.notification())
            await notifier.shutdown()

            let log = lines.text
            #expect(log.contains("C: MAIL FROM:<bot@example.com>"), "trace logging should show the dialogue")
            #expect(log.contains("AUTH PLAIN <redacted>"))
            let token = Data(([0] + Array("bot@example.com".utf8) + [0] + Array("s3cret".utf8))).base64EncodedString()
            for secret in ["s3cret", token, Data("s3cret".utf8).base64EncodedString()] {
                #expect(!log.contains(secret))
            }
        }
    }
}

/// A TCP port on 127.0.0.1 that accepts connections (in the kernel's backlog) and never says
/// a word: an SMTP server that hangs before its greeting.
final class SilentListener {
    let port: Int
    private let fd: Int32

    init() throws {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard fd >= 0, ok else { throw SMTPTestServer.ServerError(reason: "cannot listen: errno \(errno)") }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() {
        #if canImport(Glibc)
        _ = Glibc.close(fd)
        #else
        _ = Darwin.close(fd)
        #endif
    }
}
