import ArgumentParser
import Foundation
import HeraldCore
import HeraldPostgres
import Logging

/// `herald deliveries …`: inspect and retry deliveries in the journal. Safe while the server
/// runs: the journal is SQLite in WAL mode, and the server picks retried deliveries up.
struct DeliveriesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deliveries", abstract: "List, show and retry deliveries in the journal.",
        subcommands: [List.self, Show.self, Retry.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List deliveries, newest first.")
        @OptionGroup var options: ConfigOption
        @Option(help: "pending, leased, delivered, dead or skipped.") var state: String?
        @Option(help: "Only this notifier.") var notifier: String?
        @Option(help: "At most this many rows.") var limit: Int = 50

        func run() async throws {
            let filter = try state.map { s -> DeliveryState in
                guard let st = DeliveryState(rawValue: s) else {
                    throw ValidationError("unknown state \(s); use \(DeliveryState.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                return st
            }
            let query = DeliveryQuery(state: filter, notifier: notifier, limit: limit)
            let rows = try await JournalStore.withJournalForCLI(options) { try await $0.deliveries(query) }
            guard !rows.isEmpty else { print("no deliveries"); return }
            printTable(
                ["ID", "STATE", "NOTIFIER", "EVENT", "NAME", "ATTEMPTS", "DUE", "RECEIVED", "LAST ERROR"],
                rows.map { r in [
                    String(r.id), r.state.rawValue, r.notifier, r.eventID, r.eventName, String(r.attempts),
                    r.dueAt.map(ISO8601.format) ?? "-", ISO8601.format(r.receivedAt), String((r.lastError ?? "").prefix(60)),
                ] })
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show one delivery and its event.")
        @OptionGroup var options: ConfigOption
        @Argument(help: "The delivery id (from `deliveries list`).") var id: Int64

        func run() async throws {
            let id = id
            let (found, event) = try await JournalStore.withJournalForCLI(options) { journal in
                let record = try await journal.delivery(id: id)
                return (record, try await record.asyncMap { try await journal.event(id: $0.eventID) } ?? nil)
            }
            guard let r = found else { throw ValidationError("no delivery \(id)") }
            let rows: [(String, String)] = [
                ("delivery", String(r.id)), ("state", r.state.rawValue), ("notifier", r.notifier),
                ("event", "\(r.eventID) (\(r.eventName))"), ("attempts", String(r.attempts)),
                ("due", r.dueAt.map(ISO8601.format) ?? "-"),
                ("leased by", r.owner.map { "\($0) until \(r.leaseUntil.map(ISO8601.format) ?? "-")" } ?? "-"),
                ("interrupted", String(r.interruptions)), ("received", ISO8601.format(r.receivedAt)),
                ("updated", ISO8601.format(r.updatedAt)), ("last error", r.lastError ?? "-"),
            ]
            for (k, v) in rows { print(k.padding(toLength: 14, withPad: " ", startingAt: 0) + v) }
            if let event {
                print("endpoint      \(event.endpoint)\nbody")
                if let object = try? JSONSerialization.jsonObject(with: event.body),
                   let pretty = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]) {
                    print(String(decoding: pretty, as: UTF8.self))
                } else {
                    print(String(decoding: event.body, as: UTF8.self))
                }
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send dead, skipped (or waiting) deliveries again now.")
        @OptionGroup var options: ConfigOption
        @Argument(help: "Delivery ids.") var ids: [Int64] = []
        @Flag(help: "Retry every dead delivery.") var allDead = false

        func validate() throws {
            if ids.isEmpty == !allDead { throw ValidationError("give delivery ids or --all-dead") }
        }

        func run() async throws {
            let selection: RetrySelection = allDead ? .allDead : .ids(ids)
            let changed = try await JournalStore.withJournalForCLI(options) { try await $0.retry(selection) }
            print("\(changed) deliver\(changed == 1 ? "y" : "ies") queued for a new attempt; the running server sends \(changed == 1 ? "it" : "them") within a second")
        }
    }
}

/// `herald journal prune`: remove finished events older than an age.
struct JournalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "journal", abstract: "Maintain the journal.", subcommands: [Prune.self, Migrate.self, Copy.self])

    struct Prune: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete events whose deliveries are all delivered or dead, older than an age.")
        @OptionGroup var options: ConfigOption
        @Option(help: "An age like 30d, 12h.") var olderThan: String

        func run() async throws {
            guard let age = Duration.parse(olderThan) else { throw ValidationError("--older-than expects an age like 30d or 12h") }
            let cutoff = Date().addingTimeInterval(-age.seconds)
            let removed = try await JournalStore.withJournalForCLI(options) { try await $0.prune(before: cutoff) }
            print("pruned \(removed) event\(removed == 1 ? "" : "s")")
        }
    }
}

extension JournalCommand {
    /// `herald journal migrate`: creates or upgrades the journal's schema and nothing else, so
    /// an upgrade can run once, before the instances of a new version start.
    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create or upgrade the journal's schema (PostgreSQL), then exit.",
            discussion: "herald serve does the same at start; SQLite journals are upgraded when opened.")
        @OptionGroup var options: ConfigOption

        func run() async throws {
            let storage = try JournalStore.storage(options)
            guard let postgres = storage.postgres else {
                guard let path = storage.path else {
                    throw ValidationError("\(options.path) keeps its journal in memory (storage.memory); there is nothing to migrate")
                }
                _ = try SQLiteJournal(directory: path, dedupeTTL: storage.dedupeTTL)
                print("the SQLite journal in \(path) is up to date")
                return
            }
            let journal = try PostgresJournal(url: postgres.url, poolSize: 1, logger: Logger(label: "herald.journal"))
            do {
                let migration = try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { await journal.run() }
                    defer { group.cancelAll() }
                    if let reason = await journal.connectionProblem() { throw reason }
                    return try await journal.migrate()
                }
                print(migration.from == migration.to
                      ? "the journal in \(postgres.url) is at schema version \(migration.to): nothing to do"
                      : "migrated the journal in \(postgres.url) from schema version \(migration.from) to \(migration.to)")
            } catch let error as JournalError {
                FileHandle.standardError.write(Data("herald: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }
}

/// `herald status`: deliveries per notifier and state.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Count deliveries per notifier and state.")
    @OptionGroup var options: ConfigOption

    func run() async throws {
        let counts = try await JournalStore.withJournalForCLI(options) { try await $0.counts() }
        let notifiers = Array(Set(counts.map(\.notifier))).sorted()
        guard !notifiers.isEmpty else { print("the journal is empty"); return }
        let states = DeliveryState.allCases
        var rows = notifiers.map { n in
            [n] + states.map { s in String(counts.first { $0.notifier == n && $0.state == s }?.count ?? 0) }
        }
        rows.append(["total"] + states.map { s in String(counts.filter { $0.state == s }.reduce(0) { $0 + $1.count }) })
        printTable(["NOTIFIER"] + states.map { $0.rawValue.uppercased() }, rows)
    }
}

/// Prints rows as an aligned text table.
func printTable(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            .joined(separator: "  ")
    }
    print(line(header))
    for row in rows { print(line(row)) }
}

extension Optional {
    /// `transform` of the wrapped value, awaited; nil stays nil.
    func asyncMap<T>(_ transform: (Wrapped) async throws -> T) async rethrows -> T? {
        guard let self else { return nil }
        return try await transform(self)
    }
}
