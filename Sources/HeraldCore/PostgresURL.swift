import Foundation

/// Where a shared PostgreSQL journal lives: a libpq-style connection URL,
/// `postgres://user:password@host:port/database?sslmode=verify-full&sslrootcert=/path/ca.crt`.
///
/// Parsed once when the configuration loads, so a mistake is a located configuration error
/// rather than a failure at the first request. The password is kept as a ``Secret``: the URL's
/// ``description`` (what `herald check`, logs and errors show) replaces it with `<redacted>`,
/// and no parse error repeats the text it was given.
public struct PostgresURL: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    /// How the connection uses TLS, with libpq's meanings.
    public enum SSLMode: String, Sendable, CaseIterable {
        /// Never TLS.
        case disable
        /// TLS when the server offers it, without checking its certificate (libpq's default).
        case prefer
        /// TLS or no connection; the certificate is checked against `sslrootcert` when one is
        /// given (as libpq does), otherwise not at all.
        case require
        /// TLS, and the server's certificate must chain to `sslrootcert` (or the system's roots).
        case verifyCA = "verify-ca"
        /// As `verify-ca`, and the certificate must also name the host.
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    public var user: String
    /// nil: connect without a password (trust or peer authentication).
    public var password: Secret?
    public var database: String
    public var sslMode: SSLMode
    /// A PEM file of the certificate authorities to trust (`sslrootcert`), resolved against the
    /// configuration file's directory.
    public var sslRootCert: String?

    /// The URL as it can be shown: the password, if any, is `<redacted>`.
    public var description: String {
        var text = "postgres://\(Self.escape(user))\(password == nil ? "" : ":<redacted>")@"
        text += host.contains(":") ? "[\(host)]" : host
        text += ":\(port)/\(Self.escape(database))?sslmode=\(sslMode.rawValue)"
        if let sslRootCert { text += "&sslrootcert=\(sslRootCert)" }
        return text
    }

    public var debugDescription: String { description }

    /// `host:port`, for messages about reaching the server.
    public var server: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    public static func == (a: PostgresURL, b: PostgresURL) -> Bool {
        a.host == b.host && a.port == b.port && a.user == b.user && a.password?.bytes == b.password?.bytes
            && a.database == b.database && a.sslMode == b.sslMode && a.sslRootCert == b.sslRootCert
    }

    /// The query parameters Herald reads; any other is refused rather than silently ignored.
    public static let parameters = ["sslmode", "sslrootcert"]

    /// Parses `text`. The error says what is wrong without repeating `text`, which holds the password.
    /// - Parameter baseDirectory: what a relative `sslrootcert` is resolved against.
    public init(parsing text: String, baseDirectory: String = ".") throws(ConfigError) {
        let text = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let schemeEnd = text.range(of: "://"),
              ["postgres", "postgresql"].contains(text[..<schemeEnd.lowerBound].lowercased()) else {
            throw Self.bad("expected a URL like postgres://user:password@host:5432/database")
        }
        var rest = text[schemeEnd.upperBound...]
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        // The user part ends at the last "@": a password may contain "@" only percent-encoded,
        // but being lenient here costs nothing.
        guard let at = rest.lastIndex(of: "@") else {
            throw Self.bad("the URL names no user (postgres://user:password@host/database)")
        }
        let userInfo = rest[..<at]
        let hostPort = rest[rest.index(after: at)...]
        let userPart: Substring, passwordPart: Substring?
        if let colon = userInfo.firstIndex(of: ":") {
            userPart = userInfo[..<colon]
            passwordPart = userInfo[userInfo.index(after: colon)...]
        } else {
            userPart = userInfo
            passwordPart = nil
        }
        guard let user = userPart.removingPercentEncoding, !user.isEmpty else {
            throw Self.bad("the URL's user is empty or badly percent-encoded")
        }
        self.user = user
        if let passwordPart {
            guard let password = passwordPart.removingPercentEncoding else {
                throw Self.bad("the URL's password is badly percent-encoded (encode %, @, / and ? as %25, %40, %2F and %3F)")
            }
            self.password = Secret(password)
        }

        var hostText = hostPort, portText: Substring?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw Self.bad("the URL's host has \"[\" without \"]\"") }
            hostText = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw Self.bad("unexpected text after the URL's host") }
                portText = after.dropFirst()
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            hostText = hostPort[..<colon]
            portText = hostPort[hostPort.index(after: colon)...]
        }
        guard !hostText.isEmpty, let host = hostText.removingPercentEncoding else {
            throw Self.bad("the URL names no host (postgres://user:password@host:5432/database)")
        }
        self.host = host
        if let portText {
            guard let port = Int(portText), (1...65535).contains(port) else {
                throw Self.bad("the URL's port \"\(portText.prefix(12))\" is not a number from 1 to 65535")
            }
            self.port = port
        } else {
            port = 5432
        }
        guard let database = path.removingPercentEncoding else { throw Self.bad("the URL's database name is badly percent-encoded") }
        self.database = database.isEmpty ? user : database

        sslMode = .prefer
        var seen = Set<String>()
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0])
            guard let value = (parts.count > 1 ? parts[1] : "").removingPercentEncoding else {
                throw Self.bad("the URL parameter \(name) is badly percent-encoded")
            }
            guard Self.parameters.contains(name) else {
                throw Self.bad("unknown URL parameter \"\(name.prefix(40))\"; Herald reads \(Self.parameters.joined(separator: " and "))")
            }
            guard seen.insert(name).inserted else { throw Self.bad("the URL parameter \(name) is given twice") }
            if name == "sslmode" {
                guard let mode = SSLMode(rawValue: value) else {
                    let hint = value == "allow" ? " (allow is not supported: use prefer)" : ""
                    throw Self.bad("sslmode must be one of \(SSLMode.allCases.map(\.rawValue).joined(separator: ", "))\(hint)")
                }
                sslMode = mode
            } else {
                guard !value.isEmpty else { throw Self.bad("sslrootcert is empty; give the path of a PEM file") }
                sslRootCert = PluginContext.resolve(value, against: baseDirectory)
            }
        }
        if sslMode == .disable, sslRootCert != nil {
            throw Self.bad("sslrootcert is given but sslmode=disable turns TLS off")
        }
    }

    private static func bad(_ message: String) -> ConfigError { ConfigError(keyPath: "", message: message) }

    private static func escape(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .urlUserAllowed.subtracting(CharacterSet(charactersIn: ":@/?"))) ?? text
    }
}
