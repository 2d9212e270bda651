import Foundation
import Logging
import ServiceLifecycle

/// Keeps the journal bounded and the pipeline's pending count honest.
///
/// Every `interval` it re-reads how many deliveries are undelivered (the CLI may have retried
/// dead ones meanwhile), and once an hour it prunes events whose deliveries are all final and
/// that are older than `storage.retention`, plus expired dedupe keys.
public struct JournalMaintenance: Service {
    let pipeline: Pipeline
    let interval: Duration
    let pruneEvery: Duration
    let logger: Logger

    public init(pipeline: Pipeline, interval: Duration = .seconds(30), pruneEvery: Duration = .seconds(3600),
                logger: Logger = Logger(label: "herald.journal")) {
        self.pipeline = pipeline
        self.interval = interval
        self.pruneEvery = pruneEvery
        self.logger = logger
    }

    public func run() async throws {
        var lastPrune = ContinuousClock.now - pruneEvery
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            do {
                try await pipeline.resyncUndelivered()
                if ContinuousClock.now - lastPrune >= pruneEvery {
                    lastPrune = .now
                    let cutoff = Date().addingTimeInterval(-pipeline.config.storage.retention.seconds)
                    let removed = try await pipeline.journal.prune(before: cutoff)
                    if removed > 0 { logger.info("pruned \(removed) finished events older than \(ISO8601.format(cutoff))") }
                }
            } catch is CancellationError {
                // The service group is stopping (e.g. the server could not listen): not a journal fault.
                return
            } catch {
                if Task.isCancelled { return }
                logger.error("journal maintenance failed: \(error)")
            }
            // Graceful shutdown does not interrupt a plain sleep: cancel it explicitly.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}

extension Pipeline {
    /// Re-reads the number of undelivered deliveries from the journal.
    public func resyncUndelivered() async throws {
        let count = try await journal.undeliveredCount()
        undelivered.value.store(count, ordering: .relaxed)
    }
}
