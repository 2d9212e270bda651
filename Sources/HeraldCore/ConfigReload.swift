import Foundation
import ServiceLifecycle

/// Why a reload was refused. The running configuration stays exactly as it was.
public struct ReloadError: Error, Sendable, CustomStringConvertible, Equatable {
    /// One line per reason, e.g. `storage.path changed: restart Herald to apply`.
    public let reasons: [String]

    public init(reasons: [String]) { self.reasons = reasons }

    public var description: String { reasons.joined(separator: "; ") }
}

/// What differs between the running configuration and a new one, by name only (paths,
/// notifier and template names, key names), never a value: safe to log.
public struct ConfigChanges: Sendable, Equatable, CustomStringConvertible {
    /// What changes live, e.g. `endpoint /hooks/jicoo (secrets)`, `routes`, `notifier desk (settings)`.
    public var applied: [String] = []
    /// What Herald cannot change while running, e.g. `storage.path changed: restart Herald to apply`.
    public var needRestart: [String] = []
    /// Notifiers whose kind or settings changed: they get a new plugin instance.
    public var replacedNotifiers: [String] = []

    public var description: String { applied.isEmpty ? "nothing changed" : applied.joined(separator: "; ") }

    /// Compares two configurations of the same file.
    public init(from old: HeraldConfig, to new: HeraldConfig) {
        compareRestartOnly(old, new)
        compareEndpoints(old.endpoints, new.endpoints)
        if old.locale != new.locale { applied.append("locale") }
        if old.routes != new.routes { applied.append("routes") }
        let templates = Set(old.templates.keys).union(new.templates.keys).sorted()
        for name in templates where old.templates[name] != new.templates[name] {
            applied.append(old.templates[name] == nil ? "template \(name) (added)"
                           : new.templates[name] == nil ? "template \(name) (removed)" : "template \(name)")
        }
        let oldNotifiers = Dictionary(old.notifiers.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for notifier in new.notifiers {
            guard let before = oldNotifiers[notifier.name] else { continue }
            var what: [String] = []
            if before.kind != notifier.kind { what.append("kind") }
            if before.kind != notifier.kind || before.settingsDigest != notifier.settingsDigest {
                what.append("settings")
                replacedNotifiers.append(notifier.name)
            }
            if before.policy != notifier.policy { what.append("delivery policy") }
            if !what.isEmpty { applied.append("notifier \(notifier.name) (\(what.joined(separator: ", ")))") }
        }
        if old.log.level != new.log.level { applied.append("log.level") }
    }

    /// Listening socket, journal, log format and the set of notifiers are set up once at start.
    private mutating func compareRestartOnly(_ old: HeraldConfig, _ new: HeraldConfig) {
        func restart(_ key: String) { needRestart.append("\(key) changed: restart Herald to apply") }
        if old.server.host != new.server.host || old.server.port != new.server.port { restart("server.listen") }
        if old.server.maxBodyBytes != new.server.maxBodyBytes { restart("server.maxBodyBytes") }
        if old.server.maxBodyBytesInFlight != new.server.maxBodyBytesInFlight { restart("server.maxBodyBytesInFlight") }
        if old.server.headerTimeout != new.server.headerTimeout { restart("server.headerTimeout") }
        if old.server.bodyTimeout != new.server.bodyTimeout { restart("server.bodyTimeout") }
        if old.server.idleTimeout != new.server.idleTimeout { restart("server.idleTimeout") }
        if old.server.maxConnections != new.server.maxConnections { restart("server.maxConnections") }
        if old.storage.path != new.storage.path { restart(old.storage.path == nil || new.storage.path == nil ? "storage.memory" : "storage.path") }
        if old.storage.postgres != new.storage.postgres { restart("storage.postgres") }
        if old.storage.dedupeTTL != new.storage.dedupeTTL { restart("storage.dedupeTTL") }
        if old.storage.retention != new.storage.retention { restart("storage.retention") }
        if old.storage.groupCommit != new.storage.groupCommit { restart("storage.groupCommit") }
        if old.storage.maxPending != new.storage.maxPending { restart("storage.maxPending") }
        if old.log.format != new.log.format { restart("log.format") }
        let before = Set(old.notifiers.map(\.name)), after = Set(new.notifiers.map(\.name))
        if !after.subtracting(before).isEmpty {
            needRestart.append("notifiers added (\(after.subtracting(before).sorted().joined(separator: ", "))): restart Herald to apply")
        }
        if !before.subtracting(after).isEmpty {
            needRestart.append("notifiers removed (\(before.subtracting(after).sorted().joined(separator: ", "))): restart Herald to apply")
        }
    }

    private mutating func compareEndpoints(_ old: [HeraldConfig.Endpoint], _ new: [HeraldConfig.Endpoint]) {
        let before = Dictionary(old.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        let after = Dictionary(new.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        for path in Set(before.keys).union(after.keys).sorted() {
            switch (before[path], after[path]) {
            case (nil, .some): applied.append("endpoint \(path) (added)")
            case (.some, nil): applied.append("endpoint \(path) (removed)")
            case (let a?, let b?):
                var what: [String] = []
                if a.source != b.source { what.append("source") }
                if a.schemeName != b.schemeName { what.append("scheme") }
                if a.secrets.map(\.bytes) != b.secrets.map(\.bytes) { what.append("secrets") }
                if a.tolerance != b.tolerance { what.append("tolerance") }
                if a.header != b.header { what.append("header") }
                if a.eventField != b.eventField { what.append("eventField") }
                if a.eventHeader != b.eventHeader { what.append("eventHeader") }
                if a.dedupe != b.dedupe { what.append("dedupe") }
                if !what.isEmpty { applied.append("endpoint \(path) (\(what.joined(separator: ", ")))") }
            case (nil, nil): break
            }
        }
    }
}

extension Pipeline {
    /// Switches the running pipeline to `config`, a new load of the same file, if that can
    /// be done without a restart; otherwise changes nothing and throws.
    ///
    /// Endpoints, routes, templates, the locale, each notifier's settings and delivery policy
    /// change live. The listening address, the body limit, `storage:`, the log format and the
    /// set of notifier names need a restart: any of them refuses the whole reload.
    ///
    /// Notifiers whose kind and settings are unchanged keep their running plugin instance.
    /// A replaced plugin that is a `Service` is started through `services` before any delivery
    /// can reach it; the instance it replaces is shut down once the deliveries that started
    /// on the old configuration have finished. The switch itself is one atomic swap.
    @discardableResult
    public func reload(to config: HeraldConfig, services: PluginServices? = nil) async throws(ReloadError) -> ConfigChanges {
        guard reloadInProgress.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            throw ReloadError(reasons: ["another reload is in progress"])
        }
        defer { reloadInProgress.store(false, ordering: .releasing) }

        let base = live.snapshot
        let changes = ConfigChanges(from: base.config, to: config)
        guard changes.needRestart.isEmpty else { throw ReloadError(reasons: changes.needRestart) }
        var next = config
        for i in next.notifiers.indices where !changes.replacedNotifiers.contains(next.notifiers[i].name) {
            if let running = base.notifiers[next.notifiers[i].name] { next.notifiers[i].plugin = running.plugin }
        }
        let snapshot: LiveConfig
        do { snapshot = try LiveConfig(config: next) } catch { throw ReloadError(reasons: ["\(error)"]) }

        var replaced: [PluginServices.Handle] = []
        if let services {
            var started: [String: any Service] = [:]
            for notifier in next.notifiers where changes.replacedNotifiers.contains(notifier.name) {
                if let service = notifier.plugin as? any Service { started[notifier.name] = service }
            }
            do {
                replaced = try await services.replace(changes.replacedNotifiers, with: started)
            } catch {
                throw ReloadError(reasons: ["cannot start the new notifier services: \(error)"])
            }
        }
        let previous = live.swap(to: snapshot)
        services?.retire(replaced, after: { await previous.drained() })
        return changes
    }
}
