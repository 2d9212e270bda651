import EmailNotifier
import Foundation
import HeraldCore
import Logging

/// `herald-bench smtp PORT [N]`: N booking mails through Herald's SMTP client to the server on
/// 127.0.0.1:PORT, once over one connection one message at a time (the same work as Python's
/// smtplib over one session), once over four pooled connections with eight in flight.
/// Prints `herald_sequential <msg/s>` and `herald_pooled_4 <msg/s>`.
func smtpThroughput(port: Int, count: Int) async throws -> String {
    let body = Data(#"{"event":"guest_booked","createdAt":"2026-11-20T01:15:43.000Z","object":{"uid":"bk_bench","status":"open","timeZone":"Asia/Tokyo","startedAt":"2026-11-27T05:00:00.000Z","endedAt":"2026-11-27T06:00:00.000Z","updatedAt":"2026-11-20T01:15:42.341Z","contact":{"email":"taro.yamada@example.jp","name":"山田 太郎"},"answers":[{"question":"ご相談内容","content":["料金プランについて"]}]}}"#.utf8)
    let event = try EventSource.jicoo.decode(body: body, endpoint: "/hooks/jicoo")
    var rendered = try Renderer().render(event, locale: .ja)
    rendered.html = nil
    let notification = rendered
    func notifier(_ connections: Int) throws -> EmailNotifier {
        let settings = EmailNotifier.Settings(
            host: "127.0.0.1", port: port, security: SMTPSecurity.none, from: "Herald <bot@example.com>",
            to: ["Ops <ops@example.com>"], heloName: "herald.bench", maxConnections: connections)
        return try EmailNotifier(settings: settings, context: PluginContext(
            name: "bench", logger: Logger(label: "bench"), baseDirectory: ".", shared: SharedResources()))
    }
    let sequential = try notifier(1)
    try await sequential.deliver(notification)   // connect and EHLO outside the clock
    let start = ContinuousClock.now
    for _ in 0..<count { try await sequential.deliver(notification) }
    let sequentialRate = Double(count) / (ContinuousClock.now - start).seconds
    await sequential.shutdown()

    let pooled = try notifier(4)
    let pooledStart = ContinuousClock.now
    try await withThrowingTaskGroup(of: Void.self) { group in
        for worker in 0..<8 {
            group.addTask { for _ in stride(from: worker, to: count, by: 8) { try await pooled.deliver(notification) } }
        }
        try await group.waitForAll()
    }
    let pooledRate = Double(count) / (ContinuousClock.now - pooledStart).seconds
    await pooled.shutdown()
    return "herald_sequential \(Int(sequentialRate))\nherald_pooled_4 \(Int(pooledRate))"
}

/// Runs the SMTP benchmark from the synchronous top level and exits.
func runSMTPBenchmarkIfAsked() {
    let args = Array(CommandLine.arguments.dropFirst())
    guard args.first == "smtp" else { return }
    guard args.count >= 2, let port = Int(args[1]) else {
        FileHandle.standardError.write(Data("usage: herald-bench smtp PORT [N]\n".utf8))
        exit(2)
    }
    let count = args.count > 2 ? Int(args[2]) ?? 2000 : 2000
    printAndExit { try await smtpThroughput(port: port, count: count) }
}

/// Runs `work` from the synchronous top level, prints what it returns (or its error) and
/// exits with 0 (or 1).
func printAndExit(_ work: @escaping @Sendable () async throws -> String) -> Never {
    let done = DispatchSemaphore(value: 0)
    let result = ResultBox()
    Task {
        do { result.text = try await work() } catch { result.text = "error: \(error)" }
        done.signal()
    }
    done.wait()
    print(result.text)
    exit(result.text.hasPrefix("error") ? 1 : 0)
}

final class ResultBox: @unchecked Sendable {
    // Written by one task before the semaphore is signalled, read after the wait.
    var text = ""
}
