import Foundation
import HeraldCore
import HeraldTesting
import Testing

@testable import ChatNotifiers

/// Every kind, pointed at a test server, for the checks they must all pass the same way.
enum TestKind: String, CaseIterable, Sendable {
    case slack, discord, teams, googlechat, mattermost, chatwork, line, telegram, webhook

    static let token = "123456:SECRET-token-abcdefghij"
    static let hookSecret = "SECRETabcdefghijklmnop"
    static let hookPath = "/hooks/T0001/\(hookSecret)"

    /// The secret that must never show in an error message.
    var secret: String {
        switch self {
        case .chatwork, .line, .telegram: Self.token
        default: Self.hookSecret
        }
    }

    /// Creates the notifier for a service at `base` and returns its `deliver`.
    func make(base: String, context: PluginContext, timeout: Duration = .seconds(5)) throws
        -> @Sendable (HeraldNotification) async throws -> Void
    {
        let http = HTTPOptions(connectTimeout: .seconds(2), timeout: timeout)
        let hook = base + Self.hookPath
        switch self {
        case .slack:
            let p = try SlackNotifier(settings: .init(webhookURL: hook, http: http), context: context)
            return { try await p.deliver($0) }
        case .discord:
            let p = try DiscordNotifier(settings: .init(webhookURL: hook, http: http), context: context)
            return { try await p.deliver($0) }
        case .teams:
            let p = try TeamsNotifier(settings: .init(webhookURL: hook, http: http), context: context)
            return { try await p.deliver($0) }
        case .googlechat:
            let p = try GoogleChatNotifier(settings: .init(webhookURL: hook, http: http), context: context)
            return { try await p.deliver($0) }
        case .mattermost:
            let p = try MattermostNotifier(settings: .init(webhookURL: hook, http: http), context: context)
            return { try await p.deliver($0) }
        case .chatwork:
            let p = try ChatworkNotifier(settings: .init(token: Self.token, roomID: "42", apiBaseURL: base + "/v2", http: http),
                                         context: context)
            return { try await p.deliver($0) }
        case .line:
            let p = try LINENotifier(settings: .init(token: Self.token, to: "U123", apiBaseURL: base, http: http), context: context)
            return { try await p.deliver($0) }
        case .telegram:
            let p = try TelegramNotifier(settings: .init(token: Self.token, chatID: "-100123", apiBaseURL: base, http: http),
                                         context: context)
            return { try await p.deliver($0) }
        case .webhook:
            let p = try WebhookNotifier(settings: .init(url: hook, http: http), context: context)
            return { try await p.deliver($0) }
        }
    }
}

@Suite("Faults, the same for every kind")
struct FaultTests {
    @Test("2xx is delivered", arguments: TestKind.allCases)
    func success(kind: TestKind) async throws {
        try await Harness.with { harness in
            try await HTTPRecorder.with { server in
                let deliver = try kind.make(base: server.base, context: harness.context)
                try await deliver(try Fixture.notification())
                #expect(server.requests.count == 1)
                #expect(server.requests.first?.method == "POST")
            }
        }
    }

    @Test("429 with Retry-After in seconds is retryable after that long", arguments: TestKind.allCases)
    func tooManyRequestsSeconds(kind: TestKind) async throws {
        let error = try await failure(kind, HTTPRecorder.Reply(status: 429, headers: ["Retry-After": "7"], body: "slow down"))
        #expect(error?.disposition == .retryable(after: .seconds(7)))
        #expect(error?.message.contains("HTTP 429") == true)
    }

    @Test("429 with Retry-After as an HTTP date is retryable until then", arguments: TestKind.allCases)
    func tooManyRequestsDate(kind: TestKind) async throws {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        let date = formatter.string(from: Date().addingTimeInterval(120))
        let error = try await failure(kind, HTTPRecorder.Reply(status: 429, headers: ["Retry-After": date], body: ""))
        guard case .retryable(let after?)? = error?.disposition else {
            Issue.record("expected retryable with a delay, got \(String(describing: error))")
            return
        }
        #expect(after > .seconds(100) && after <= .seconds(121))
    }

    @Test("500 is retryable", arguments: TestKind.allCases)
    func serverError(kind: TestKind) async throws {
        let error = try await failure(kind, HTTPRecorder.Reply(status: 500, body: "internal error"))
        #expect(error?.disposition == .retryable(after: nil))
        #expect(error?.message.contains("internal error") == true)
    }

    @Test("400 is permanent, quotes the service, and redacts secrets", arguments: TestKind.allCases)
    func badRequest(kind: TestKind) async throws {
        let body = #"{"error": "invalid_payload", "detail": "unknown token \#(kind.secret) 💥"}"#
        let error = try await failure(kind, HTTPRecorder.Reply(status: 400, body: body))
        #expect(error?.disposition == .permanent)
        let message = error?.message ?? ""
        #expect(message.contains("HTTP 400"))
        #expect(message.contains("invalid_payload"))
        #expect(message.contains("💥"))
        #expect(message.contains("127.0.0.1"))
        #expect(!message.contains(kind.secret))
        #expect(!message.contains("SECRET"))
    }

    @Test("401 and 403 are configuration errors", arguments: TestKind.allCases)
    func unauthorized(kind: TestKind) async throws {
        let error = try await failure(kind, HTTPRecorder.Reply(status: 403, body: "forbidden"))
        #expect(error?.disposition == .configuration)
    }

    @Test("a long error body is cut", arguments: [TestKind.slack, .telegram])
    func longErrorBody(kind: TestKind) async throws {
        let error = try await failure(kind, HTTPRecorder.Reply(status: 422, body: String(repeating: "エラー", count: 1000)))
        #expect((error?.message.count ?? 0) < 400)
        #expect(error?.message.hasSuffix("…") == true)
    }

    @Test("a service that never answers times out as retryable", arguments: TestKind.allCases)
    func hang(kind: TestKind) async throws {
        let silent = try LocalPort(listening: true)
        try await Harness.with { harness in
            let deliver = try kind.make(base: "http://127.0.0.1:\(silent.port)", context: harness.context,
                                        timeout: .milliseconds(700))
            let start = ContinuousClock.now
            let error = await DeliveryError.thrown { try await deliver(try Fixture.notification()) }
            #expect(error?.isRetryable == true)
            #expect(error?.message.contains("timeout") == true)
            // Far above the 700 ms limit on purpose: this runs alongside the whole suite on 2 cores.
            #expect(ContinuousClock.now - start < .seconds(20))
        }
        _ = silent.fd
    }

    @Test("a closed port is retryable", arguments: TestKind.allCases)
    func closedPort(kind: TestKind) async throws {
        let closed = try LocalPort(listening: false)
        try await Harness.with { harness in
            let deliver = try kind.make(base: "http://127.0.0.1:\(closed.port)", context: harness.context)
            let error = await DeliveryError.thrown { try await deliver(try Fixture.notification()) }
            #expect(error?.isRetryable == true)
            // One sentence, not NIO's "connection reset (error set): Connection refused) (errno: 111)".
            #expect(error?.message.hasSuffix(" at 127.0.0.1:\(closed.port) could not be reached: connection refused") == true,
                    "\(error?.message ?? "")")
            #expect(error?.message.contains(kind.secret) == false)
        }
        _ = closed.fd
    }

    @Test("cancelling the delivery (the dispatcher's timeout, shutdown) throws CancellationError")
    func cancelled() async throws {
        let silent = try LocalPort(listening: true)
        try await Harness.with { harness in
            let deliver = try TestKind.telegram.make(base: "http://127.0.0.1:\(silent.port)", context: harness.context,
                                                     timeout: .seconds(30))
            let notification = try Fixture.notification()
            let task = Task { try await deliver(notification) }
            try await Task.sleep(for: .milliseconds(200))
            task.cancel()
            let start = ContinuousClock.now
            await #expect(throws: CancellationError.self) { try await task.value }
            // Far above the 700 ms limit on purpose: this runs alongside the whole suite on 2 cores.
            #expect(ContinuousClock.now - start < .seconds(20))
        }
        _ = silent.fd
    }

    @Test("Discord's retry_after in the body counts when there is no header")
    func discordBodyRetryAfter() async throws {
        let error = try await failure(.discord, HTTPRecorder.Reply(status: 429, body: #"{"message": "You are being rate limited.", "retry_after": 1.5, "global": false}"#))
        #expect(error?.disposition == .retryable(after: .milliseconds(1500)))
    }

    @Test("Telegram's parameters.retry_after counts when there is no header")
    func telegramBodyRetryAfter() async throws {
        let body = #"{"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 12", "parameters": {"retry_after": 12}}"#
        let error = try await failure(.telegram, HTTPRecorder.Reply(status: 429, body: body))
        #expect(error?.disposition == .retryable(after: .seconds(12)))
        #expect(error?.message.contains("Too Many Requests") == true)
    }

    @Test("a delivery after shutdown is retryable, not a crash")
    func afterShutdown() async throws {
        let harness = Harness()
        let deliver = try TestKind.slack.make(base: "http://127.0.0.1:1", context: harness.context)
        try await harness.shutdown()
        let error = await DeliveryError.thrown { try await deliver(try Fixture.notification()) }
        #expect(error?.isRetryable == true)
    }

    private func failure(_ kind: TestKind, _ reply: HTTPRecorder.Reply) async throws -> DeliveryError? {
        try await Harness.with { harness in
            try await HTTPRecorder.with(reply: { _ in reply }) { server in
                let deliver = try kind.make(base: server.base, context: harness.context)
                return await DeliveryError.thrown { try await deliver(try Fixture.notification()) }
            }
        }
    }
}
