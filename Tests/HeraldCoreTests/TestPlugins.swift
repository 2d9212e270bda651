import Foundation
import ServiceLifecycle
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
    /// Tells instances apart, e.g. one kept across a reload from one created by it.
    let instance = UUID()

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

    /// Per notifier label: deliveries inside the plugin now, and the most there were at once.
    let inFlight = Mutex<[String: (now: Int, most: Int)]>([:])

    func mostInFlight(_ label: String) -> Int { inFlight.withLock { $0[label]?.most ?? 0 } }

    func deliver(_ n: HeraldNotification, as label: String) async throws {
        inFlight.withLock { counts in
            var count = counts[label] ?? (0, 0)
            count.now += 1
            count.most = max(count.most, count.now)
            counts[label] = count
        }
        defer { inFlight.withLock { $0[label]?.now -= 1 } }
        if let delay = delays.withLock({ $0[label] }) { try await Task.sleep(for: delay) }
        if let error = failures.withLock({ f -> DeliveryError? in
            guard var list = f[label], !list.isEmpty else { return nil }
            let first = list.removeFirst()
            f[label] = list
            return first
        }) { throw error }
        entries.withLock { $0.append(Entry(notifier: label, notification: n, at: .now)) }
    }

    /// Service notifiers' starts and stops, in order: `"old started"`, `"old stopped"`.
    let lifecycle = Mutex<[String]>([])

    func count(_ label: String) -> Int { entries.withLock { $0.filter { $0.notifier == label }.count } }

    /// Whether the service notifier `label` has started and not stopped.
    func isRunning(_ label: String) -> Bool {
        lifecycle.withLock { $0.contains("\(label) started") && !$0.contains("\(label) stopped") }
    }
}

/// A notifier that is also a `Service`, like the email notifier with its connection pool:
/// it records when each instance (by label) starts and stops running, and fails any
/// delivery that begins or ends while its instance is not running.
struct ServiceNotifier: NotifierPlugin, Service {
    static let kind = "service"

    struct Settings: Decodable, Sendable {
        var label: String
    }

    let label: String
    let log: DeliveryLog

    init(settings: Settings, context: PluginContext) throws {
        label = settings.label
        log = context.shared.get(DeliveryLog.self) { DeliveryLog() }
    }

    func deliver(_ notification: HeraldNotification) async throws {
        guard log.isRunning(label) else { throw DeliveryError.retryable("instance \(label) was not running at the start") }
        if let delay = log.delays.withLock({ $0[label] }) { try await Task.sleep(for: delay) }
        guard log.isRunning(label) else { throw DeliveryError.retryable("instance \(label) stopped during the delivery") }
        log.entries.withLock { $0.append(DeliveryLog.Entry(notifier: label, notification: notification, at: .now)) }
    }

    func run() async throws {
        log.lifecycle.withLock { $0.append("\(label) started") }
        try? await gracefulShutdown()
        log.lifecycle.withLock { $0.append("\(label) stopped") }
    }
}

extension ConfigLoader {
    static func testing(env: [String: String] = [:], shared: SharedResources = SharedResources()) throws -> ConfigLoader {
        ConfigLoader(registry: try PluginRegistry([RecordingNotifier.self, ServiceNotifier.self]), environment: env, shared: shared)
    }
}

/// A memory journal that makes one race happen every time: when a retry is written, it wakes
/// the notifier's sweep for it and returns only once the sweep has leased it again, so the
/// dispatcher sees its retry taken before the failed attempt's task has finished.
final class RetryRacingJournal: ForwardingJournal {
    let inner: any Journal = MemoryJournal()
    /// The bus whose sweep is woken (set once the pipeline exists).
    let bus = Mutex<EventBus?>(nil)
    /// Retries written and not yet leased again.
    private let written = Mutex<Set<Int64>>([])
    /// Retries the sweep leased while their write was still waiting here.
    let takenWhileWriting = Mutex(0)

    func record(_ outcomes: [DeliveryOutcome], owner: String) async throws -> [Int64] {
        let lost = try await inner.record(outcomes, owner: owner)
        for case let .retry(id, at, _) in outcomes where !lost.contains(id) {
            written.withLock { _ = $0.insert(id) }
            guard let notifier = try await inner.delivery(id: id)?.notifier else { continue }
            bus.withLock { $0 }?.stored(for: notifier, dueAt: at)
            let taken = try await waitUntil(.seconds(30)) { !written.withLock { $0.contains(id) } }
            if taken { takenWhileWriting.withLock { $0 += 1 } }
        }
        return lost
    }

    func lease(_ request: LeaseRequest) async throws -> LeaseResult {
        let result = try await inner.lease(request)
        written.withLock { w in for item in result.deliveries { w.remove(item.record.id) } }
        return result
    }
}

/// A memory journal whose outcome writes wait until the test opens its gate: the fault of a
/// journal that is slow to write (a busy disk, writes queued behind others).
final class GatedOutcomeJournal: ForwardingJournal {
    let inner: any Journal = MemoryJournal()
    private let isOpen = Mutex(false)
    /// Outcome writes waiting at the gate now.
    let waiting = Mutex(0)

    func open() { isOpen.withLock { $0 = true } }

    func record(_ outcomes: [DeliveryOutcome], owner: String) async throws -> [Int64] {
        waiting.withLock { $0 += 1 }
        _ = try await waitUntil(.seconds(60)) { isOpen.withLock { $0 } }
        waiting.withLock { $0 -= 1 }
        return try await inner.record(outcomes, owner: owner)
    }
}

/// A test's journal that wraps another: every call it does not implement itself goes to `inner`.
protocol ForwardingJournal: Journal {
    var inner: any Journal { get }
}

extension ForwardingJournal {
    func lease(_ request: LeaseRequest) async throws -> LeaseResult { try await inner.lease(request) }
    func record(_ outcomes: [DeliveryOutcome], owner: String) async throws -> [Int64] {
        try await inner.record(outcomes, owner: owner)
    }
    func append(_ entry: consuming JournalEntry) async throws -> AppendResult { try await inner.append(entry) }
    func renew(_ ids: [Int64], owner: String, until: Date) async throws -> [Int64] {
        try await inner.renew(ids, owner: owner, until: until)
    }
    func instanceStarted(owner: String) async throws -> Int { try await inner.instanceStarted(owner: owner) }
    func event(id: String) async throws -> StoredEvent? { try await inner.event(id: id) }
    func deliveries(_ query: DeliveryQuery) async throws -> [DeliveryRecord] { try await inner.deliveries(query) }
    func counts() async throws -> [DeliveryCount] { try await inner.counts() }
    func undeliveredCount() async throws -> Int { try await inner.undeliveredCount() }
    func retry(_ selection: RetrySelection) async throws -> Int { try await inner.retry(selection) }
    func prune(before cutoff: Date) async throws -> Int { try await inner.prune(before: cutoff) }
    func bookings(startingFrom from: Date, before: Date) async throws -> [BookingSnapshot] {
        try await inner.bookings(startingFrom: from, before: before)
    }
    func waitForWork(notifier: String) async { await inner.waitForWork(notifier: notifier) }
}
