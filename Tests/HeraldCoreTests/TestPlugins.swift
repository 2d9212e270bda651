import Foundation
import Synchronization
@testable import HeraldCore

/// Records what it is asked to deliver; can be slowed down or made to fail.
/// (A mock only for faults; real notifiers are tested against real servers.)
struct RecordingNotifier: NotifierPlugin {
    static let kind = "recording"
    static let secretKeys = ["token"]

    struct Settings: Decodable, Sendable {
        var label: String?
        var token: String?
        var port: Int?
    }

    let settings: Settings
    let log: DeliveryLog

    init(settings: Settings, context: PluginContext) throws {
        if let port = settings.port, port <= 0 { throw ConfigError(key: "port", "must be positive") }
        self.settings = settings
        log = context.shared.get(DeliveryLog.self) { DeliveryLog() }
    }

    func deliver(_ notification: HeraldNotification) async throws {
        try await log.deliver(notification, as: settings.label ?? "")
    }
}

/// Shared by the recording notifiers of one test: what arrived, and how to behave.
final class DeliveryLog: Sendable {
    struct Entry: Sendable { let notifier: String; let notification: HeraldNotification; let at: ContinuousClock.Instant }
    let entries = Mutex<[Entry]>([])
    /// Per notifier label: errors to throw on the next attempts, in order.
    let failures = Mutex<[String: [DeliveryError]]>([:])
    /// Per notifier label: how long each delivery takes.
    let delays = Mutex<[String: Duration]>([:])

    func deliver(_ n: HeraldNotification, as label: String) async throws {
        if let delay = delays.withLock({ $0[label] }) { try await Task.sleep(for: delay) }
        if let error = failures.withLock({ f -> DeliveryError? in
            guard var list = f[label], !list.isEmpty else { return nil }
            let first = list.removeFirst()
            f[label] = list
            return first
        }) { throw error }
        entries.withLock { $0.append(Entry(notifier: label, notification: n, at: .now)) }
    }

    func count(_ label: String) -> Int { entries.withLock { $0.filter { $0.notifier == label }.count } }
}

extension ConfigLoader {
    static func testing(env: [String: String] = [:], shared: SharedResources = SharedResources()) throws -> ConfigLoader {
        ConfigLoader(registry: try PluginRegistry([RecordingNotifier.self]), environment: env, shared: shared)
    }
}
