import Foundation
import Synchronization

/// Everything a request or a delivery reads from the configuration, built once per
/// configuration and replaced as a whole when Herald reloads it.
///
/// A request reads one snapshot (``LiveConfigCell/snapshot``) and a delivery leases one
/// (``LiveConfigCell/lease()``), so each sees the old configuration or the new one, never
/// parts of both. Leases count the deliveries still running on a snapshot: once it has been
/// replaced and ``drained()`` returns, the plugin instances only it used can be shut down.
public final class LiveConfig: Sendable {
    public let config: HeraldConfig
    public let endpointsByPath: [String: HeraldConfig.Endpoint]
    public let router: RouteTable
    public let renderer: Renderer
    public let notifiers: [String: HeraldConfig.Notifier]

    private struct Usage {
        var leases = 0
        var retired = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let usage = Mutex(Usage())

    /// Builds the route table, the renderer and the lookups of `config`.
    public init(config: HeraldConfig) throws(Renderer.TemplateError) {
        self.config = config
        endpointsByPath = Dictionary(config.endpoints.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        router = RouteTable(routes: config.routes)
        renderer = try Renderer(config: config)
        notifiers = Dictionary(config.notifiers.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// The notifier called `name`. Every dispatcher's notifier is in every snapshot: a reload
    /// that adds or removes notifiers is refused (``Pipeline/reload(to:services:)``).
    public func notifier(named name: String) -> HeraldConfig.Notifier {
        guard let notifier = notifiers[name] else {
            preconditionFailure("no notifier \"\(name)\" in the live configuration; reloads must keep the set of notifiers")
        }
        return notifier
    }

    /// Ends a lease taken with ``LiveConfigCell/lease()``.
    public func release() {
        let ready = usage.withLock { usage -> [CheckedContinuation<Void, Never>] in
            usage.leases -= 1
            guard usage.leases == 0, usage.retired else { return [] }
            defer { usage.waiters = [] }
            return usage.waiters
        }
        for waiter in ready { waiter.resume() }
    }

    /// Returns once this snapshot has been replaced and no delivery holds it any more.
    public func drained() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = usage.withLock { usage in
                if usage.retired && usage.leases == 0 { return true }
                usage.waiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Deliveries currently holding this snapshot.
    public var leases: Int { usage.withLock { $0.leases } }

    fileprivate func acquire() { usage.withLock { $0.leases += 1 } }

    fileprivate func retire() {
        let ready = usage.withLock { usage -> [CheckedContinuation<Void, Never>] in
            usage.retired = true
            guard usage.leases == 0 else { return [] }
            defer { usage.waiters = [] }
            return usage.waiters
        }
        for waiter in ready { waiter.resume() }
    }
}

/// Holds the live configuration of a running Herald; a reload swaps in a new one atomically.
public final class LiveConfigCell: Sendable {
    private let current: Mutex<LiveConfig>

    public init(_ live: LiveConfig) { current = Mutex(live) }

    /// The configuration in use now.
    public var snapshot: LiveConfig { current.withLock { $0 } }

    /// The configuration in use now, counted as in use until its ``LiveConfig/release()``.
    ///
    /// Taking a lease and swapping share one lock, so a snapshot that was replaced can gain
    /// no new lease: once its count is zero, it stays zero.
    public func lease() -> LiveConfig {
        current.withLock { live in
            live.acquire()
            return live
        }
    }

    /// Makes `next` the live configuration and returns the one it replaced (which gains no
    /// lease from now on). Only ``Pipeline/reload(to:services:)`` calls it, one at a time.
    func swap(to next: LiveConfig) -> LiveConfig {
        let previous = current.withLock { live in
            defer { live = next }
            return live
        }
        previous.retire()
        return previous
    }
}
