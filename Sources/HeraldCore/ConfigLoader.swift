import Foundation
import Logging
import Yams

/// Reads and validates a Herald configuration file.
///
/// Everything is checked before anything starts: unknown keys, types, durations, endpoint
/// schemes and secrets, every notifier's settings (decoded into the plugin's own `Settings`
/// and passed to its initialiser), routes that name missing notifiers or templates, and
/// template syntax. Each error names the file, the key path and the line.
///
/// `${VAR}` in any value reads an environment variable (`${VAR:-default}` gives a default);
/// secrets may come from files: `secretsFile:` for endpoints, `<key>File:` for a notifier's
/// secret keys.
public struct ConfigLoader: Sendable {
    public let registry: PluginRegistry
    public let environment: [String: String]
    public let shared: SharedResources
    public let logger: Logger

    public init(registry: PluginRegistry, environment: [String: String] = ProcessInfo.processInfo.environment,
                shared: SharedResources = SharedResources(), logger: Logger = Logger(label: "herald.config")) {
        self.registry = registry
        self.environment = environment
        self.shared = shared
        self.logger = logger
    }

    /// Loads a configuration file.
    public func load(file: String) throws(ConfigError) -> HeraldConfig {
        let (text, base) = try Self.read(file: file)
        return try load(yaml: text, file: file, baseDirectory: base)
    }

    /// Reads only the `storage:` section, for tools that open the journal: they need neither
    /// the webhook secrets nor the notifiers' credentials in their environment.
    public func loadStorage(file: String) throws(ConfigError) -> HeraldConfig.Storage {
        let (text, base) = try Self.read(file: file)
        let reader = Reader(file: file, environment: environment, baseDirectory: base)
        guard let storage = try Self.compose(text, file: file)?.mapping?["storage"] else { return reader.defaultStorage }
        return try reader.readStorage(storage)
    }

    /// Loads configuration text; `file` is only used in error messages. Throws the first
    /// error in the file; ``check(file:)`` gives them all.
    public func load(yaml: String, file: String = "<config>", baseDirectory: String = ".") throws(ConfigError) -> HeraldConfig {
        switch check(yaml: yaml, file: file, baseDirectory: baseDirectory) {
        case .success(let config): return config
        case .failure(let errors): throw errors.errors[0]
        }
    }

    /// Loads a configuration file as ``load(file:)`` does, but reports every error found, not
    /// only the first: what `herald check` prints.
    public func check(file: String) -> Result<HeraldConfig, ConfigErrors> {
        do {
            let (text, base) = try Self.read(file: file)
            return check(yaml: text, file: file, baseDirectory: base)
        } catch {
            return .failure(ConfigErrors(errors: [error]))
        }
    }

    /// Configuration text checked as a whole: the configuration, or every error in file order.
    public func check(yaml: String, file: String = "<config>", baseDirectory: String = ".") -> Result<HeraldConfig, ConfigErrors> {
        let root: Node
        do {
            guard let composed = try Self.compose(yaml, file: file) else {
                return .failure(ConfigErrors(errors: [ConfigError(file: file, keyPath: "", line: 1, message: "the file is empty")]))
            }
            root = composed
        } catch {
            return .failure(ConfigErrors(errors: [error]))
        }
        let reader = Reader(file: file, environment: environment, baseDirectory: baseDirectory)
        let config = reader.read(root: root, loader: self)
        for notice in reader.problems.notices { logger.notice("\(notice)") }
        if let config { return .success(config) }
        let ordered = reader.problems.all.enumerated().sorted {
            ($0.element.line ?? .max, $0.offset) < ($1.element.line ?? .max, $1.offset)
        }
        return .failure(ConfigErrors(errors: ordered.map(\.element)))
    }

    /// The file's text and its directory (against which relative paths resolve).
    static func read(file: String) throws(ConfigError) -> (text: String, baseDirectory: String) {
        do {
            let text = try String(contentsOfFile: file, encoding: .utf8)
            let base = (file as NSString).deletingLastPathComponent
            return (text, base.isEmpty ? "." : base)
        } catch {
            throw ConfigError(file: file, keyPath: "", message: "cannot read the file: \(error.localizedDescription)")
        }
    }

    /// The YAML tree (nil for an empty file), or a located error.
    static func compose(_ yaml: String, file: String) throws(ConfigError) -> Node? {
        do { return try Yams.compose(yaml: yaml) } catch let error as YamlError {
            throw yamlError(error, file: file)
        } catch {
            throw ConfigError(file: file, keyPath: "", message: "not valid YAML: \(error)")
        }
    }

    static func yamlError(_ error: YamlError, file: String) -> ConfigError {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
            let what = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": ")
            return ConfigError(file: file, keyPath: "", line: mark.line, column: mark.column, message: "not valid YAML: \(what)")
        case .composer(let context, let problem, let mark, _):
            let what = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: ": ")
            return ConfigError(file: file, keyPath: "", line: mark.line, column: mark.column, message: "not valid YAML: \(what)")
        default:
            return ConfigError(file: file, keyPath: "", message: "not valid YAML: \(error)")
        }
    }
}

/// Every error found in one configuration file, in the order of the file (at least one).
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigError]
    /// One error per line.
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

/// Walks the YAML tree, keeping the key path and the line of each node for errors.
struct Reader {
    let file: String
    let environment: [String: String]
    let baseDirectory: String
    /// Errors found so far. A reference, so that the section readers can record an error and
    /// go on with the next notifier or section.
    let problems = Problems()

    final class Problems {
        private(set) var all: [ConfigError] = []
        /// Things worth telling the user that do not stop the file from loading.
        private(set) var notices: [String] = []
        func add(_ error: ConfigError) { all.append(error) }
        func notice(_ text: String) { notices.append(text) }
    }

    /// `body`'s result, or nil with its error recorded in ``problems``.
    @discardableResult
    func collecting<T>(_ body: () throws(ConfigError) -> T) -> T? {
        do { return try body() } catch {
            problems.add(error)
            return nil
        }
    }

    func fail(_ node: Node?, _ path: String, _ message: String) -> ConfigError {
        ConfigError(file: file, keyPath: path, line: node?.mark?.line, column: node?.mark?.column, message: message)
    }

    func mapping(_ node: Node, _ path: String, allowed: Set<String>? = nil) throws(ConfigError) -> [(key: String, keyNode: Node, value: Node)] {
        guard let m = node.mapping else { throw fail(node, path, "expected a mapping (key: value lines), found \(describe(node))") }
        var seen = Set<String>()
        var out: [(String, Node, Node)] = []
        for (k, v) in m {
            guard let key = k.scalar?.string else { throw fail(k, path, "keys must be plain strings") }
            let keyPath = path.isEmpty ? key : "\(path).\(key)"
            guard seen.insert(key).inserted else { throw fail(k, keyPath, "duplicate key") }
            if let allowed, !allowed.contains(key) {
                throw fail(k, keyPath, ConfigError.unknownKey(key, known: allowed).message)
            }
            out.append((key, k, v))
        }
        return out
    }

    func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let s): return s.string.isEmpty ? "an empty value" : "\"\(s.string.prefix(40))\""
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    /// Replaces `${VAR}` and `${VAR:-default}` with environment values.
    func substitute(_ text: String, _ node: Node, _ path: String) throws(ConfigError) -> String {
        guard text.contains("${") else { return text }
        var out = ""
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            out += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                throw fail(node, path, "unterminated ${ in value")
            }
            let body = rest[start.upperBound..<end]
            let name: Substring, fallback: Substring?
            if let sep = body.range(of: ":-") { name = body[..<sep.lowerBound]; fallback = body[sep.upperBound...] }
            else { name = body; fallback = nil }
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                throw fail(node, path, "\"${\(body)}\" is not a valid environment variable reference")
            }
            if let value = environment[String(name)], !value.isEmpty { out += value }
            else if let fallback { out += fallback }
            else { throw fail(node, path, "environment variable \(name) is not set") }
            rest = rest[rest.index(after: end)...]
        }
        return out + rest
    }

    func string(_ node: Node, _ path: String) throws(ConfigError) -> String {
        guard let s = node.scalar else { throw fail(node, path, "expected a string, found \(describe(node))") }
        return try substitute(s.string, node, path)
    }

    func int(_ node: Node, _ path: String, range: ClosedRange<Int>) throws(ConfigError) -> Int {
        let text = try string(node, path)
        guard let v = Int(text.replacingOccurrences(of: "_", with: "")) else { throw fail(node, path, "expected an integer, found \"\(text)\"") }
        guard range.contains(v) else { throw fail(node, path, "must be between \(range.lowerBound) and \(range.upperBound), found \(v)") }
        return v
    }

    func bool(_ node: Node, _ path: String) throws(ConfigError) -> Bool {
        switch try string(node, path).lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        case let other: throw fail(node, path, "expected true or false, found \"\(other)\"")
        }
    }

    func duration(_ node: Node, _ path: String) throws(ConfigError) -> Duration {
        let text = try string(node, path)
        do { return try Setting.duration(text, key: path) } catch { throw fail(node, path, error.message) }
    }

    func stringList(_ node: Node, _ path: String) throws(ConfigError) -> [String] {
        if node.scalar != nil { return [try string(node, path)] }
        guard let seq = node.sequence else { throw fail(node, path, "expected a list, found \(describe(node))") }
        var out: [String] = []
        for (i, item) in seq.enumerated() { out.append(try string(item, "\(path)[\(i)]")) }
        return out
    }

    func readSecretFile(_ node: Node, _ path: String) throws(ConfigError) -> String {
        let name = try string(node, path)
        let full = PluginContext.resolve(name, against: baseDirectory)
        guard let data = FileManager.default.contents(atPath: full), let text = String(data: data, encoding: .utf8) else {
            throw fail(node, path, "cannot read the secret file \(full)")
        }
        return text.trimmingCharacters(in: .newlines)
    }

    /// A copy of a settings mapping with `${VAR}` substituted in every scalar and
    /// `<secret>File` keys replaced by the file's content under `<secret>`.
    func resolvedSettings(_ node: Node, _ path: String, secretKeys: Set<String>) throws(ConfigError) -> Node {
        switch node {
        case .scalar(let s):
            let value = try substitute(s.string, node, path)
            return .scalar(Node.Scalar(value, s.tag, value == s.string ? s.style : .plain, s.mark))
        case .sequence(let seq):
            var items: [Node] = []
            for (i, item) in seq.enumerated() { items.append(try resolvedSettings(item, "\(path)[\(i)]", secretKeys: [])) }
            return .sequence(Node.Sequence(items, seq.tag, seq.style, seq.mark))
        case .mapping(let m):
            var pairs: [(Node, Node)] = []
            let present = Set(m.keys.compactMap { $0.scalar?.string })
            for (k, v) in m {
                let key = k.scalar?.string ?? ""
                let keyPath = "\(path).\(key)"
                if key.hasSuffix("File"), secretKeys.contains(String(key.dropLast(4))) {
                    let target = String(key.dropLast(4))
                    guard !present.contains(target) else { throw fail(k, keyPath, "give either \(target) or \(key), not both") }
                    let secret = try readSecretFile(v, keyPath)
                    pairs.append((.scalar(Node.Scalar(target, k.tag, .plain, k.mark)),
                                  .scalar(Node.Scalar(secret, .implicit, .doubleQuoted, v.mark))))
                } else {
                    pairs.append((k, try resolvedSettings(v, keyPath, secretKeys: [])))
                }
            }
            return .mapping(Node.Mapping(pairs, m.tag, m.style, m.mark))
        case .alias:
            return node
        }
    }

    /// The node at a relative key path like `to[1]` or `retry.initial`, for locating plugin errors.
    func node(at relative: [String], in root: Node) -> Node? {
        var current = root
        for part in relative {
            if let index = Int(part), let seq = current.sequence, index < seq.count {
                current = seq[index]
            } else if let m = current.mapping, let v = m.first(where: { $0.key.scalar?.string == part })?.value {
                current = v
            } else {
                return nil
            }
        }
        return current
    }

    /// Where in `settings` a decoding error points, and a readable message.
    func decodingFailure(_ error: any Error, settings: Node, path: String) -> ConfigError {
        func located(_ codingPath: [any CodingKey], _ message: String) -> ConfigError {
            let parts = codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }
            let keyPath = parts.reduce(path) { p, k in Int(k) != nil ? "\(p)[\(k)]" : "\(p).\(k)" }
            return fail(node(at: parts, in: settings) ?? settings, keyPath, message)
        }
        switch error {
        case DecodingError.keyNotFound(let key, let ctx):
            return located(ctx.codingPath, "missing required key \"\(key.stringValue)\"")
        case DecodingError.typeMismatch(let type, let ctx):
            return located(ctx.codingPath, "expected \(Self.typeName(type))")
        case DecodingError.valueNotFound(let type, let ctx):
            return located(ctx.codingPath, "expected \(Self.typeName(type)), found nothing")
        case DecodingError.dataCorrupted(let ctx):
            return located(ctx.codingPath, ctx.debugDescription)
        case let unknown as KeyRecordingDecoder.UnknownKey:
            let keyNode = settings.mapping?.keys.first { $0.scalar?.string == unknown.error.keyPath }
            return fail(keyNode ?? settings, "\(path).\(unknown.error.keyPath)", unknown.error.message)
        case let error as ConfigError:
            let parts = error.keyPath.split(whereSeparator: { $0 == "." || $0 == "[" || $0 == "]" }).map(String.init)
            let keyPath = error.keyPath.isEmpty ? path : (error.keyPath.hasPrefix("[") ? path + error.keyPath : "\(path).\(error.keyPath)")
            return fail(node(at: parts, in: settings) ?? settings, keyPath, error.message)
        default:
            return fail(settings, path, "\(error)")
        }
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type, is UInt16.Type, is UInt32.Type: "an integer"
        case is Double.Type: "a number"
        case is Bool.Type: "true or false"
        case is [String].Type: "a list of strings"
        default: "\(type)"
        }
    }
}
