import Foundation
import HeraldCore
import HeraldTesting
import Testing
@testable import EmailNotifier

/// Settings are decoded from camelCase keys and impossible combinations are refused in init,
/// naming the key to fix.
struct SettingsTests {
    typealias Change = @Sendable (inout EmailNotifier.Settings) -> Void

    private func configError(_ change: (inout EmailNotifier.Settings) -> Void) -> ConfigError? {
        do {
            _ = try EmailNotifier(settings: Fixtures.settings(port: 2525, change), context: Fixtures.context())
            return nil
        } catch let error as ConfigError {
            return error
        } catch {
            Issue.record("expected a ConfigError, got \(error)")
            return nil
        }
    }

    @Test func misspelledSettingIsRefusedWithASuggestion() throws {
        let error = #expect(throws: ConfigError.self) {
            try EmailNotifier.configured("""
                host: smtp.example.com
                from: Herald <bot@example.com>
                to: [desk@example.com]
                calender: true
                """)
        }
        #expect(error?.keyPath == "calender")
        #expect(error?.line == 4)
        #expect(error?.message.hasPrefix("unknown key; did you mean \"calendar\"? (known keys: allowPlaintextAuth, bcc, caFile,") == true)
    }

    @Test func durationsAreCheckedLikeEveryOtherSetting() {
        #expect(configError { $0.connectTimeout = "soon" }
            == ConfigError(key: "connectTimeout", "expected a duration like 500ms, 30s, 5m, 1h or 7d (at most 100 years), found \"soon\""))
        #expect(configError { $0.idleTimeout = "0s" }?.keyPath == "idleTimeout")
        // Far beyond a day: an error, not a trap converting it to nanoseconds.
        #expect(configError { $0.commandTimeout = "100000000000d" }?.keyPath == "commandTimeout")
    }

    @Test func decodesCamelCaseKeys() throws {
        let json = #"""
        {"host": "smtp.example.com", "security": "tls", "username": "bot", "password": "x",
         "from": "Herald <bot@example.com>", "to": ["a@example.com"], "toGuest": true, "calendar": true,
         "caFile": "ca.pem", "heloName": "herald.example.com", "connectTimeout": "5s",
         "maxConnections": 3, "idleTimeout": "1m", "allowPlaintextAuth": false, "insecureSkipVerify": false}
        """#
        let settings = try JSONDecoder().decode(EmailNotifier.Settings.self, from: Data(json.utf8))
        #expect(settings.security == .tls && settings.toGuest == true && settings.calendar == true)
        #expect(settings.maxConnections == 3 && settings.idleTimeout == "1m" && settings.caFile == "ca.pem")
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(EmailNotifier.Settings.self, from: Data(#"{"security": "ssl"}"#.utf8))
        }
    }

    @Test func validSettingsAreAccepted() throws {
        #expect(configError { _ in } == nil)
        #expect(configError { $0.to = nil; $0.cc = nil; $0.bcc = nil; $0.toGuest = true } == nil)
        #expect(configError { $0.security = SMTPSecurity.none; $0.username = "u"; $0.password = "p"; $0.allowPlaintextAuth = true } == nil)
    }

    @Test(arguments: [
        ("host", { s in s.host = nil } as Change),
        ("from", { s in s.from = nil } as Change),
        ("from", { s in s.from = "not an address" } as Change),
        ("to[1]", { s in s.to = ["a@example.com", "Evil\r\nBcc: x@example.com <b@example.com>"] } as Change),
        ("to", { s in s.to = []; s.cc = nil; s.bcc = nil } as Change),
        ("port", { s in s.port = 70000 } as Change),
        ("security", { s in s.security = SMTPSecurity.none; s.username = "u"; s.password = "p" } as Change),
        ("password", { s in s.security = .starttls; s.username = "u" } as Change),
        ("username", { s in s.security = .starttls; s.password = "p" } as Change),
        ("caFile", { s in s.security = .starttls; s.caFile = "/nonexistent/ca.pem" } as Change),
        ("caFile", { s in s.security = SMTPSecurity.none; s.caFile = "/etc/ssl/certs/ca-certificates.crt" } as Change),
        ("insecureSkipVerify", { s in s.security = .tls; s.insecureSkipVerify = true; s.caFile = "ca.pem" } as Change),
        ("commandTimeout", { s in s.commandTimeout = "soon" } as Change),
        ("maxConnections", { s in s.maxConnections = 0 } as Change),
        ("heloName", { s in s.heloName = "two words" } as Change),
    ])
    func impossibleSettingsNameTheirKey(key: String, change: Change) {
        let error = configError(change)
        #expect(error?.keyPath == key, "\(String(describing: error))")
    }

    @Test func passwordIsASecretKey() {
        #expect(EmailNotifier.secretKeys == ["password"])
        #expect(EmailNotifier.kind == "smtp")
    }

    @Test func defaultPortFollowsSecurity() {
        #expect(SMTPSecurity.starttls.defaultPort == 587)
        #expect(SMTPSecurity.tls.defaultPort == 465)
        #expect(SMTPSecurity.none.defaultPort == 25)
    }
}
