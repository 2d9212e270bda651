import Foundation
import HeraldCore
import HeraldPostgres
import Logging
import PostgresNIO
import Testing

/// The PostgreSQL server the tests use: `scripts/test-postgres.sh` (and `.ci/run`, through it)
/// starts a throwaway one and sets `HERALD_TEST_POSTGRES_URL`.
///
/// Without it, tests that need the server are skipped locally with a message that says so,
/// and fail under `CI=true`: CI must never pass by not testing.
enum TestPostgres {
    static let environment = ProcessInfo.processInfo.environment
    static let urlText = environment["HERALD_TEST_POSTGRES_URL"]
    static let tlsURLText = environment["HERALD_TEST_POSTGRES_TLS_URL"]
    static let isCI = environment["CI"] == "true"
    /// How long a test journal waits for the server: new connections (TLS, SCRAM) in a debug
    /// build on a loaded machine take seconds, and no test here is about that timeout.
    static let timeout: Duration = .seconds(30)
    static let missing = "needs PostgreSQL: HERALD_TEST_POSTGRES_URL is not set (run the tests through scripts/test-postgres.sh)"

    /// Enables a test when the server is there, or under CI (where ``url()`` then fails it).
    static var enabled: Bool { urlText != nil || isCI }

    /// The server's URL, or a recorded failure.
    static func url() throws -> PostgresURL {
        guard let urlText else {
            Issue.record(Comment(rawValue: missing))
            throw Missing()
        }
        return try PostgresURL(parsing: urlText)
    }

    struct Missing: Error, CustomStringConvertible { var description: String { TestPostgres.missing } }

    /// A journal on a new database of the test server, for a fixture that lives as long as a
    /// test: the pool runs in a task of its own, cancelled when the fixture goes away (the
    /// conformance suite's fixtures are values made before the test body, so there is no
    /// scope to run the pool in a task group). The database stays until the server is removed.
    final class Database: Sendable {
        let journal: PostgresJournal
        private let pool: Task<Void, Never>

        init(clock: @escaping @Sendable () -> Date, ttl: Duration) async throws {
            var url = try TestPostgres.url()
            url.database = TestPostgres.newDatabaseName()
            try await TestPostgres.admin(try TestPostgres.url(), "CREATE DATABASE \(url.database)")
            let journal = try PostgresJournal(url: url, poolSize: 4, dedupeTTL: ttl, operationTimeout: TestPostgres.timeout, clock: clock)
            self.journal = journal
            pool = Task { await journal.run() }
            do { try await journal.migrate() } catch {
                pool.cancel()
                throw error
            }
        }

        deinit { pool.cancel() }
    }

    static func newDatabaseName() -> String {
        "herald_test_\(UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20))"
    }

    /// A new, empty database on the test server, dropped after `body`.
    static func withDatabase<R: Sendable>(_ body: (PostgresURL) async throws -> R) async throws -> R {
        let server = try url()
        let name = newDatabaseName()
        try await admin(server, "CREATE DATABASE \(name)")
        var url = server
        url.database = name
        do {
            let result = try await body(url)
            try await admin(server, "DROP DATABASE \(name) WITH (FORCE)")
            return result
        } catch {
            try? await admin(server, "DROP DATABASE \(name) WITH (FORCE)")
            throw error
        }
    }

    /// Runs statements on the test server's own database, outside any journal.
    static func admin(_ url: PostgresURL, _ sql: String...) async throws {
        let journal = try PostgresJournal(url: url, poolSize: 1, operationTimeout: TestPostgres.timeout)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await journal.run() }
            defer { group.cancelAll() }
            for statement in sql { try await journal.execute(statement) }
        }
    }

    /// A journal on `url` with its pool running and its schema migrated, for `body`.
    static func withJournal<R: Sendable>(_ url: PostgresURL, clock: @escaping @Sendable () -> Date = { Date() },
                                         ttl: Duration = .seconds(60),
                                         _ body: (PostgresJournal) async throws -> R) async throws -> R {
        let journal = try PostgresJournal(url: url, poolSize: 4, dedupeTTL: ttl, operationTimeout: TestPostgres.timeout, clock: clock)
        return try await PostgresJournal.withJournal(journal, body: body)
    }
}
