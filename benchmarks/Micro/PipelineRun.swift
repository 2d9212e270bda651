import FileNotifier
import Foundation
import HeraldCore
import Logging

/// `herald-bench pipeline [--memory] [N] [C] [P]`: N signed 1 KB Jicoo bodies through Herald's whole
/// path without HTTP (verify, decode, route, journal append with fsync, publish, dispatcher,
/// render, the file notifier's line, the outcome write), C requests at a time, with P bodies
/// signed beforehand (N by default). Prints the
/// process's CPU time per request, from the first request until every line is written.
///
/// It exists for instruction counts: under `valgrind --tool=callgrind` (the full server does
/// not run there) the difference between two runs of different N is the cost of N requests,
/// the same on every run, where CPU time on a shared machine moves by 20-30 %.
func pipelineRun(count: Int, concurrency: Int, memory: Bool, prepared: Int) async throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("herald-bench-\(getpid())").path
    try? FileManager.default.removeItem(atPath: dir)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    // BENCH_KEEP=1 leaves the work directory behind, with a copy of the journal and its WAL
    // taken before the journal closes (closing checkpoints the WAL and deletes it), for
    // benchmarks/wal_pages.py.
    let keep = ProcessInfo.processInfo.environment["BENCH_KEEP"] == "1"
    defer { if !keep { try? FileManager.default.removeItem(atPath: dir) } }
    let secret = "bench-secret-0123456789abcdef"
    let yaml = """
        storage: { path: \(dir)/journal }
        endpoints: [{ path: /hooks/jicoo, source: jicoo, secrets: [\(secret)] }]
        notifiers:
          audit: { kind: file, path: \(dir)/out.jsonl, fsync: false }
        routes:
          - { events: ["*"], notify: [audit] }
        """
    var logger = Logger(label: "herald")
    logger.logLevel = .warning
    let config = try ConfigLoader(registry: PluginRegistry([FileNotifier.self]), logger: logger).load(yaml: yaml)
    let journal: any Journal = memory ? MemoryJournal() : try SQLiteJournal(directory: "\(dir)/journal", dedupeTTL: .seconds(86400))
    let pipeline = try await Pipeline(config: config, journal: journal, logger: logger)
    let scheme = JicooSignature(secrets: [Secret(secret)])
    // `prepared` bodies are signed whatever `count` is, so that two runs with the same
    // `prepared` differ only by the requests sent.
    let requests: [(Data, String)] = (0..<max(count, prepared)).map { i in
        let data = body(uid: String(format: "bk_pipe_%08d", i))
        return (data, scheme.sign(body: data, timestamp: Int64(Date().timeIntervalSince1970), id: "")[0].value)
    }
    let cpu0 = cpuNanoseconds()
    let wall0 = wallNanoseconds()
    try await withThrowingTaskGroup(of: Void.self) { group in
        for dispatcher in pipeline.dispatchers { group.addTask { try await dispatcher.run() } }
        try await withThrowingTaskGroup(of: Void.self) { senders in
            for worker in 0..<concurrency {
                senders.addTask {
                    for i in stride(from: worker, to: count, by: concurrency) {
                        let (data, signature) = requests[i]
                        let outcome = await pipeline.receive(path: "/hooks/jicoo", body: data, header: {
                            $0 == JicooSignature.headerName ? signature : nil
                        })
                        guard case .accepted = outcome else { throw BenchError("request \(i): \(outcome)") }
                    }
                }
            }
            try await senders.waitForAll()
        }
        // Every delivery written and its outcome recorded (a benchmark may wait this way).
        while pipeline.undeliveredCount > 0 { try await Task.sleep(for: .milliseconds(1)) }
        group.cancelAll()
    }
    let cpu = (cpuNanoseconds() - cpu0) / Double(count) / 1000
    let wall = (wallNanoseconds() - wall0) / Double(count) / 1000
    if keep && !memory {
        try FileManager.default.createDirectory(atPath: "\(dir)/kept", withIntermediateDirectories: true)
        for name in ["journal.sqlite", "journal.sqlite-wal"] {
            try FileManager.default.copyItem(atPath: "\(dir)/journal/\(name)", toPath: "\(dir)/kept/\(name)")
        }
    }
    return String(format: #"{"name":"pipeline_%@","requests":%d,"concurrency":%d,"cpu_us_per_request":%.1f,"wall_us_per_request":%.1f}"#,
                  memory ? "memory" : "sqlite", count, concurrency, cpu, wall)
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func runPipelineBenchmarkIfAsked() {
    var args = Array(CommandLine.arguments.dropFirst())
    guard args.first == "pipeline" else { return }
    args.removeFirst()
    let memory = args.contains("--memory")
    let numbers = args.filter { !$0.hasPrefix("--") }.compactMap(Int.init)
    let count = numbers.first ?? 20_000
    let concurrency = numbers.count > 1 ? numbers[1] : 50
    let prepared = numbers.count > 2 ? numbers[2] : count
    printAndExit { try await pipelineRun(count: count, concurrency: concurrency, memory: memory, prepared: prepared) }
}
