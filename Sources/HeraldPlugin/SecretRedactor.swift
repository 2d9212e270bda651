import Foundation

/// Removes secrets from text that is about to be logged or stored: an error a target sent
/// back, a delivery's last error in the journal, a log line.
///
/// Targets echo what they were sent ("unknown webhook 1234/abcd…", the request URL, a header),
/// so for each secret it removes the value itself, its percent-encoded form, and every part of
/// it that could appear on its own:
/// - in a URL: the password, the whole path and query, each path segment that looks like an
///   identifier or a key (it holds a digit or is 12 characters or longer: Slack's `T…`/`B…`
///   segments, Discord's webhook id and token), and each query value (Google Chat's `key`
///   and `token`);
/// - in a token written `id:secret` (Telegram's bot token): each side.
///
/// Parts shorter than 4 characters are left alone, so common words are never mangled.
public struct SecretRedactor: Sendable {
    /// What replaces a secret.
    public static let mask = "<redacted>"
    private let needles: [String]

    /// - Parameter secrets: secret values (tokens, passwords, secret URLs), as configured.
    public init(secrets: [String]) {
        var needles: Set<String> = []
        func add(_ part: some StringProtocol) {
            let text = String(part)
            guard text.count >= 4 else { return }
            needles.insert(text)
            if let encoded = text.addingPercentEncoding(withAllowedCharacters: .alphanumerics), encoded != text {
                needles.insert(encoded)
            }
        }
        for secret in secrets {
            add(secret)
            if let components = URLComponents(string: secret), let host = components.host, !host.isEmpty {
                if let password = components.password { add(password) }
                if components.path.count > 1 { add(components.path) }
                if let query = components.query { add(query) }
                for segment in components.path.split(separator: "/")
                where segment.count >= 12 || segment.contains(where: \.isNumber) {
                    add(segment)
                    if segment.hasPrefix("bot") { add(segment.dropFirst(3)) }
                }
                for item in components.queryItems ?? [] { if let value = item.value { add(value) } }
            } else {
                for part in secret.split(separator: ":") where part.count < secret.count { add(part) }
            }
        }
        // Longest first, so a secret is removed whole before any part of it.
        self.needles = needles.sorted { $0.count != $1.count ? $0.count > $1.count : $0 < $1 }
    }

    /// Whether there is nothing to remove.
    public var isEmpty: Bool { needles.isEmpty }

    /// `text` with every secret and secret part replaced by ``mask``.
    public func callAsFunction(_ text: String) -> String {
        var out = text
        for needle in needles where out.contains(needle) {
            out = out.replacingOccurrences(of: needle, with: Self.mask)
        }
        return out
    }
}
