/// A configuration mistake, located: file, key path, line and column.
///
/// Plugins throw it from ``NotifierPlugin/init(settings:context:)`` (or from their settings'
/// `init(from:)`) with just a key and a message, ``init(key:_:)``; Herald's configuration
/// loader then fills in the file, the full key path and the position of that key, so
/// `herald check` prints e.g. `herald.yaml:14:7: notifiers.mail.port: must be between 1 and 65535`.
public struct ConfigError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The configuration file, or empty while a plugin's error is not located yet.
    public var file: String
    /// Where in the file: `notifiers.mail.to[1]`. For a plugin's own error, relative to the
    /// notifier's settings until the loader locates it.
    public var keyPath: String
    /// The 1-based line of the key, when known.
    public var line: Int?
    /// The 1-based column of the key, when known.
    public var column: Int?
    /// What is wrong, for a person to read. Never contains a secret's value.
    public var message: String

    /// A fully located error; Herald's loader makes these.
    public init(file: String = "", keyPath: String, line: Int? = nil, column: Int? = nil, message: String) {
        self.file = file
        self.keyPath = keyPath
        self.line = line
        self.column = column
        self.message = message
    }

    /// For plugins: `key` is relative to the notifier's settings (`"port"`, `"to[1]"`,
    /// `"headers.X-Token"`); Herald adds the file, the notifier's path and the position.
    public init(key: String, _ message: String) {
        self.init(keyPath: key, message: message)
    }

    /// `file:line:column: key.path: message`, leaving out what is not known.
    public var description: String {
        var location = file
        if let line { location += ":\(line)" }
        if let column { location += ":\(column)" }
        let key = keyPath.isEmpty ? "" : "\(keyPath): "
        return location.isEmpty ? "\(key)\(message)" : "\(location): \(key)\(message)"
    }

    /// The error for a settings key nobody reads: a typo such as `calender` or `fsnyc`.
    ///
    /// The message suggests the closest known key when there is one, and lists every known
    /// key. Herald's loader uses it for its own sections and for every plugin's settings, so
    /// all unknown keys read alike.
    public static func unknownKey(_ key: String, known: some Sequence<String>) -> ConfigError {
        let known = Set(known).sorted()
        let hint = suggestion(for: key, among: known).map { "; did you mean \"\($0)\"?" } ?? ""
        let list = known.isEmpty ? "this mapping takes no keys" : "known keys: \(known.joined(separator: ", "))"
        return ConfigError(key: key, "unknown key\(hint) (\(list))")
    }

    /// The key among `known` that `key` is most likely a typo of, if any is close enough.
    package static func suggestion(for key: String, among known: some Sequence<String>) -> String? {
        known.map { (key: $0, distance: editDistance($0, key)) }
            .filter { $0.distance <= min(3, max(2, key.count / 2)) }
            .min { ($0.distance, $0.key) < ($1.distance, $1.key) }?.key
    }

    /// Levenshtein distance, ignoring case.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a.lowercased()), y = Array(b.lowercased())
        if x.isEmpty { return y.count }
        if y.isEmpty { return x.count }
        var row = Array(0...y.count)
        for i in 1...x.count {
            var previous = row[0]
            row[0] = i
            for j in 1...y.count {
                let current = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, previous + (x[i - 1] == y[j - 1] ? 0 : 1))
                previous = current
            }
        }
        return row[y.count]
    }
}
