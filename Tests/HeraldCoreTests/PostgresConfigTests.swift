import Foundation
import Testing
@testable import HeraldCore

/// `storage.postgres` and the URL it holds: parsed once at load, located errors, and the
/// password never in anything printed.
@Suite("PostgreSQL configuration")
struct PostgresConfigTests {
    static let password = "s3cr3t-p@ss/word"
    static let url = "postgres://herald:s3cr3t-p%40ss%2Fword@db.example.com:6543/journal?sslmode=verify-full&sslrootcert=ca.pem"

    static func storage(_ body: String, env: [String: String] = [:], base: String = "/etc/herald") -> Result<HeraldConfig, ConfigErrors> {
        let yaml = "storage:\n\(body)\nendpoints: [{ path: /h, secrets: [x] }]\n"
        return (try? ConfigLoader.testing(env: env))!.check(yaml: yaml, file: "herald.yaml", baseDirectory: base)
    }

    static func errors(_ body: String, env: [String: String] = [:]) -> [String] {
        guard case .failure(let found) = storage(body, env: env) else { return [] }
        return found.errors.map(\.description)
    }

    @Test func aURLFromTheEnvironmentIsParsedWholeAndPrintsRedacted() throws {
        let config = try Self.storage("  postgres: { url: \"${DATABASE_URL}\", poolSize: 12 }", env: ["DATABASE_URL": Self.url]).get()
        let postgres = try #require(config.storage.postgres)
        #expect(postgres.poolSize == 12)
        let url = postgres.url
        #expect(url.host == "db.example.com" && url.port == 6543 && url.user == "herald" && url.database == "journal")
        #expect(url.password.map { String(decoding: $0.bytes, as: UTF8.self) } == Self.password)
        #expect(url.sslMode == .verifyFull)
        #expect(url.sslRootCert == "/etc/herald/ca.pem")
        #expect(config.storage.summary
            == "postgres://herald:<redacted>@db.example.com:6543/journal?sslmode=verify-full&sslrootcert=/etc/herald/ca.pem (pool 12)")
        for shown in ["\(url)", String(reflecting: url), "\(config.storage)", String(reflecting: config.storage)] {
            #expect(!shown.contains("s3cr3t"))
        }
    }

    @Test func urlFileReadsTheURLFromAFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("herald-pg-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try (Self.url + "\n").write(toFile: directory + "/db-url", atomically: true, encoding: .utf8)
        let config = try Self.storage("  postgres: { urlFile: db-url }", base: directory).get()
        #expect(config.storage.postgres?.url.database == "journal")
        #expect(config.storage.postgres?.poolSize == 8)
    }

    @Test func defaultsFollowLibpq() throws {
        let url = try PostgresURL(parsing: "postgresql://bot@10.0.0.5")
        #expect(url.port == 5432 && url.database == "bot" && url.password == nil && url.sslMode == .prefer && url.sslRootCert == nil)
        let v6 = try PostgresURL(parsing: "postgres://bot:pw@[::1]:5433/db?sslmode=disable")
        #expect(v6.host == "::1" && v6.port == 5433 && v6.sslMode == .disable)
        #expect(v6.description == "postgres://bot:<redacted>@[::1]:5433/db?sslmode=disable")
    }

    @Test(arguments: [
        ("mysql://u:p@h/d", "expected a URL like postgres://"),
        ("postgres://h:5432/d", "names no user"),
        ("postgres://u:pw@:5432/d", "names no host"),
        ("postgres://u:pw@h:99999/d", "port \"99999\" is not a number from 1 to 65535"),
        ("postgres://u:pw@h:x1/d", "port \"x1\" is not a number"),
        ("postgres://u:pw@h/d?sslmode=allow", "allow is not supported: use prefer"),
        ("postgres://u:pw@h/d?sslmode=strict", "sslmode must be one of disable, prefer, require, verify-ca, verify-full"),
        ("postgres://u:pw@h/d?connect_timeout=3", "unknown URL parameter \"connect_timeout\""),
        ("postgres://u:pw@h/d?sslmode=require&sslmode=disable", "sslmode is given twice"),
        ("postgres://u:pw@h/d?sslmode=disable&sslrootcert=ca.pem", "sslmode=disable turns TLS off"),
        ("postgres://u:p%zz@h/d", "password is badly percent-encoded"),
    ])
    func badURLsAreLocatedAndNeverEchoed(url: String, message: String) throws {
        let found = Self.errors("  postgres:\n    url: \"\(url)\"")
        #expect(found.count == 1)
        let line = try #require(found.first)
        #expect(line.hasPrefix("herald.yaml:3:10: storage.postgres.url: "), "\(line)")
        #expect(line.contains(message), "\(line)")
        // Neither the password nor the URL itself is repeated.
        #expect(!line.contains(":pw@") && !line.contains("p%zz"))
    }

    @Test func strictKeysAndOnePlaceForTheJournal() throws {
        #expect(Self.errors("  postgres: { url: \"postgres://u@h/d\", poolsize: 3 }")
            == ["herald.yaml:2:40: storage.postgres.poolsize: unknown key; did you mean \"poolSize\"? (known keys: poolSize, url, urlFile)"])
        #expect(Self.errors("  postgres: { url: \"postgres://u@h/d\", poolSize: 0 }")
            == ["herald.yaml:2:50: storage.postgres.poolSize: must be between 1 and 1000, found 0"])
        #expect(Self.errors("  postgres: { poolSize: 3 }")
            == ["herald.yaml:2:13: storage.postgres: missing url (or urlFile), e.g. url: \"${DATABASE_URL}\" holding postgres://user:password@host:5432/database"])
        #expect(Self.errors("  postgres: { url: \"postgres://u@h/d\", urlFile: /x }")
            == ["herald.yaml:2:40: storage.postgres.urlFile: give either url or urlFile, not both"])
        #expect(Self.errors("  path: ./data\n  postgres: { url: \"postgres://u@h/d\" }")
            == ["herald.yaml:3:3: storage.postgres: give one of storage.path, storage.memory and storage.postgres, not path and postgres"])
        #expect(Self.errors("  postgres: { url: \"${DATABASE_URL}\" }")
            == ["herald.yaml:2:20: storage.postgres.url: environment variable DATABASE_URL is not set"])
    }

    @Test func aChangedDatabaseNeedsARestart() throws {
        let loader = try ConfigLoader.testing()
        let old = try loader.load(yaml: "storage: { postgres: { url: \"postgres://u:a@h/d\" } }\nendpoints: [{ path: /h, secrets: [x] }]")
        let new = try loader.load(yaml: "storage: { postgres: { url: \"postgres://u:b@h/d\" } }\nendpoints: [{ path: /h, secrets: [x] }]")
        let change = ConfigChanges(from: old, to: new)
        #expect(change.needRestart == ["storage.postgres changed: restart Herald to apply"])
    }
}
