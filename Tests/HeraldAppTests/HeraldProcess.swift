import AsyncHTTPClient
import Foundation
import HeraldCore
import HeraldTesting
import NIOCore
import Synchronization

/// The real `herald` binary, started as a user would, on a free loopback port.
final class HeraldProcess: Sendable {
    static let repoRoot = SharedVectors.repositoryRoot
    static let sharedVectors = SharedVectors.directory

    /// The `herald` executable next to the test bundle.
    static var binary: String { executable("herald") }

    /// An executable product of this package, found in the build directory that holds the
    /// test bundle (never derived from the repository's folder name).
    static func executable(_ name: String) -> String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [dir, dir.deletingLastPathComponent()] {
            let path = candidate.appendingPathComponent(name).path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return repoRoot.appendingPathComponent(".build/debug/\(name)").path
    }

    let process: Process
    private let watch = ProcessWatch()
    let port: Int

    /// Starts `herald serve --config <config> --listen 127.0.0.1:0` and waits until it listens:
    /// woken by its "listening" line or by its exit, whichever comes first, within 30 s.
    init(config: String, environment: [String: String] = [:], extraArguments: [String] = [],
         binary: String = HeraldProcess.binary) async throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = ["serve", "--config", config, "--listen", "127.0.0.1:0"] + extraArguments
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, b in b }
        let pipe = Pipe()
        p.standardError = pipe
        p.standardOutput = pipe
        process = p
        p.terminationHandler = { [watch] _ in watch.exited() }
        try ChildProcess.launch(p)
        watch.read(pipe.fileHandleForReading)
        guard let found = await watch.port(within: .seconds(30)) else {
            p.terminate()
            throw HeraldProcessError(message: "herald did not start: \(watch.text)")
        }
        port = found
    }

    var log: String { watch.text }
    var url: String { "http://127.0.0.1:\(port)" }

    /// Sends SIGTERM and waits for the exit status (woken by the exit itself).
    func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(20)) async throws -> Int32 {
        kill(process.processIdentifier, signal)
        guard await watch.exit(within: timeout) else {
            kill(process.processIdentifier, SIGKILL)
            throw HeraldProcessError(message: "herald did not exit within \(timeout)")
        }
        return process.terminationStatus
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}

struct HeraldProcessError: Error, CustomStringConvertible { let message: String; var description: String { message } }

/// Posts a body signed the Jicoo way, as Jicoo would.
func postSigned(_ url: String, body: Data, secret: String, timestamp: Int64 = Int64(Date().timeIntervalSince1970),
                timeout: TimeAmount = .seconds(30)) async throws -> (Int, String) {
    var request = HTTPClientRequest(url: url)
    request.method = .POST
    request.headers.add(name: "Content-Type", value: "application/json")
    for h in JicooSignature(secrets: [Secret(secret)]).sign(body: body, timestamp: timestamp, id: "") {
        request.headers.add(name: h.name, value: h.value)
    }
    request.body = .bytes(ByteBuffer(bytes: body))
    let response = try await HTTPClient.shared.execute(request, timeout: timeout)
    let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
    return (Int(response.status.code), text)
}

/// Runs a `herald` command to its end: exit status and what it printed (stdout and stderr).
func runHerald(_ arguments: [String], in directory: String? = nil, environment: [String: String] = [:],
               binary: String = HeraldProcess.binary) async throws -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: binary)
    p.arguments = arguments
    if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, b in b } }
    if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    let (status, data) = try await ChildProcess.run(p, output: out)
    return (status, String(decoding: data, as: UTF8.self))
}

func tempDir() -> String {
    let path = NSTemporaryDirectory() + "herald-app-" + UUID().uuidString
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func jsonLines(_ path: String) -> [[String: Any]] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
    return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
}

func waitUntil(_ timeout: Duration = .seconds(15), _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(25))
    }
    return try await condition()
}

/// What a served `herald` printed, collected as it arrives, and the two moments a test waits
/// for: the port in its "listening" line, and its exit. Each wait is resumed by the pipe's or
/// the process's handler, or by its time limit, whichever comes first.
final class ProcessWatch: Sendable {
    private struct State {
        var text = ""
        var port: Int?
        var exited = false
        var portWaiter: CheckedContinuation<Int?, Never>?
        var exitWaiter: CheckedContinuation<Bool, Never>?
    }
    private let state = Mutex(State())

    var text: String { state.withLock { $0.text } }

    /// Reads `output` on a thread of its own until every writer has closed it, appending what
    /// arrives. The thread holds the handle, so its descriptor stays open while it reads.
    ///
    /// Not `readabilityHandler`: that is a dispatch read source, and on Linux libdispatch can
    /// free the registration of one such source while epoll still reports it when others are
    /// made and cancelled at the same moment (swift-corelibs-libdispatch issue 949). Its
    /// manager thread then crashed the whole test run, right as the crash-recovery test's
    /// two servers were released and the next test's server started.
    func read(_ output: FileHandle) {
        Thread.detachNewThread { [self] in
            let fd = output.fileDescriptor
            let size = 16_384
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 1)
            defer { buffer.deallocate() }
            while true {
                let count = Glibc.read(fd, buffer, size)
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { break }
                append(Data(bytes: buffer, count: count))
            }
            withExtendedLifetime(output) {}
        }
    }

    /// More output. The first "listening" line gives the port.
    func append(_ data: Data) {
        let waiter = state.withLock { s -> (CheckedContinuation<Int?, Never>, Int)? in
            s.text += String(decoding: data, as: UTF8.self)
            guard s.port == nil, let match = s.text.firstMatch(of: /listening on http:\/\/127\.0\.0\.1:(\d+)/),
                  let port = Int(match.1) else { return nil }
            s.port = port
            defer { s.portWaiter = nil }
            return s.portWaiter.map { ($0, port) }
        }
        if let (continuation, port) = waiter { continuation.resume(returning: port) }
    }

    /// From the process's termination handler.
    func exited() {
        let (portWaiter, exitWaiter) = state.withLock { s in
            s.exited = true
            defer { s.portWaiter = nil; s.exitWaiter = nil }
            return (s.portWaiter, s.exitWaiter)
        }
        portWaiter?.resume(returning: nil)
        exitWaiter?.resume(returning: true)
    }

    /// The port, or nil if the process exits first or `limit` passes.
    func port(within limit: Duration) async -> Int? {
        await first(within: limit, timeout: nil) { continuation in
            state.withLock { s -> Int?? in
                if let port = s.port { return .some(port) }
                if s.exited { return .some(nil) }
                s.portWaiter = continuation
                return nil
            }
        } expire: {
            self.state.withLock { s in defer { s.portWaiter = nil }; return s.portWaiter }
        }
    }

    /// Whether the process exited within `limit`.
    func exit(within limit: Duration) async -> Bool {
        await first(within: limit, timeout: false) { continuation in
            state.withLock { s -> Bool? in
                if s.exited { return true }
                s.exitWaiter = continuation
                return nil
            }
        } expire: {
            self.state.withLock { s in defer { s.exitWaiter = nil }; return s.exitWaiter }
        }
    }

    /// Waits for a continuation that `install` stores (or answers at once). Once it is stored,
    /// a timer races the handlers: at `limit` it takes the continuation back with `expire`
    /// and resumes it with `timeout`, unless a handler took it first.
    private func first<R: Sendable>(within limit: Duration, timeout: R,
                                    install: (CheckedContinuation<R, Never>) -> R?,
                                    expire: @escaping @Sendable () -> CheckedContinuation<R, Never>?) async -> R {
        await withTaskGroup(of: Void.self) { group in
            let answer = await withCheckedContinuation { continuation in
                if let now = install(continuation) {
                    continuation.resume(returning: now)
                } else {
                    group.addTask {
                        try? await Task.sleep(for: limit)
                        expire()?.resume(returning: timeout)
                    }
                }
            }
            group.cancelAll()
            return answer
        }
    }
}
