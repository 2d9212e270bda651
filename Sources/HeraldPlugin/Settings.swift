import Foundation

/// Checks for values written in a configuration file: durations, URLs, e-mail addresses and
/// ranges. Each throws a ``ConfigError`` for `key`, which Herald locates in the file.
///
/// Herald's own sections and every built-in plugin use these, so a duration or a URL is
/// written and reported the same way everywhere. Use them from your settings'
/// `init(from:)` through the ``Swift/KeyedDecodingContainer`` helpers, or from your plugin's
/// initialiser on values you already decoded.
///
/// Two things need no code: a key that your settings never read is reported as unknown (with
/// a "did you mean" suggestion), and a key listed in ``NotifierPlugin/secretKeys`` may be
/// written `<key>File: /path` to read the secret from a file.
public enum Setting {
    /// A duration: a number with an optional unit, `500ms`, `30s` (or `30`), `5m`, `1h`, `7d`.
    ///
    /// - Parameters:
    ///   - text: the value as written.
    ///   - key: the setting, for the error.
    ///   - range: the durations allowed, e.g. `.milliseconds(1)...(.seconds(3600))`.
    public static func duration(_ text: String, key: String,
                                in range: ClosedRange<Duration>? = nil) throws(ConfigError) -> Duration {
        guard let value = Duration.parse(text) else {
            throw ConfigError(key: key, "expected a duration like 500ms, 30s, 5m, 1h or 7d (at most 100 years), found \"\(text.prefix(40))\"")
        }
        try check(value, in: range, key: key, show: { "\($0)" })
        return value
    }

    /// An absolute URL with one of `schemes` and a host, e.g. a webhook URL.
    ///
    /// The URL itself never appears in the error: webhook URLs often carry a token.
    public static func url(_ text: String, key: String, schemes: Set<String> = ["https", "http"]) throws(ConfigError) -> URL {
        guard let url = URL(string: text.trimmingCharacters(in: .whitespaces)),
              let scheme = url.scheme?.lowercased(), schemes.contains(scheme),
              let host = url.host, !host.isEmpty
        else {
            let kind = schemes == ["https", "http"] ? "an http(s)" : "a " + schemes.sorted().joined(separator: " or ")
            throw ConfigError(key: key, "must be \(kind) URL with a host")
        }
        return url
    }

    /// An e-mail address, bare (`bot@example.com`) or with a display name
    /// (`Herald <bot@example.com>`, `"Yamada, Taro" <taro@example.jp>`).
    ///
    /// Refuses what could not be sent safely: no `@`, white space, control characters or
    /// `<>()[]\,;:"` in the address, a line break in the name. The address may be UTF-8.
    public static func emailAddress(_ text: String, key: String) throws(ConfigError) -> (name: String?, address: String) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        var name: String?
        var address = trimmed
        if trimmed.hasSuffix(">"), let open = trimmed.lastIndex(of: "<") {
            address = String(trimmed[trimmed.index(after: open)..<trimmed.index(before: trimmed.endIndex)])
            var display = trimmed[..<open].trimmingCharacters(in: .whitespaces)
            if display.count >= 2, display.hasPrefix("\""), display.hasSuffix("\"") {
                display = String(display.dropFirst().dropLast())
                    .replacingOccurrences(of: "\\\"", with: "\"").replacingOccurrences(of: "\\\\", with: "\\")
            }
            if display.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
                throw ConfigError(key: key, "\"\(text)\": the display name contains a line break or control character")
            }
            name = display.isEmpty ? nil : display
        }
        guard let at = address.lastIndex(of: "@"), at != address.startIndex, address.index(after: at) != address.endIndex else {
            throw ConfigError(key: key, "\"\(text)\": expected an address like name@example.com")
        }
        let forbidden = Set("<>()[]\\,;:\" ".unicodeScalars)
        for scalar in address.unicodeScalars where scalar.value < 0x21 || scalar.value == 0x7F || forbidden.contains(scalar) {
            throw ConfigError(key: key, "\"\(text)\": the address contains white space, a control character or \(scalar.escaped(asASCII: true))")
        }
        return (name, address)
    }

    /// `value`, if it lies in `range`; otherwise a "must be between" error.
    @discardableResult
    public static func check<T: Comparable>(_ value: T, in range: ClosedRange<T>, key: String) throws(ConfigError) -> T {
        try check(value, in: range, key: key, show: { "\($0)" })
        return value
    }

    private static func check<T: Comparable>(_ value: T, in range: ClosedRange<T>?, key: String,
                                             show: (T) -> String) throws(ConfigError) {
        guard let range, !range.contains(value) else { return }
        throw ConfigError(key: key, "must be between \(show(range.lowerBound)) and \(show(range.upperBound)), found \(show(value))")
    }
}

extension KeyedDecodingContainer {
    /// A duration (see ``Setting/duration(_:key:in:)``), written as text or as a number of
    /// seconds; nil when the key is absent.
    public func duration(_ key: Key, in range: ClosedRange<Duration>? = nil) throws -> Duration? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        let text: String
        if let seconds = try? decode(Double.self, forKey: key) { text = "\(seconds)" } else {
            text = try decode(String.self, forKey: key)
        }
        return try Setting.duration(text, key: key.stringValue, in: range)
    }

    /// A URL (see ``Setting/url(_:key:schemes:)``); nil when the key is absent.
    public func url(_ key: Key, schemes: Set<String> = ["https", "http"]) throws -> URL? {
        guard let text = try decodeIfPresent(String.self, forKey: key) else { return nil }
        return try Setting.url(text, key: key.stringValue, schemes: schemes)
    }

    /// A value that must lie in `range`, e.g. a port in `1...65535`; nil when the key is absent.
    public func value<T: Decodable & Comparable>(_ key: Key, in range: ClosedRange<T>) throws -> T? {
        guard let value = try decodeIfPresent(T.self, forKey: key) else { return nil }
        return try Setting.check(value, in: range, key: key.stringValue)
    }

    /// A required string that is not empty or only white space, trimmed.
    public func nonEmpty(_ key: Key) throws -> String {
        guard let value = try decodeIfPresent(String.self, forKey: key)?.trimmingCharacters(in: .whitespacesAndNewlines),
              !value.isEmpty
        else { throw ConfigError(key: key.stringValue, "is required") }
        return value
    }
}

extension Duration {
    /// The duration in seconds as a floating-point number.
    public var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }

    /// Parses `90`, `500ms`, `30s`, `5m`, `1h`, `7d` (a number with an optional unit); nil for
    /// anything else, a negative value, or more than ``longest``.
    ///
    /// Settings should go through ``Setting/duration(_:key:in:)``, which says what is wrong.
    public static func parse(_ text: String) -> Duration? {
        let t = text.trimmingCharacters(in: .whitespaces)
        let units: [(suffix: String, scale: Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
        let unit = units.first { t.hasSuffix($0.suffix) && !($0.suffix == "s" && t.hasSuffix("ms")) }
        guard let v = Double(t.dropLast(unit?.suffix.count ?? 0)) else { return nil }
        return Duration(checkedSeconds: v * (unit?.scale ?? 1))
    }

    /// The longest duration Herald takes from outside (configuration, a target's `Retry-After`):
    /// 100 years. Anything longer is refused or clamped, never converted into an integer that
    /// overflows.
    public static let longest: Duration = .seconds(100 * 365 * 86400)

    /// `seconds` to the millisecond, or nil if it is negative, not a number, or longer than
    /// ``longest``.
    public init?(checkedSeconds seconds: Double) {
        guard seconds >= 0, seconds <= Duration.longest.seconds,
              let milliseconds = Int64(exactly: (seconds * 1000).rounded()) else { return nil }
        self = .milliseconds(milliseconds)
    }

    /// `seconds` to the millisecond, clamped to `0...longest` (NaN counts as 0): for values a
    /// remote party sends, where "absurdly long" should mean "as long as we allow", not a crash.
    public static func clamped(seconds: Double) -> Duration {
        guard seconds > 0 else { return .zero }
        return Duration(checkedSeconds: seconds) ?? .longest
    }

    /// The duration in whole nanoseconds, saturating at `Int64.max` (for NIO's `TimeAmount`).
    public var saturatingNanoseconds: Int64 {
        let (s, atto) = components
        let (whole, overflow) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return s < 0 ? .min : .max }
        let (sum, overflow2) = whole.addingReportingOverflow(atto / 1_000_000_000)
        return overflow2 ? .max : sum
    }
}

/// Reads a plugin's settings and remembers which top-level keys they asked for, so that a
/// key nobody reads, a typo like `calender`, is reported instead of silently ignored.
///
/// Herald's loader decodes every plugin's `Settings` through it; synthesized `Decodable`
/// conformances ask for every property, and custom `init(from:)` for every key they read.
/// A settings type that lists `allKeys` (a free-form mapping) accepts any key.
package final class KeyRecordingDecoder: Decoder {
    private let inner: any Decoder
    private var asked: Set<String> = []
    private var acceptsAnyKey = false

    package init(_ inner: any Decoder) { self.inner = inner }

    package var codingPath: [any CodingKey] { inner.codingPath }
    package var userInfo: [CodingUserInfoKey: Any] { inner.userInfo }

    package func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(Recording(inner: try inner.container(keyedBy: type), owner: self))
    }

    package func unkeyedContainer() throws -> any UnkeyedDecodingContainer { try inner.unkeyedContainer() }
    package func singleValueContainer() throws -> any SingleValueDecodingContainer { try inner.singleValueContainer() }

    /// Decodes `T` from `decoder`, then throws ``UnknownKey`` (holding
    /// ``ConfigError/unknownKey(_:known:)``) for the first top-level key that `T` did not read.
    package static func decode<T: Decodable>(_ type: T.Type, from decoder: any Decoder) throws -> T {
        let recorder = KeyRecordingDecoder(decoder)
        let present = (try? decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue)) ?? []
        let value: T
        do { value = try T(from: recorder) } catch {
            // A typo of a required key fails decoding first ("webhookURL is required"); the
            // typo itself is the better report. The keys read so far may not be all of them,
            // so only the suggestion is given.
            if !recorder.acceptsAnyKey,
               let typo = present.first(where: { !recorder.asked.contains($0) && ConfigError.suggestion(for: $0, among: recorder.asked) != nil }),
               let meant = ConfigError.suggestion(for: typo, among: recorder.asked) {
                throw UnknownKey(error: ConfigError(key: typo, "unknown key; did you mean \"\(meant)\"?"))
            }
            throw error
        }
        guard !recorder.acceptsAnyKey else { return value }
        if let unknown = present.first(where: { !recorder.asked.contains($0) }) {
            throw UnknownKey(error: ConfigError.unknownKey(unknown, known: recorder.asked))
        }
        return value
    }

    /// A settings key that nobody reads; the loader points at the key rather than its value.
    package struct UnknownKey: Error {
        package let error: ConfigError
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// A keyed container that notes each key asked for before passing the call on.
    private struct Recording<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let inner: KeyedDecodingContainer<Key>
        let owner: KeyRecordingDecoder

        var codingPath: [any CodingKey] { inner.codingPath }
        var allKeys: [Key] {
            owner.acceptsAnyKey = true
            return inner.allKeys
        }

        private func note(_ key: Key) { owner.asked.insert(key.stringValue) }

        func contains(_ key: Key) -> Bool { note(key); return inner.contains(key) }
        func decodeNil(forKey key: Key) throws -> Bool { note(key); return try inner.decodeNil(forKey: key) }
        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { note(key); return try inner.decode(type, forKey: key) }
        func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
            note(key)
            return try inner.decodeIfPresent(type, forKey: key)
        }
        func nestedContainer<N: CodingKey>(keyedBy type: N.Type, forKey key: Key) throws -> KeyedDecodingContainer<N> {
            note(key)
            return try inner.nestedContainer(keyedBy: type, forKey: key)
        }
        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            note(key)
            return try inner.nestedUnkeyedContainer(forKey: key)
        }
        func superDecoder() throws -> any Decoder { try inner.superDecoder() }
        func superDecoder(forKey key: Key) throws -> any Decoder { note(key); return try inner.superDecoder(forKey: key) }
    }
}
