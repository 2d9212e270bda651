import Foundation
import Testing
@testable import HeraldCore
import HeraldTesting

@Suite("Configuration")
struct ConfigTests {
    static let valid = """
        server:
          listen: "127.0.0.1:9090"
          maxBodyBytes: 65536
        storage:
          memory: true
        locale: ja
        endpoints:
          - path: /hooks/jicoo
            secrets: ["${JICOO_SECRET}", "old"]
            tolerance: 5m
          - path: /hooks/other
            source: generic
            scheme: hmac-sha256
            header: X-Signature
            secret: other-secret
        notifiers:
          chat:
            kind: recording
            label: chat
            concurrency: 2
            timeout: 10s
            retry: { initial: 1s, factor: 2, max: 1m, giveUpAfter: 2h }
          audit:
            kind: recording
            label: audit
        routes:
          - events: [guest_booked, "host_*"]
            notify: [chat, audit]
            template: short
            options: { toGuest: "true" }
          - events: ["*"]
            notify: [audit]
            locale: en
        templates:
          short:
            title: "{{event}}: {{guest.name}}"
            text: "{{when}}"
        """

    @Test func validConfigLoads() throws {
        let config = try ConfigLoader.testing(env: ["JICOO_SECRET": "s3cret"]).load(yaml: Self.valid, file: "h.yaml")
        #expect(config.server.host == "127.0.0.1")
        #expect(config.server.port == 9090)
        #expect(config.server.maxBodyBytes == 65536)
        #expect(config.storage.path == nil)
        #expect(config.locale == .ja)
        #expect(config.endpoints.map(\.path) == ["/hooks/jicoo", "/hooks/other"])
        #expect(config.endpoints[0].secrets.map { String(decoding: $0.bytes, as: UTF8.self) } == ["s3cret", "old"])
        #expect(config.endpoints[1].schemeName == .hmacSHA256)
        let chat = try #require(config.notifiers.first { $0.name == "chat" })
        #expect(chat.policy == DeliveryPolicy(concurrency: 2, timeout: .seconds(10),
                                              retry: RetryPolicy(initial: .seconds(1), factor: 2, maximum: .seconds(60), giveUpAfter: .seconds(7200))))
        #expect((chat.plugin as? RecordingNotifier)?.settings.label == "chat")
        #expect(config.routes[0].options == ["toGuest": "true"])
        #expect(config.templates["short"]?.text == "{{when}}")
    }

    func error(_ yaml: String, env: [String: String] = [:], file: String = "herald.yaml") -> ConfigError? {
        do {
            _ = try ConfigLoader.testing(env: env).load(yaml: yaml, file: file)
            return nil
        } catch let error as ConfigError {
            return error
        } catch {
            return nil
        }
    }

    @Test func unknownKeyNamesFileKeyAndLine() throws {
        let e = try #require(error("""
            server:
              lisen: "127.0.0.1:1"
            endpoints: [{ path: /h, secrets: [x] }]
            """))
        #expect(e.file == "herald.yaml")
        #expect(e.keyPath == "server.lisen")
        #expect(e.line == 2)
        #expect(e.message.contains("did you mean \"listen\""))
        #expect(e.description.hasPrefix("herald.yaml:2:3: server.lisen: unknown key"))
    }

    @Test func checkReportsEveryErrorInFileOrder() throws {
        let yaml = """
            server:
              lisen: "127.0.0.1:1"
            storage: { retention: forever }
            endpoints: [{ path: /h, secrets: [x] }]
            notifiers:
              desk:
                kind: recording
                lable: desk
              audit:
                kind: recording
                port: 0
              fine:
                kind: recording
            routes:
              - { events: ["*"], notify: [desk, fine, nobody] }
            """
        guard case .failure(let found) = try ConfigLoader.testing().check(yaml: yaml, file: "herald.yaml") else {
            Issue.record("expected errors")
            return
        }
        #expect(found.errors.map(\.description) == [
            "herald.yaml:2:3: server.lisen: unknown key; did you mean \"listen\"? (known keys: bodyTimeout, headerTimeout, host, idleTimeout, listen, maxBodyBytes, maxBodyBytesInFlight, maxConnections, port)",
            "herald.yaml:3:23: storage.retention: expected a duration like 500ms, 30s, 5m, 1h or 7d (at most 100 years), found \"forever\"",
            "herald.yaml:8:5: notifiers.desk.lable: unknown key; did you mean \"label\"? (known keys: label, port, token)",
            "herald.yaml:11:11: notifiers.audit.port: must be positive",
            "herald.yaml:15:43: routes[0].notify[2]: no notifier named \"nobody\"; defined: audit, desk, fine",
        ])
        // load throws the first of them.
        #expect(error(yaml)?.keyPath == "server.lisen")
    }

    @Test func unknownNotifierKind() throws {
        let e = try #require(error("""
            endpoints: [{ path: /h, secrets: [x] }]
            notifiers:
              desk:
                kind: carrier-pigeon
            """))
        #expect(e.keyPath == "notifiers.desk.kind")
        #expect(e.line == 4)
        #expect(e.message.contains("unknown notifier kind \"carrier-pigeon\""))
        #expect(e.message.contains("recording"))
    }

    @Test func routeToMissingNotifier() throws {
        let e = try #require(error("""
            endpoints: [{ path: /h, secrets: [x] }]
            notifiers:
              a: { kind: recording }
            routes:
              - events: ["*"]
                notify: [a, b]
            """))
        #expect(e.keyPath == "routes[0].notify[1]")
        #expect(e.line == 6)
        #expect(e.message.contains("no notifier named \"b\""))
    }

    @Test func missingEnvironmentVariable() throws {
        let e = try #require(error("""
            endpoints:
              - path: /h
                secrets: ["${NOPE_NOT_SET}"]
            """))
        #expect(e.keyPath == "endpoints[0].secrets[0]" || e.keyPath == "endpoints[0].secrets")
        #expect(e.line == 3)
        #expect(e.message.contains("NOPE_NOT_SET is not set"))
        let withDefault = error("""
            endpoints:
              - path: /h
                secrets: ["${NOPE_NOT_SET:-fallback}"]
            """)
        #expect(withDefault == nil)
    }

    @Test func wrongTypeInPluginSettings() throws {
        let e = try #require(error("""
            endpoints: [{ path: /h, secrets: [x] }]
            notifiers:
              a:
                kind: recording
                port: eighty
            """))
        #expect(e.keyPath == "notifiers.a.port")
        #expect(e.line == 5)
        #expect(e.message.contains("an integer"))
    }

    @Test func pluginValidationErrorIsLocated() throws {
        let e = try #require(error("""
            endpoints: [{ path: /h, secrets: [x] }]
            notifiers:
              a:
                kind: recording
                port: -1
            """))
        #expect(e.keyPath == "notifiers.a.port")
        #expect(e.line == 5)
        #expect(e.message == "must be positive")
    }

    @Test func badDurationAndBadYAML() throws {
        let d = try #require(error("""
            endpoints: [{ path: /h, secrets: [x], tolerance: soon }]
            """))
        #expect(d.keyPath == "endpoints[0].tolerance")
        #expect(d.line == 1)
        let y = try #require(error("server: [unclosed\nendpoints: x\n"))
        #expect(y.message.hasPrefix("not valid YAML"))
        #expect(y.line != nil)
    }

    @Test func templateThatDoesNotCompile() throws {
        let e = try #require(error("""
            endpoints: [{ path: /h, secrets: [x] }]
            templates:
              broken:
                title: "{{#section}} never closed"
                text: ok
            """))
        #expect(e.keyPath == "templates.broken.title")
        #expect(e.line == 4)
        #expect(e.message.contains("does not compile"))
    }

    @Test func endpointsNeedSecretsAndUniquePaths() throws {
        let noSecret = try #require(error("endpoints: [{ path: /h }]"))
        #expect(noSecret.keyPath == "endpoints[0].secrets")
        let dup = try #require(error("endpoints: [{ path: /h, secrets: [x] }, { path: /h, secrets: [y] }]"))
        #expect(dup.message.contains("already uses /h"))
        let none = try #require(error("server: { port: 80 }"))
        #expect(none.keyPath == "endpoints")
    }

    @Test func secretsFromFiles() throws {
        let dir = Fixtures.tempDir()
        try "from-file\n".write(toFile: "\(dir)/jicoo.secret", atomically: true, encoding: .utf8)
        try "tok-123\n".write(toFile: "\(dir)/token", atomically: true, encoding: .utf8)
        let yaml = """
            endpoints: [{ path: /h, secretsFile: jicoo.secret }]
            notifiers:
              a: { kind: recording, tokenFile: \(dir)/token }
            """
        let config = try ConfigLoader.testing().load(yaml: yaml, file: "x.yaml", baseDirectory: dir)
        #expect(config.endpoints[0].secrets.map { String(decoding: $0.bytes, as: UTF8.self) } == ["from-file"])
        #expect((config.notifiers[0].plugin as? RecordingNotifier)?.settings.token == "tok-123")
        let missing = try #require(error("""
            endpoints: [{ path: /h, secrets: [x] }]
            notifiers:
              a: { kind: recording, tokenFile: /nonexistent/token }
            """))
        #expect(missing.keyPath == "notifiers.a.tokenFile")
        #expect(missing.line == 3)
    }

    @Test func duplicateKindInRegistry() {
        #expect(throws: ConfigError.self) { try PluginRegistry([RecordingNotifier.self, RecordingNotifier.self]) }
    }

    @Test func globsAndDurations() {
        #expect(Glob.matches("*", "anything"))
        #expect(Glob.matches("guest_*", "guest_booked"))
        #expect(!Glob.matches("guest_*", "host_cancelled"))
        #expect(Glob.matches("*_cancelled", "host_cancelled"))
        #expect(Glob.matches("host_?ancelled", "host_cancelled"))
        #expect(!Glob.matches("guest_booked", "guest_booked_x"))
        #expect(Duration.parse("90") == .seconds(90))
        #expect(Duration.parse("500ms") == .milliseconds(500))
        #expect(Duration.parse("5m") == .seconds(300))
        #expect(Duration.parse("7d") == .seconds(604800))
        #expect(Duration.parse("-1s") == nil)
        #expect(Duration.parse("soon") == nil)
        // Past 100 years, or not a number: refused, never an integer overflow.
        #expect(Duration.parse("1e300s") == nil)
        #expect(Duration.parse("99999999999999999999999d") == nil)
        #expect(Duration.parse("nan") == nil)
        #expect(Duration.parse("inf") == nil)
        #expect(Duration.parse("36500d") == .seconds(36500 * 86400))
    }

    /// README's rotation example works while no old secret is set: the empty entry is dropped.
    @Test func emptyOptionalSecretIsDropped() throws {
        let yaml = """
            endpoints:
              - { path: /h, secrets: ["${NEW}", "${OLD:-}"] }
            """
        let config = try ConfigLoader.testing(env: ["NEW": "s3cret-new"]).load(yaml: yaml, file: "herald.yaml")
        #expect(config.endpoints[0].secrets.count == 1)
        let none = try #require(error(yaml, env: [:]))
        #expect(none.message.contains("NEW"))
        let allEmpty = try #require(error("""
            endpoints:
              - { path: /h, secrets: ["${OLD:-}"] }
            """))
        #expect(allEmpty.keyPath == "endpoints[0].secrets")
    }

    /// Numbers in the configuration are checked: absurd durations are a located error.
    @Test func absurdNumbersAreErrorsNotTraps() throws {
        let e = try #require(error("""
            endpoints: [{ path: /h, secrets: [x], tolerance: 1e300s }]
            """))
        #expect(e.keyPath == "endpoints[0].tolerance")
        #expect(e.message.contains("at most 100 years"))
        let r = try #require(error("""
            endpoints: [{ path: /h, secrets: [x] }]
            notifiers:
              desk: { kind: recording, label: x, retry: { maxRetryAfter: 1e30h } }
            """))
        #expect(r.keyPath == "notifiers.desk.retry.maxRetryAfter")
        let s = try #require(error("""
            storage: { deadAfterCrashes: 0 }
            endpoints: [{ path: /h, secrets: [x] }]
            """))
        #expect(s.keyPath == "storage.deadAfterCrashes")
    }

    @Test func routesDeliverOncePerNotifierFirstMatchWins() throws {
        let config = try ConfigLoader.testing(env: ["JICOO_SECRET": "s"]).load(yaml: Self.valid)
        let table = RouteTable(routes: config.routes)
        let booked = try SampleEvents.event("guest_booked"), cancelled = try SampleEvents.event("guest_cancelled")
        #expect(table.targets(for: booked).map(\.notifier) == ["chat", "audit"])
        #expect(table.target(for: booked, notifier: "audit")?.template == "short")
        #expect(table.targets(for: cancelled).map(\.notifier) == ["audit"])
        #expect(table.target(for: cancelled, notifier: "audit")?.locale == .en)
        #expect(try table.targets(for: SampleEvents.genericEvent()).map(\.notifier) == ["audit"])
    }

    /// `herald check -c herald.yaml` printed `././herald-data`.
    @Test func pathsAreNormalised() throws {
        let yaml = "storage: { path: ./herald-data }\nendpoints: [{ path: /h, secrets: [x] }]"
        #expect(try ConfigLoader.testing().load(yaml: yaml, baseDirectory: ".").storage.path == "herald-data")
        #expect(try ConfigLoader.testing().load(yaml: yaml, baseDirectory: "./examples").storage.path == "examples/herald-data")
        #expect(try ConfigLoader.testing().load(yaml: yaml, baseDirectory: "/etc/herald/").storage.path == "/etc/herald/herald-data")
        #expect(PluginContext.resolve("/var//lib/./herald", against: "x") == "/var/lib/herald")
        #expect(PluginContext.resolve("../out.jsonl", against: ".") == "../out.jsonl")
        #expect(PluginContext.resolve(".", against: ".") == ".")
    }
}
