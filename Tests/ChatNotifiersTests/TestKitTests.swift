import Foundation
import HeraldCore
import HeraldTesting
import Testing

@testable import ChatNotifiers

/// HeraldTesting's own promises, checked with a real plugin: the recorder answers in the order
/// given, and errors come back as the dispatcher will treat them.
@Suite("Test kit")
struct TestKitTests {
    @Test func recorderAnswersInTurnThenRepeatsTheLast() async throws {
        let outcomes = try await Harness.with { harness in
            try await HTTPRecorder.with(replies: [.retryAfter(seconds: 7), .init(status: 400, body: "bad"), .init()]) { server in
                let plugin = try SlackNotifier(settings: .init(webhookURL: server.url), context: harness.context)
                var outcomes: [DeliveryError?] = []
                for _ in 0..<4 {
                    let n = try Fixture.notification()
                    outcomes.append(await DeliveryError.thrown { try await plugin.deliver(n) })
                }
                #expect(server.requests.count == 4)
                #expect(server.requests.allSatisfy { $0.uri == "/hook" && $0.method == "POST" })
                return outcomes
            }
        }
        #expect(outcomes.map { $0?.disposition } == [.retryable(after: .seconds(7)), .permanent, nil, nil])
    }

    @Test func anErrorThatIsNotADeliveryErrorIsRetryable() async {
        struct Broken: Error, CustomStringConvertible { var description: String { "socket closed" } }
        let error = await DeliveryError.thrown { throw Broken() }
        #expect(error == .retryable("socket closed"))
    }

    @Test func renderedNotificationsMatchWhatTheDispatcherSends() throws {
        let event = try SampleEvents.event("guest_cancelled")
        let n = try HeraldNotification.rendered(event, for: SlackNotifier.self, locale: .ja, notifier: "sales")
        #expect(n.deliveryKey == "\(event.id).sales")
        #expect(n.kind == .cancelled)
        #expect(n.html == nil)        // Slack never shows HTML, so Herald does not render it
        #expect(n.title.contains("山田 太郎"))
    }

    @Test("The embedded sample events are the shared vectors", arguments: SampleEvents.jicooNames)
    func sampleEventsAreTheSharedVectors(_ name: String) throws {
        let embedded = try JSONValue.parse(try #require(SampleEvents.jicooBody(name)))
        #expect(embedded == (try JSONValue.parse(SharedVectors.jicooBody(name))))
        #expect(try SampleEvents.event(name).booking?.uid != nil)
    }

    /// A child's exit is awaited with a time limit and without holding a thread: nil while it
    /// runs, then its status (a signal's number when a signal ended it).
    @Test func aChildsExitIsAwaitedWithATimeLimit() async throws {
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["30"]
        let sleeping = ChildExit(of: sleeper)
        try ChildProcess.launch(sleeper)
        #expect(await sleeping.status(within: .milliseconds(200)) == nil)
        sleeper.terminate()
        #expect(await sleeping.status(within: .seconds(20)) == SIGTERM)

        let quitter = Process()
        quitter.executableURL = URL(fileURLWithPath: "/bin/sh")
        quitter.arguments = ["-c", "exit 3"]
        let quitting = ChildExit(of: quitter)
        try ChildProcess.launch(quitter)
        #expect(await quitting.status == 3)
    }
}
