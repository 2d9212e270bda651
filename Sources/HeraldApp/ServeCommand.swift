import ArgumentParser
import Foundation
import HeraldCore
import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle
import UnixSignals

/// `herald serve`: the long-running bot.
///
/// One `ServiceGroup` owns everything. Services stop in reverse order of start: readiness
/// goes off, the reloader stops listening for SIGHUP, the HTTP server stops accepting, then
/// each dispatcher finishes (or parks) its deliveries, then plugins and shared clients close.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", abstract: "Run the webhook server and the notifiers.")

    @OptionGroup var options: ConfigOption
    @Option(help: "Listen on host:port instead of server.listen (port 0 picks a free port).")
    var listen: String?
    @Option(help: "How long running deliveries may take to finish on shutdown, in seconds.")
    var shutdownGrace: Int = 10

    func run() async throws {
        let shared = SharedResources()
        let listenOverride = try parsedListen()
        var config = try options.load(shared: shared)
        if let (host, port) = listenOverride {
            config.server.host = host
            config.server.port = port
        }
        LogSetup.bootstrap(config.log)
        let logger = Logger(label: "herald")
        keepLargeBuffersOutOfTheHeap()
        if let files = raiseOpenFilesLimit() {
            logger.info("open files limit \(files.after)\(files.after == files.before ? "" : " (raised from \(files.before))")",
                        metadata: ["maxConnections": .stringConvertible(config.server.maxConnections)])
            // The journal, plugins and outbound deliveries need descriptors too.
            if files.after < UInt64(config.server.maxConnections) + 64 {
                logger.notice("""
                    server.maxConnections \(config.server.maxConnections) is near or above the open files limit \(files.after): \
                    past that, new connections are closed until some close; raise LimitNOFILE or lower server.maxConnections
                    """)
            }
        }
        let registry = PrometheusCollectorRegistry()
        var metrics = PrometheusMetricsFactory(registry: registry)
        // Commits take about a millisecond (one fsync); the default buckets start at 5 ms.
        metrics.durationHistogramBuckets["herald_journal_commit_duration_seconds"] =
            [0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1].map { .milliseconds($0 * 1000) }
        MetricsSystem.bootstrap(metrics)
        let reloadMetrics = ReloadMetrics()
        reloadMetrics.started()

        // The journal stays open (for PostgreSQL: its pool runs) until every service has stopped.
        let startConfig = config
        try await JournalStore.withJournal(config.storage, logger: logger) { journal, journalReachable in
            let config = startConfig
            let pipeline = try await Pipeline(config: config, journal: journal, logger: logger,
                                              shutdownGrace: .seconds(shutdownGrace))
            let readiness = WebhookServer.Readiness()
            let router = WebhookServer.router(pipeline: pipeline, readiness: readiness, metrics: {
                Gauge(label: "herald_undelivered_deliveries").record(pipeline.undeliveredCount)
                for d in pipeline.dispatchers {
                    Gauge(label: "herald_queue_depth", dimensions: [("notifier", d.name)]).record(d.queueDepth)
                }
                return registry.emitToString()
            }, journalReachable: journalReachable)
            let host = config.server.host
            let app = WebhookServer.application(router: router, server: config.server, pipeline: pipeline,
                                                logger: Logger(label: "herald.http")) { channel in
                readiness.set(true)
                let port = channel.localAddress?.port ?? 0
                logger.notice("listening on http://\(host):\(port)", metadata: ["port": .stringConvertible(port)])
            }

            // Trapped before anything listens, so an early SIGHUP cannot end the process.
            let hangups = await UnixSignalsSequence(trapping: .sighup)
            let file = options.path
            let reloader = ConfigReloader(
                signals: hangups, file: file,
                load: { () throws(ConfigError) -> HeraldConfig in
                    var reloaded = try ConfigOption.loadChecked(file: file, shared: shared)
                    if let (host, port) = listenOverride {
                        reloaded.server.host = host
                        reloaded.server.port = port
                    }
                    return reloaded
                },
                pipeline: pipeline, plugins: PluginServices(pluginServices(config), logger: Logger(label: "herald.plugins")),
                shared: shared, metrics: reloadMetrics, logger: Logger(label: "herald.config"))

            var services: [any Service] = shared.all.compactMap { $0 as? any Service }
            services.append(reloader.plugins)
            services += pipeline.dispatchers
            services.append(JournalMaintenance(pipeline: pipeline))
            services.append(AgendaScheduler(pipeline: pipeline))
            services.append(app)
            services.append(reloader)
            services.append(ReadinessService(readiness: readiness))
            let group = ServiceGroup(configuration: .init(
                services: services.map { .init(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
            logger.info("starting", metadata: [
                "config": .string(config.file), "endpoints": .stringConvertible(config.endpoints.count),
                "notifiers": .stringConvertible(config.notifiers.count),
            ])
            do {
                try await group.run()
            } catch let error as IOError where !readiness.hasListened {
                // The server never listened: say so in one line, not as a journal or service error.
                let reason = SystemErrorText.reason(error.errnoCode)
                FileHandle.standardError.write(Data("herald: cannot listen on \(host):\(config.server.port): \(reason)\n".utf8))
                throw ExitCode(1)
            }
            logger.notice("stopped", metadata: ["undelivered": .stringConvertible(pipeline.undeliveredCount)])
        }
    }

    /// `--listen host:port`, which also overrides `server.listen` on every reload.
    func parsedListen() throws -> (host: String, port: Int)? {
        guard let listen else { return nil }
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]) else {
            throw ValidationError("--listen expects host:port, got \(listen)")
        }
        return (String(listen[..<colon]), port)
    }

    /// The plugins that are also a service, by notifier name.
    func pluginServices(_ config: HeraldConfig) -> [String: any Service] {
        var services: [String: any Service] = [:]
        for notifier in config.notifiers {
            if let service = notifier.plugin as? any Service { services[notifier.name] = service }
        }
        return services
    }
}

/// Turns `/readyz` off as soon as shutdown begins (it is the last service, so it stops first).
struct ReadinessService: Service {
    let readiness: WebhookServer.Readiness
    func run() async throws {
        try? await gracefulShutdown()
        readiness.set(false)
    }
}
