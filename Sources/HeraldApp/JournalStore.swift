import ArgumentParser
import Foundation
import HeraldCore
import HeraldPostgres
import Logging

/// The journal a configuration names, open for as long as a command needs it: SQLite under
/// `storage.path` (the default), memory, or PostgreSQL (`storage.postgres`), whose connection
/// pool runs only inside ``withJournal(_:logger:createIfMissing:_:)``.
enum JournalStore {
    /// Whether the journal's database answers, for `/readyz`; nil for journals in this process.
    typealias Probe = @Sendable () async -> Bool

    /// Runs `body` with the journal open.
    ///
    /// - Parameter createIfMissing: true for `herald serve` (creates the SQLite file, or
    ///   creates and upgrades the PostgreSQL schema); false for the tools, which refuse a
    ///   journal that is not there rather than creating an empty one in the wrong place.
    static func withJournal<R: Sendable>(_ storage: HeraldConfig.Storage, logger: Logger, createIfMissing: Bool = true,
                                         _ body: (any Journal, Probe?) async throws -> R) async throws -> R {
        if let postgres = storage.postgres {
            let journal = try PostgresJournal(url: postgres.url, poolSize: postgres.poolSize, dedupeTTL: storage.dedupeTTL,
                                              logger: Logger(label: "herald.journal"))
            return try await PostgresJournal.withJournal(journal, migrate: createIfMissing) { journal in
                try await body(journal, { await journal.isReachable(within: .seconds(2)) })
            }
        }
        guard let path = storage.path else {
            logger.warning("storage.memory is on: accepted events are lost if Herald stops before delivering them")
            return try await body(MemoryJournal(dedupeTTL: storage.dedupeTTL), nil)
        }
        if createIfMissing {
            return try await body(try SQLiteJournal(directory: path, dedupeTTL: storage.dedupeTTL, groupCommit: storage.groupCommit), nil)
        }
        return try await body(try SQLiteJournal.openExisting(directory: path, dedupeTTL: storage.dedupeTTL), nil)
    }

    /// The `storage:` section of the configuration file, for the tools: they need neither the
    /// webhook secrets nor the notifiers' credentials. Prints the error and exits 1 when it is wrong.
    static func storage(_ options: ConfigOption) throws -> HeraldConfig.Storage {
        guard FileManager.default.fileExists(atPath: options.path) else {
            throw ValidationError("no configuration file at \(options.path); pass --config")
        }
        do {
            return try ConfigLoader(registry: try Herald.registry()).loadStorage(file: options.path)
        } catch {
            FileHandle.standardError.write(Data("herald: configuration error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// Runs `body` with the journal of a configuration, for the tools that read or change it
    /// while servers may be running. A journal that cannot be opened is one line on stderr and
    /// exit 1.
    static func withJournalForCLI<R: Sendable>(_ options: ConfigOption, _ body: (any Journal) async throws -> R) async throws -> R {
        let storage = try storage(options)
        guard storage.path != nil || storage.postgres != nil else {
            throw ValidationError("\(options.path) keeps its journal in memory (storage.memory); there is nothing to inspect")
        }
        do {
            return try await withJournal(storage, logger: Logger(label: "herald.cli"), createIfMissing: false) { journal, _ in
                try await body(journal)
            }
        } catch let error as JournalError {
            FileHandle.standardError.write(Data("herald: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
