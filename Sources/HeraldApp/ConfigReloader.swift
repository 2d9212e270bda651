import Foundation
import HeraldCore
import Logging
import Metrics
import ServiceLifecycle
import UnixSignals

/// Reloads the configuration when Herald gets SIGHUP (`systemctl reload herald`).
///
/// Each reload reads the same file again (and the secret files it names), validates it
/// exactly as startup does, creating every plugin with the same ``SharedResources``, and
/// hands it to ``Pipeline/reload(to:services:)``, which applies it atomically or refuses it
/// as a whole. Reloads run one after another: a SIGHUP that arrives during a reload is
/// handled after it. Once graceful shutdown begins the reloader stops, and later SIGHUPs are
/// ignored.
struct ConfigReloader: Service, CustomStringConvertible {
    /// SIGHUP, trapped before the server starts listening so that an early signal cannot
    /// terminate the process.
    let signals: UnixSignalsSequence
    let file: String
    /// Loads the file as startup did: same shared resources, same command-line overrides.
    let load: @Sendable () throws(ConfigError) -> HeraldConfig
    let pipeline: Pipeline
    let plugins: PluginServices
    let shared: SharedResources
    let metrics: ReloadMetrics
    let logger: Logger

    /// How ServiceLifecycle's logs name it.
    var description: String { "ConfigReloader(\(file))" }

    func run() async throws {
        var sharedRunning = shared.all.count
        for await _ in signals.cancelOnGracefulShutdown() {
            await reload(sharedRunning: &sharedRunning)
        }
    }

    /// One reload: load, validate, apply; logs and counts the result. Returns whether the
    /// new configuration is live.
    @discardableResult
    func reload(sharedRunning: inout Int) async -> Bool {
        logger.info("SIGHUP: reloading the configuration", metadata: ["config": .string(file)])
        let loaded: Result<HeraldConfig, ConfigError>
        do { loaded = .success(try load()) } catch { loaded = .failure(error) }
        // Plugins may have created shared objects (a first HTTP client) even if the load
        // failed later; those that are services must run like the ones created at start.
        await startSharedServices(from: &sharedRunning)
        let config: HeraldConfig
        switch loaded {
        case .success(let value): config = value
        case .failure(let error): return failed(error.description)
        }
        let changes: ConfigChanges
        do {
            changes = try await pipeline.reload(to: config, services: plugins)
        } catch {
            return failed(error.description)
        }
        LogSetup.setLevel(config.log.level)
        metrics.succeeded()
        logger.notice("configuration reloaded: \(changes)", metadata: ["config": .string(file)])
        return true
    }

    private func failed(_ reason: String) -> Bool {
        metrics.failed()
        logger.error("configuration reload failed, the previous configuration stays in use: \(reason)",
                     metadata: ["config": .string(file)])
        return false
    }

    private func startSharedServices(from running: inout Int) async {
        let all = shared.all
        guard all.count > running else { return }
        var services: [String: any Service] = [:]
        for index in running..<all.count {
            if let service = all[index] as? any Service { services["shared.\(index)"] = service }
        }
        running = all.count
        guard !services.isEmpty else { return }
        do {
            _ = try await plugins.replace([], with: services)
        } catch {
            logger.warning("cannot start a shared plugin service: \(error)")
        }
    }
}

/// The reload metrics, named like Prometheus's own:
/// `herald_config_reloads_total{result="success"|"failure"}`,
/// `herald_config_last_reload_successful` (1 or 0) and
/// `herald_config_last_reload_success_timestamp_seconds`.
struct ReloadMetrics: Sendable {
    private var success: Counter { Counter(label: "herald_config_reloads_total", dimensions: [("result", "success")]) }
    private var failure: Counter { Counter(label: "herald_config_reloads_total", dimensions: [("result", "failure")]) }
    private var lastSuccessful: Gauge { Gauge(label: "herald_config_last_reload_successful") }
    private var lastSuccessTime: Gauge { Gauge(label: "herald_config_last_reload_success_timestamp_seconds") }

    /// The configuration loaded at start counts as the first successful load; both counters
    /// are exposed from the start, at 0.
    func started() {
        _ = success
        _ = failure
        lastSuccessful.record(1)
        lastSuccessTime.record(Date().timeIntervalSince1970)
    }

    func succeeded() {
        success.increment()
        lastSuccessful.record(1)
        lastSuccessTime.record(Date().timeIntervalSince1970)
    }

    func failed() {
        failure.increment()
        lastSuccessful.record(0)
    }
}
