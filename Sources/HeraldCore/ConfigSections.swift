import Foundation
import Logging
import Yams

/// The sections of the configuration file, read in order and cross-checked (`notifiers:` and
/// their policies in ConfigNotifiers.swift).
extension Reader {
    static let endpointRequired = "at least one endpoint is required (e.g. - { path: /hooks/jicoo, secrets: [\"${JICOO_SECRET}\"] })"
    static let topKeys: Set<String> = ["server", "storage", "log", "locale", "endpoints", "notifiers", "routes", "templates"]

    // MARK: The whole file

    /// The configuration, or nil when anything is wrong; every mistake found is in
    /// ``problems``, so one does not hide the next.
    func read(root: Node, loader: ConfigLoader) -> HeraldConfig? {
        var server = HeraldConfig.Server()
        var storage = defaultStorage
        var log = HeraldConfig.Log()
        var locale = HeraldLocale.en
        var endpoints: [HeraldConfig.Endpoint] = []
        var notifiers: [HeraldConfig.Notifier] = []
        var routes: [(index: Int, route: HeraldConfig.Route, node: Node)] = []
        var templates: [String: HeraldConfig.TemplateSource] = [:]
        var sawEndpoints = false

        let sections = collecting { () throws(ConfigError) in try mapping(root, "") } ?? []
        for (key, keyNode, value) in sections {
            collecting { () throws(ConfigError) in
                switch key {
                case "server": server = try readServer(value)
                case "storage": storage = try readStorage(value)
                case "log": log = try readLog(value)
                case "locale": locale = try readLocale(value, "locale")
                case "endpoints":
                    sawEndpoints = true
                    endpoints = try readEndpoints(value)
                    if endpoints.isEmpty { throw fail(value, "endpoints", Self.endpointRequired) }
                case "notifiers": notifiers = try readNotifiers(value, loader: loader)
                case "routes": routes = try readRoutes(value)
                case "templates": templates = try readTemplates(value)
                default: throw fail(keyNode, key, ConfigError.unknownKey(key, known: Self.topKeys).message)
                }
            }
        }
        if !sawEndpoints {
            problems.add(fail(root, "endpoints", Self.endpointRequired))
        }
        // Names of notifiers that failed count as defined: their own error says what is wrong.
        let names = Set(root.mapping?["notifiers"]?.mapping?.keys.compactMap { $0.scalar?.string } ?? [])
        for (i, route, routeNode) in routes {
            for (j, name) in route.notify.enumerated() where !names.contains(name) {
                let node = self.node(at: ["notify", String(j)], in: routeNode)
                problems.add(fail(node ?? routeNode, "routes[\(i)].notify[\(j)]",
                                  "no notifier named \"\(name)\"; defined: \(names.sorted().joined(separator: ", "))"))
            }
            for (key, name) in [("template", route.template), ("reminderTemplate", route.reminderTemplate)] {
                guard let name, templates[name] == nil else { continue }
                problems.add(fail(self.node(at: [key], in: routeNode), "routes[\(i)].\(key)",
                                  "no template named \"\(name)\" under templates:"))
            }
        }
        let config = HeraldConfig(file: file, server: server, storage: storage, log: log, locale: locale,
                                  endpoints: endpoints, notifiers: notifiers, routes: routes.map(\.route), templates: templates)
        do { _ = try Renderer(config: config) } catch {
            let path = "templates.\(error.template).\(error.part)"
            problems.add(fail(node(at: ["templates", error.template, error.part], in: root), path,
                              "template does not compile: \(error.message)"))
        }
        return problems.all.isEmpty ? config : nil
    }

    // MARK: server, storage, log, locale

    func readServer(_ node: Node) throws(ConfigError) -> HeraldConfig.Server {
        var s = HeraldConfig.Server()
        let allowed: Set<String> = ["listen", "host", "port", "maxBodyBytes", "maxBodyBytesInFlight", "headerTimeout", "bodyTimeout",
                       "idleTimeout", "maxConnections"]
        var inFlightNode: Node?
        for (key, _, v) in try mapping(node, "server", allowed: allowed) {
            let path = "server.\(key)"
            switch key {
            case "listen":
                let text = try string(v, path)
                guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
                    throw fail(v, path, "expected host:port such as 127.0.0.1:8080, found \"\(text)\"")
                }
                s.host = String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
                s.port = port
            case "host": s.host = try string(v, path)
            case "port": s.port = try int(v, path, range: 0...65535)
            case "maxBodyBytes": s.maxBodyBytes = try int(v, path, range: 1024...(256 << 20))
            case "maxBodyBytesInFlight":
                s.maxBodyBytesInFlight = try int(v, path, range: 1024...(16 << 30))
                inFlightNode = v
            case "maxConnections": s.maxConnections = try int(v, path, range: 1...1_000_000)
            default:
                let d = try duration(v, path)
                guard d > Duration.zero, d <= Duration.seconds(86400) else { throw fail(v, path, "must be more than 0 and at most 1d") }
                switch key {
                case "headerTimeout": s.headerTimeout = d
                case "bodyTimeout": s.bodyTimeout = d
                default: s.idleTimeout = d
                }
            }
        }
        guard let inFlightNode else {
            s.maxBodyBytesInFlight = max(s.maxBodyBytesInFlight, s.maxBodyBytes)
            return s
        }
        if s.maxBodyBytesInFlight < s.maxBodyBytes {
            throw fail(inFlightNode, "server.maxBodyBytesInFlight",
                       "must be at least server.maxBodyBytes (\(s.maxBodyBytes)), or no body of the largest size could ever be read")
        }
        return s
    }

    /// Storage when the file says nothing: the journal in `herald-data` beside the file.
    var defaultStorage: HeraldConfig.Storage {
        var s = HeraldConfig.Storage()
        s.path = PluginContext.resolve("herald-data", against: baseDirectory)
        return s
    }

    func readStorage(_ node: Node) throws(ConfigError) -> HeraldConfig.Storage {
        var s = defaultStorage
        let keys: Set<String> = ["path", "memory", "postgres", "dedupeTTL", "retention", "groupCommit", "maxPending",
                                 "deadAfterCrashes", "leaseTime"]
        let entries = try mapping(node, "storage", allowed: keys)
        let places = entries.filter { ["path", "memory", "postgres"].contains($0.key) }
        if places.count > 1 {
            throw fail(places[1].keyNode, "storage.\(places[1].key)",
                       "give one of storage.path, storage.memory and storage.postgres, not \(places.map(\.key).joined(separator: " and "))")
        }
        for (key, _, v) in entries {
            let path = "storage.\(key)"
            switch key {
            case "postgres": s.postgres = try readPostgres(v)
            case "path":
                let p = try string(v, path)
                s.path = PluginContext.resolve(p, against: baseDirectory)
            case "memory": if try bool(v, path) { s.path = nil }
            case "dedupeTTL": s.dedupeTTL = try duration(v, path)
            case "retention": s.retention = try duration(v, path)
            case "groupCommit": s.groupCommit = try bool(v, path)
            case "deadAfterCrashes": s.deadAfterCrashes = try int(v, path, range: 1...1000)
            case "leaseTime":
                s.leaseTime = try duration(v, path)
                if s.leaseTime < .seconds(1) {
                    throw fail(v, path, "must be at least 1s (leases are renewed every third of it)")
                }
            default: s.maxPending = try int(v, path, range: 1...100_000_000)
            }
        }
        return s
    }

    /// `storage.postgres`: `url` (or `urlFile`, a file holding it) and `poolSize`.
    func readPostgres(_ node: Node) throws(ConfigError) -> HeraldConfig.Storage.Postgres {
        var url: PostgresURL?
        var poolSize = 8
        for (key, keyNode, v) in try mapping(node, "storage.postgres", allowed: ["url", "urlFile", "poolSize"]) {
            let path = "storage.postgres.\(key)"
            if key == "poolSize" {
                poolSize = try int(v, path, range: 1...1000)
                continue
            }
            guard url == nil else { throw fail(keyNode, path, "give either url or urlFile, not both") }
            let text = key == "url" ? try string(v, path) : try readSecretFile(v, path)
            do { url = try PostgresURL(parsing: text, baseDirectory: baseDirectory) } catch { throw fail(v, path, error.message) }
        }
        guard let url else {
            throw fail(node, "storage.postgres", "missing url (or urlFile), e.g. url: \"${DATABASE_URL}\" holding postgres://user:password@host:5432/database")
        }
        return HeraldConfig.Storage.Postgres(url: url, poolSize: poolSize)
    }

    func readLog(_ node: Node) throws(ConfigError) -> HeraldConfig.Log {
        var l = HeraldConfig.Log()
        for (key, _, v) in try mapping(node, "log", allowed: ["level", "format"]) {
            let text = try string(v, "log.\(key)")
            if key == "level" {
                guard let level = Logger.Level(rawValue: text.lowercased()) else {
                    throw fail(v, "log.level", "expected one of trace, debug, info, notice, warning, error, critical; found \"\(text)\"")
                }
                l.level = level
            } else {
                guard let format = HeraldConfig.Log.Format(rawValue: text) else {
                    throw fail(v, "log.format", "expected text or json, found \"\(text)\"")
                }
                l.format = format
            }
        }
        return l
    }

    func readLocale(_ node: Node, _ path: String) throws(ConfigError) -> HeraldLocale {
        let text = try string(node, path)
        guard let l = HeraldLocale(rawValue: text) else { throw fail(node, path, "expected ja or en, found \"\(text)\"") }
        return l
    }

    // MARK: endpoints

    func readEndpoints(_ node: Node) throws(ConfigError) -> [HeraldConfig.Endpoint] {
        guard let seq = node.sequence else { throw fail(node, "endpoints", "expected a list of endpoints, found \(describe(node))") }
        var out: [HeraldConfig.Endpoint] = []
        var paths = Set<String>()
        for (i, item) in seq.enumerated() {
            let base = "endpoints[\(i)]"
            var path: String?
            var source = EventSource.jicoo
            var schemeName: SignatureSchemeName?
            var secrets: [Secret] = []
            var tolerance: Duration = .seconds(300)
            var header: String?
            var eventField: String?
            var eventHeader: String?
            var dedupe = true
            var secretNode: (node: Node, path: String)?
            let allowed: Set<String> = ["path", "source", "scheme", "secrets", "secret", "secretsFile", "secretFile",
                                        "tolerance", "header", "eventField", "eventHeader", "dedupe"]
            for (key, _, v) in try mapping(item, base, allowed: allowed) {
                let p = "\(base).\(key)"
                switch key {
                case "path":
                    let text = try string(v, p)
                    guard text.hasPrefix("/"), !text.contains(" "), !text.contains("?") else {
                        throw fail(v, p, "expected a URL path starting with /, found \"\(text)\"")
                    }
                    guard !["/healthz", "/readyz", "/metrics"].contains(text) else { throw fail(v, p, "\(text) is reserved by Herald") }
                    guard paths.insert(text).inserted else { throw fail(v, p, "another endpoint already uses \(text)") }
                    path = text
                case "source":
                    let text = try string(v, p)
                    guard let s = EventSource(rawValue: text) else {
                        throw fail(v, p, "expected one of \(EventSource.allCases.map(\.rawValue).joined(separator: ", ")); found \"\(text)\"")
                    }
                    source = s
                case "scheme":
                    let text = try string(v, p)
                    guard let s = SignatureSchemeName(rawValue: text) else {
                        throw fail(v, p, "expected one of \(SignatureSchemeName.allCases.map(\.rawValue).joined(separator: ", ")); found \"\(text)\"")
                    }
                    schemeName = s
                case "secrets", "secret":
                    secretNode = (v, p)
                    for (j, s) in try stringList(v, p).enumerated() {
                        // `"${OLD_SECRET:-}"` in a rotation list is empty while no old secret
                        // is set: dropped, not an error (an endpoint still needs one secret).
                        guard !s.isEmpty else {
                            problems.notice("\(file):\(v.mark?.line ?? 0): \(p)[\(j)] is empty and was dropped")
                            continue
                        }
                        secrets.append(Secret(s))
                    }
                case "secretsFile", "secretFile":
                    secretNode = (v, p)
                    let lines = try readSecretFile(v, p).split(whereSeparator: \.isNewline)
                        .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
                    guard !lines.isEmpty else { throw fail(v, p, "the secret file is empty") }
                    secrets += lines.map(Secret.init)
                case "tolerance": tolerance = try duration(v, p)
                case "header": header = try string(v, p)
                case "eventField": eventField = try string(v, p)
                case "eventHeader":
                    let text = try string(v, p)
                    guard !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
                        throw fail(v, p, "expected a header name such as X-GitHub-Event, found \"\(text)\"")
                    }
                    eventHeader = text
                default: dedupe = try bool(v, p)
                }
            }
            guard let path else { throw fail(item, "\(base).path", "missing required key \"path\"") }
            guard !secrets.isEmpty else {
                throw fail(item, "\(base).secrets", "an endpoint needs at least one secret (secrets: or secretsFile:); unsigned webhooks are not accepted")
            }
            let name = schemeName ?? source.defaultScheme
            let scheme: any SignatureScheme
            do { scheme = try name.makeScheme(secrets: secrets, tolerance: tolerance.components.seconds, header: header) } catch {
                throw fail(secretNode?.node ?? item, secretNode?.path ?? "\(base).secrets", error.message)
            }
            out.append(HeraldConfig.Endpoint(path: path, source: source, schemeName: name, scheme: scheme, secrets: secrets,
                                             tolerance: tolerance, header: header, eventField: eventField,
                                             eventHeader: eventHeader, dedupe: dedupe))
        }
        return out
    }

    // MARK: routes

    static let routeKeys = Set(["events", "notify", "template", "locale", "options", "continue", "remind",
                                "reminderTemplate", "remindGrace"]).union(filterKeys)

    /// Every route that could be read, with its index in the file and its node; each one that
    /// could not adds its errors to ``problems``, so every bad route and condition is reported.
    func readRoutes(_ node: Node) throws(ConfigError) -> [(index: Int, route: HeraldConfig.Route, node: Node)] {
        guard let seq = node.sequence else { throw fail(node, "routes", "expected a list of routes, found \(describe(node))") }
        var out: [(index: Int, route: HeraldConfig.Route, node: Node)] = []
        for (i, item) in seq.enumerated() {
            if let read = collecting({ () throws(ConfigError) in try readRoute(item, i) }), let route = read {
                out.append((i, route, item))
            }
        }
        checkReachable(out)
        return out
    }

    /// One route; nil when a condition was wrong (its error is in ``problems``).
    func readRoute(_ item: Node, _ i: Int) throws(ConfigError) -> HeraldConfig.Route? {
        let base = "routes[\(i)]"
        var route = HeraldConfig.Route(events: [], notify: [])
        var conditions: [RouteFilter.Condition] = []
        var conditionsRead = true
        for (key, _, v) in try mapping(item, base, allowed: Self.routeKeys) {
            let p = "\(base).\(key)"
            switch key {
            case "events": route.events = try stringList(v, p)
            case "notify": route.notify = try stringList(v, p)
            case "template": route.template = try string(v, p)
            case "locale": route.locale = try readLocale(v, p)
            case "continue": route.continues = try bool(v, p)
            case "remind": route.remind = try readReminderOffsets(v, p)
            case "reminderTemplate": route.reminderTemplate = try string(v, p)
            case "remindGrace": route.remindGrace = try duration(v, p)
            case "options":
                for (k, _, ov) in try mapping(v, p) { route.options[k] = try string(ov, "\(p).\(k)") }
            default:
                if let read = collecting({ () throws(ConfigError) in try readConditions(key, v, p) }) {
                    conditions += read
                } else {
                    conditionsRead = false
                }
            }
        }
        guard !route.events.isEmpty else { throw fail(item, "\(base).events", "a route needs events: (names, globs like guest_*, or \"*\")") }
        guard !route.notify.isEmpty else { throw fail(item, "\(base).notify", "a route needs notify: (notifier names)") }
        route.filter = RouteFilter(conditions: conditions)
        return conditionsRead ? route : nil
    }

    /// A route that an earlier one always takes first is an error: the earlier route has no
    /// conditions and no `continue: true`, and its `events` cover every name the later one
    /// lists (`"*"`, the same pattern, or a glob that matches a plain name).
    func checkReachable(_ routes: [(index: Int, route: HeraldConfig.Route, node: Node)]) {
        for (j, later) in routes.enumerated() {
            let shadow = routes[..<j].first { earlier in
                !earlier.route.continues && earlier.route.filter.isEmpty
                    && later.route.events.allSatisfy { name in earlier.route.events.contains { Self.covers($0, name) } }
            }
            guard let shadow else { continue }
            problems.add(fail(later.node, "routes[\(later.index)]",
                              "is never tried: routes[\(shadow.index)] comes first, matches every event this route names and has no continue: true "
                                  + "(add continue: true to routes[\(shadow.index)], or move this route above it)"))
        }
    }

    /// Whether every name `other` matches is matched by `pattern`.
    static func covers(_ pattern: String, _ other: String) -> Bool {
        pattern == "*" || pattern == other || (!other.contains("*") && !other.contains("?") && Glob.matches(pattern, other))
    }

    /// `remind: [24h, 1h]`: distinct positive offsets, whole seconds, at most a year.
    func readReminderOffsets(_ node: Node, _ path: String) throws(ConfigError) -> [Duration] {
        guard let items = node.sequence else { throw fail(node, path, "expected a list of durations such as [24h, 1h]") }
        var out: [Duration] = []
        for (i, item) in items.enumerated() {
            let p = "\(path)[\(i)]"
            let offset = try duration(item, p)
            guard offset >= .seconds(1), offset <= .seconds(366 * 86400) else {
                throw fail(item, p, "a reminder offset must be between 1s and 366d before the start")
            }
            guard !out.contains(offset) else { throw fail(item, p, "this offset is listed twice") }
            out.append(offset)
        }
        return out
    }

    // MARK: templates

    func readTemplates(_ node: Node) throws(ConfigError) -> [String: HeraldConfig.TemplateSource] {
        var out: [String: HeraldConfig.TemplateSource] = [:]
        for (name, _, value) in try mapping(node, "templates") {
            let base = "templates.\(name)"
            var title: String?, text: String?, html: String?
            for (key, _, v) in try mapping(value, base, allowed: ["title", "text", "html", "textFile", "htmlFile"]) {
                let p = "\(base).\(key)"
                switch key {
                case "title": title = try string(v, p)
                case "text": text = try string(v, p)
                case "html": html = try string(v, p)
                case "textFile": text = try readSecretFile(v, p)
                default: html = try readSecretFile(v, p)
                }
            }
            guard let title else { throw fail(value, "\(base).title", "missing required key \"title\"") }
            guard let text else { throw fail(value, "\(base).text", "missing required key \"text\" (or textFile)") }
            out[name] = HeraldConfig.TemplateSource(title: title, text: text, html: html)
        }
        return out
    }
}
