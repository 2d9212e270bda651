import Foundation
import Logging
import Yams

/// The `notifiers:` section: which plugin each notifier runs, its settings, and the policy
/// Herald applies around it (concurrency, timeout, retry, quiet hours, daily agenda).
extension Reader {
    // MARK: notifiers

    /// Every notifier that could be created; each one that could not adds its error to ``problems``.
    func readNotifiers(_ node: Node, loader: ConfigLoader) throws(ConfigError) -> [HeraldConfig.Notifier] {
        var out: [HeraldConfig.Notifier] = []
        for (name, _, value) in try mapping(node, "notifiers") {
            if let notifier = collecting({ () throws(ConfigError) in try readNotifier(name, value, loader: loader) }) {
                out.append(notifier)
            }
        }
        return out
    }

    func readNotifier(_ name: String, _ value: Node, loader: ConfigLoader) throws(ConfigError) -> HeraldConfig.Notifier {
        let base = "notifiers.\(name)"
        guard let m = value.mapping else { throw fail(value, base, "expected a mapping with kind: and settings, found \(describe(value))") }
        guard let kindNode = m["kind"] else {
            throw fail(value, "\(base).kind", "missing required key \"kind\"; registered kinds: \(loader.registry.kinds.joined(separator: ", "))")
        }
        let kind = try string(kindNode, "\(base).kind")
        guard let type = loader.registry.plugin(kind: kind) else {
            throw fail(kindNode, "\(base).kind", "unknown notifier kind \"\(kind)\"; registered kinds: \(loader.registry.kinds.joined(separator: ", "))")
        }
        var policy = DeliveryPolicy()
        var settingsPairs: [(Node, Node)] = []
        for (k, v) in m {
            let key = k.scalar?.string ?? ""
            let p = "\(base).\(key)"
            switch key {
            case "kind": continue
            case "concurrency": policy.concurrency = try int(v, p, range: 1...1024)
            case "timeout": policy.timeout = try duration(v, p)
            case "retry": policy.retry = try readRetry(v, p)
            case "quietHours": policy.quietHours = try readQuietHours(v, p)
            case "agenda": policy.agenda = try readAgenda(v, p)
            default: settingsPairs.append((k, v))
            }
        }
        let raw = Node.mapping(Node.Mapping(settingsPairs, m.tag, m.style, m.mark))
        let settings = try resolvedSettings(raw, base, secretKeys: Set(type.secretKeys))
        let context = PluginContext(
            name: name, logger: Logger(label: "herald.notifier.\(name)"), baseDirectory: baseDirectory, shared: loader.shared)
        let plugin: any NotifierPlugin
        do { plugin = try Self.make(type, settings: settings, context: context) } catch {
            throw decodingFailure(error, settings: settings, path: base)
        }
        let secrets = type.secretKeys.compactMap { settings.mapping?[$0]?.scalar?.string }
        return HeraldConfig.Notifier(name: name, kind: kind, plugin: plugin, policy: policy,
                                     settingsDigest: Self.digest(settings), redact: SecretRedactor(secrets: secrets))
    }

    // MARK: their policy: quiet hours, agenda, retry

    /// A local time of day, `HH:MM` or `HH:MM:SS`.
    func timeOfDay(_ node: Node, _ path: String) throws(ConfigError) -> QuietHours.TimeOfDay {
        let text = try string(node, path)
        guard let time = QuietHours.TimeOfDay(text) else {
            throw fail(node, path, "expected a local time as HH:MM or HH:MM:SS (24-hour), found \(text.debugDescription)")
        }
        return time
    }

    /// An IANA time zone by name.
    func timeZone(_ node: Node, _ path: String) throws(ConfigError) -> TimeZone {
        let text = try string(node, path)
        guard let zone = TimeText.knownZone(text) else {
            throw fail(node, path, "unknown time zone \(text.debugDescription); use an IANA name such as Asia/Tokyo or UTC")
        }
        return zone
    }

    func readAgenda(_ node: Node, _ base: String) throws(ConfigError) -> AgendaSchedule {
        var at: QuietHours.TimeOfDay?, zone: TimeZone?
        var rest: [(String, Node)] = []
        let keys: Set<String> = ["at", "zone", "day", "eventTypes", "skipEmpty", "grace"]
        for (key, _, v) in try mapping(node, base, allowed: keys) {
            let p = "\(base).\(key)"
            switch key {
            case "at": at = try timeOfDay(v, p)
            case "zone": zone = try timeZone(v, p)
            default: rest.append((key, v))
            }
        }
        guard let at else { throw fail(node, "\(base).at", "missing required key \"at\" (e.g. \"08:00\")") }
        guard let zone else { throw fail(node, "\(base).zone", "missing required key \"zone\" (e.g. Asia/Tokyo)") }
        var agenda = AgendaSchedule(at: at, zone: zone)
        for (key, v) in rest {
            let p = "\(base).\(key)"
            switch key {
            case "day":
                let text = try string(v, p)
                guard let day = AgendaSchedule.Day(rawValue: text) else { throw fail(v, p, "expected today or tomorrow, found \(text.debugDescription)") }
                agenda.day = day
            case "eventTypes": agenda.eventTypes = try stringList(v, p)
            case "skipEmpty": agenda.skipEmpty = try bool(v, p)
            default:
                agenda.grace = try duration(v, p)
                guard agenda.grace <= .seconds(12 * 3600) else { throw fail(v, p, "at most 12h: a later agenda is not news") }
            }
        }
        return agenda
    }

    func readQuietHours(_ node: Node, _ base: String) throws(ConfigError) -> QuietHours {
        var from: QuietHours.TimeOfDay?, to: QuietHours.TimeOfDay?, zone: TimeZone?
        var days = Set(1...7)
        var action = QuietHours.Action.hold
        for (key, _, v) in try mapping(node, base, allowed: ["from", "to", "zone", "days", "action"]) {
            let p = "\(base).\(key)"
            switch key {
            case "from": from = try timeOfDay(v, p)
            case "to": to = try timeOfDay(v, p)
            case "zone": zone = try timeZone(v, p)
            case "days":
                var set = Set<Int>()
                for name in try stringList(v, p) {
                    guard let i = QuietHours.dayNames.firstIndex(of: name.lowercased()) else {
                        throw fail(v, p, "unknown day \(name.debugDescription); use \(QuietHours.dayNames.joined(separator: ", "))")
                    }
                    set.insert(i + 1)
                }
                guard !set.isEmpty else { throw fail(v, p, "give at least one day, or leave days out for every day") }
                days = set
            default:
                let text = try string(v, p)
                guard let a = QuietHours.Action(rawValue: text) else {
                    throw fail(v, p, "expected hold or drop, found \(text.debugDescription)")
                }
                action = a
            }
        }
        guard let from else { throw fail(node, "\(base).from", "missing required key \"from\" (e.g. \"22:00\")") }
        guard let to else { throw fail(node, "\(base).to", "missing required key \"to\" (e.g. \"08:00\")") }
        guard from != to else { throw fail(node, "\(base).to", "from and to are the same time: the window would be empty") }
        guard let zone else { throw fail(node, "\(base).zone", "missing required key \"zone\" (e.g. Asia/Tokyo)") }
        return QuietHours(from: from, to: to, zone: zone, days: days, action: action)
    }

    /// The SHA-256 of the resolved settings as YAML, to tell whether they changed on reload.
    static func digest(_ settings: Node) -> String {
        // Settings that cannot be serialized get a unique digest: they always count as changed.
        let text = (try? Yams.serialize(node: settings)) ?? UUID().uuidString
        return HMAC.hex(HMAC.sha256(Array(text.utf8)))
    }

    static func make<P: NotifierPlugin>(_ type: P.Type, settings: Node, context: PluginContext) throws -> any NotifierPlugin {
        let decoded = try YAMLDecoder().decode(StrictSettings<P.Settings>.self, from: settings).value
        return try P(settings: decoded, context: context)
    }

    /// A plugin's settings, refusing keys that the settings type never reads.
    struct StrictSettings<Settings: Decodable>: Decodable {
        let value: Settings
        init(from decoder: any Decoder) throws { value = try KeyRecordingDecoder.decode(Settings.self, from: decoder) }
    }

    func readRetry(_ node: Node, _ path: String) throws(ConfigError) -> RetryPolicy {
        var r = RetryPolicy()
        for (key, _, v) in try mapping(node, path, allowed: ["initial", "factor", "max", "giveUpAfter", "maxRetryAfter"]) {
            let p = "\(path).\(key)"
            switch key {
            case "initial": r.initial = try duration(v, p)
            case "max": r.maximum = try duration(v, p)
            case "giveUpAfter": r.giveUpAfter = try duration(v, p)
            case "maxRetryAfter": r.maxRetryAfter = try duration(v, p)
            default:
                let text = try string(v, p)
                guard let f = Double(text), f >= 1, f <= 100 else { throw fail(v, p, "expected a number between 1 and 100, found \"\(text)\"") }
                r.factor = f
            }
        }
        return r
    }
}

/// The notifier types a Herald binary knows, by kind. Built from a static list.
public struct PluginRegistry: Sendable {
    private let byKind: [String: any NotifierPlugin.Type]

    /// Fails if two types claim the same kind.
    public init(_ plugins: [any NotifierPlugin.Type]) throws(ConfigError) {
        var map: [String: any NotifierPlugin.Type] = [:]
        for p in plugins {
            if let existing = map[p.kind] {
                throw ConfigError(keyPath: "plugins", message: "notifier kind \"\(p.kind)\" is registered twice (\(existing) and \(p))")
            }
            map[p.kind] = p
        }
        byKind = map
    }

    public var kinds: [String] { byKind.keys.sorted() }
    public func plugin(kind: String) -> (any NotifierPlugin.Type)? { byKind[kind] }
}
