import Foundation
import HeraldCore
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
            try await Task.sleep(for: .milliseconds(600))
            #expect(server.quits().count == 1)
            try await notifier.deliver(try Fixtures.notification())
            service.cancel()
            try await service.value
            let ports = try server.messages().map(\.peerPort)
            #expect(Set(ports).count == 2)
            #expect(server.quits() == ports)
        }
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
        let args = try tlsArguments("starttls") + ["--auth", "bot@example.com:s3cret"]
        try await withSMTPServer(args) { server in
            let lines = LogCapture()
            var logger = Logger(label: "herald.test.trace") { _ in lines }
            logger.logLevel = .trace
            let context = PluginContext(name: "mail", logger: logger, baseDirectory: "/", shared: SharedResources())
            let notifier = try EmailNotifier(settings: Fixtures.tlsSettings(port: server.port, security: .starttls), context: context)
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

/// A log handler that keeps every message, for checking what would be logged.
final class LogCapture: LogHandler, Sendable {
    private let lines = Mutex<[String]>([])

    var text: String { lines.withLock { $0.joined(separator: "\n") } }

    func log(event: LogEvent) {
        lines.withLock { $0.append("\(event.message) \(event.metadata ?? [:])") }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }

    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }

    var logLevel: Logger.Level {
        get { .trace }
        set {}
    }
}
