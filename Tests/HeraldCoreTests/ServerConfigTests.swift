import Testing
@testable import HeraldCore

/// `server:` limits: read, checked, defaulted, and refused by a reload.
@Suite("Server configuration")
struct ServerConfigTests {
    static let rest = """
        storage: { memory: true }
        endpoints: [{ path: /hooks/jicoo, secrets: [test-secret] }]
        """

    func load(_ server: String) throws -> HeraldConfig.Server {
        try ConfigLoader.testing().load(yaml: "server: { \(server) }\n" + Self.rest).server
    }

    func error(_ server: String) -> ConfigError? {
        do { _ = try load(server); return nil } catch let error as ConfigError { return error } catch { return nil }
    }

    @Test func limitsAreReadWithDefaults() throws {
        let defaults = try load("port: 8080")
        #expect(defaults.headerTimeout == .seconds(10))
        #expect(defaults.bodyTimeout == .seconds(30))
        #expect(defaults.idleTimeout == .seconds(60))
        #expect(defaults.maxConnections == 4096)
        #expect(defaults.maxBodyBytesInFlight == 64 << 20)
        let set = try load("headerTimeout: 2s, bodyTimeout: 500ms, idleTimeout: 5m, maxConnections: 10, maxBodyBytesInFlight: 2_000_000")
        #expect(set.headerTimeout == .seconds(2))
        #expect(set.bodyTimeout == .milliseconds(500))
        #expect(set.idleTimeout == .seconds(300))
        #expect(set.maxConnections == 10)
        #expect(set.maxBodyBytesInFlight == 2_000_000)
        // Unset, the budget grows to fit the largest body.
        #expect(try load("maxBodyBytes: 100000000").maxBodyBytesInFlight == 100_000_000)
    }

    @Test func badLimitsAreRefusedWithTheKey() throws {
        let zero = try #require(error("headerTimeout: 0s"))
        #expect(zero.keyPath == "server.headerTimeout")
        #expect(zero.message.contains("more than 0"))
        #expect(try #require(error("maxConnections: 0")).keyPath == "server.maxConnections")
        #expect(try #require(error("idleTimeout: soon")).keyPath == "server.idleTimeout")
        let small = try #require(error("maxBodyBytes: 65536, maxBodyBytesInFlight: 4096"))
        #expect(small.keyPath == "server.maxBodyBytesInFlight")
        #expect(small.message.contains("server.maxBodyBytes"))
    }

    @Test func reloadRefusesChangedLimits() async throws {
        let routes = "  - { events: [\"*\"], notify: [fast] }"
        let notifiers = "  fast: { kind: recording, label: fast }"
        let h = try await ReloadHarness("server: { headerTimeout: 10s }\n" + ReloadHarness.yaml(notifiers: notifiers, routes: routes))
        await #expect(throws: ReloadError(reasons: [
            "server.bodyTimeout changed: restart Herald to apply",
            "server.maxConnections changed: restart Herald to apply",
        ])) {
            try await h.reload("server: { headerTimeout: 10s, bodyTimeout: 5s, maxConnections: 9 }\n"
                               + ReloadHarness.yaml(notifiers: notifiers, routes: routes))
        }
    }
}
