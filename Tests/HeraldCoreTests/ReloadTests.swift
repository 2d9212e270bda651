import Foundation
import Logging
import ServiceLifecycle
import Testing
@testable import HeraldCore

/// A pipeline whose configuration is reloaded from YAML, as `herald serve` does on SIGHUP.
struct ReloadHarness {
    let shared = SharedResources()
    let loader: ConfigLoader
    let pipeline: Pipeline
    let plugins: PluginServices
    var log: DeliveryLog { shared.get(DeliveryLog.self) { DeliveryLog() } }

    static func yaml(secret: String = "test-secret", notifiers: String, routes: String, storage: String = "memory: true") -> String {
        """
        storage: { \(storage) }
        endpoints: [{ path: /hooks/jicoo, secrets: [\(secret)] }]
        notifiers:
        \(notifiers)
        routes:
        \(routes)
        """
    }

    init(_ yaml: String) async throws {
        loader = try ConfigLoader.testing(shared: shared)
        let config = try loader.load(yaml: yaml)
        pipeline = try await Pipeline(config: config, journal: MemoryJournal(), shutdownGrace: .seconds(2))
        var services: [String: any Service] = [:]
        for notifier in config.notifiers { services[notifier.name] = notifier.plugin as? any Service }
        plugins = PluginServices(services)
    }

    @discardableResult
    func reload(_ yaml: String) async throws -> ConfigChanges {
        try await pipeline.reload(to: try loader.load(yaml: yaml), services: plugins)
    }

    func receive(_ name: String, secret: String = "test-secret") async throws -> Pipeline.Outcome {
        let body = try Fixtures.eventBody(name)
        let h = JicooSignature(secrets: [Secret(secret)]).sign(body: body, timestamp: Int64(Date().timeIntervalSince1970), id: "")
        return await pipeline.receive(path: "/hooks/jicoo", body: body, header: headers([h[0].name: h[0].value]))
    }

    /// Runs the plugin services and the dispatchers while `body` runs, then shuts down.
    func running(_ body: () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            let services: [any Service] = [plugins] + pipeline.dispatchers
            let serviceGroup = ServiceGroup(configuration: .init(
                services: services.map { .init(service: $0) }, logger: Logger(label: "test")))
            group.addTask { try await serviceGroup.run() }
            try await body()
            await serviceGroup.triggerGracefulShutdown()
            try await group.waitForAll()
        }
    }
}

@Suite("Configuration reload")
struct ReloadTests {
    static let twoNotifiers = """
          fast: { kind: recording, label: fast }
          slow: { kind: recording, label: slow }
        """

    @Test func routeChangeTakesEffectForTheNextEvent() async throws {
        let h = try await ReloadHarness(ReloadHarness.yaml(
            notifiers: Self.twoNotifiers, routes: "  - { events: [\"*\"], notify: [fast, slow] }"))
        try await h.running {
            guard case .accepted(_, 2) = try await h.receive("guest_booked") else { Issue.record("not sent to both"); return }
            let changes = try await h.reload(ReloadHarness.yaml(
                notifiers: Self.twoNotifiers, routes: "  - { events: [\"*\"], notify: [slow] }"))
            #expect(changes.applied == ["routes"])
            #expect(changes.replacedNotifiers.isEmpty)
            guard case .accepted(_, 1) = try await h.receive("guest_cancelled") else { Issue.record("not sent to slow only"); return }
            #expect(try await waitUntil { h.log.count("fast") == 1 && h.log.count("slow") == 2 })
        }
    }

    @Test func newSecretIsAcceptedAndTheOldOneRejected() async throws {
        let routes = "  - { events: [\"*\"], notify: [fast] }"
        let h = try await ReloadHarness(ReloadHarness.yaml(secret: "old-secret", notifiers: Self.twoNotifiers, routes: routes))
        let changes = try await h.reload(ReloadHarness.yaml(secret: "new-secret", notifiers: Self.twoNotifiers, routes: routes))
        #expect(changes.applied == ["endpoint /hooks/jicoo (secrets)"])
        #expect(!changes.description.contains("new-secret") && !changes.description.contains("old-secret"))
        #expect(try await h.receive("guest_booked", secret: "old-secret") == .rejected(.signatureMismatch))
        guard case .accepted = try await h.receive("guest_booked", secret: "new-secret") else {
            Issue.record("the new secret is not accepted"); return
        }
    }

    @Test func changedSettingsGetANewPluginAndUnchangedOnesKeepTheirs() async throws {
        let routes = "  - { events: [\"*\"], notify: [fast, slow] }"
        let h = try await ReloadHarness(ReloadHarness.yaml(notifiers: Self.twoNotifiers, routes: routes))
        let slowBefore = h.pipeline.live.snapshot.notifier(named: "slow").plugin as? RecordingNotifier
        let changes = try await h.reload(ReloadHarness.yaml(notifiers: """
              fast: { kind: recording, label: faster, concurrency: 2 }
              slow: { kind: recording, label: slow }
            """, routes: routes))
        #expect(changes.applied == ["notifier fast (settings, delivery policy)"])
        #expect(changes.replacedNotifiers == ["fast"])
        let live = h.pipeline.live.snapshot
        #expect((live.notifier(named: "fast").plugin as? RecordingNotifier)?.settings.label == "faster")
        #expect(live.notifier(named: "fast").policy.concurrency == 2)
        let slowAfter = live.notifier(named: "slow").plugin as? RecordingNotifier
        #expect(slowAfter?.instance == slowBefore?.instance)
        #expect(slowAfter?.settings.label == "slow")
        try await h.running {
            _ = try await h.receive("guest_booked")
            #expect(try await waitUntil { h.log.count("faster") == 1 && h.log.count("slow") == 1 })
            #expect(h.log.count("fast") == 0)
        }
    }

    @Test func changesThatNeedARestartAreRefusedWhole() async throws {
        let routes = "  - { events: [\"*\"], notify: [fast, slow] }"
        let h = try await ReloadHarness(ReloadHarness.yaml(notifiers: Self.twoNotifiers, routes: routes))
        let before = h.pipeline.live.snapshot
        // A new route and a new notifier: the route alone could apply, but nothing does.
        let added = ReloadHarness.yaml(notifiers: Self.twoNotifiers + "\n  extra: { kind: recording, label: extra }",
                                       routes: "  - { events: [\"*\"], notify: [extra] }")
        await #expect(throws: ReloadError(reasons: ["notifiers added (extra): restart Herald to apply"])) {
            try await h.reload(added)
        }
        let removed = ReloadHarness.yaml(notifiers: "  fast: { kind: recording, label: fast }",
                                         routes: "  - { events: [\"*\"], notify: [fast] }", storage: "memory: true, maxPending: 5")
        await #expect(throws: ReloadError(reasons: [
            "storage.maxPending changed: restart Herald to apply",
            "notifiers removed (slow): restart Herald to apply",
        ])) {
            try await h.reload(removed)
        }
        #expect(h.pipeline.live.snapshot === before)
        guard case .accepted(_, 2) = try await h.receive("guest_booked") else { Issue.record("the old routes are gone"); return }
    }

    /// An email-like plugin: the new instance runs before it gets a delivery, the delivery in
    /// flight during the reload finishes on the old instance, which then stops.
    @Test func serviceNotifierIsReplacedAfterItsDeliveryFinishes() async throws {
        func yaml(_ label: String) -> String {
            ReloadHarness.yaml(notifiers: "  mail: { kind: service, label: \(label) }",
                               routes: "  - { events: [\"*\"], notify: [mail] }")
        }
        let h = try await ReloadHarness(yaml("old"))
        h.log.delays.withLock { $0["old"] = .milliseconds(500) }
        try await h.running {
            #expect(try await waitUntil { h.log.isRunning("old") })
            guard case .accepted = try await h.receive("guest_booked") else { Issue.record("not accepted"); return }
            // The delivery has leased the configuration: it will run on the old instance.
            #expect(try await waitUntil { h.pipeline.live.snapshot.leases == 1 })
            let changes = try await h.reload(yaml("new"))
            #expect(changes.replacedNotifiers == ["mail"])
            #expect(h.log.isRunning("new"), "the new instance runs before the reload returns")
            #expect(h.log.isRunning("old"), "the old instance stays up while its delivery runs")
            #expect(try await waitUntil { h.log.count("old") == 1 })
            #expect(try await waitUntil { !h.log.isRunning("old") })
            guard case .accepted = try await h.receive("guest_cancelled") else { Issue.record("not accepted"); return }
            #expect(try await waitUntil { h.log.count("new") == 1 })
            #expect(h.plugins.names == ["mail"])
        }
        #expect(h.log.lifecycle.withLock { $0 } == ["old started", "new started", "old stopped", "new stopped"])
        #expect(h.pipeline.undeliveredCount == 0)
    }
}
