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
    private let output: OutputBuffer
    let port: Int

    /// Starts `herald serve --config <config> --listen 127.0.0.1:0` and waits until it listens.
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
        let sink = OutputBuffer()
        output = sink
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if !data.isEmpty { sink.text.withLock { $0 += String(decoding: data, as: UTF8.self) } }
        }
        try p.run()
        var found = 0
        let deadline = ContinuousClock.now + .seconds(30)
        while found == 0, ContinuousClock.now < deadline, p.isRunning {
            if let match = sink.text.withLock({ $0.firstMatch(of: /listening on http:\/\/127\.0\.0\.1:(\d+)/) }) {
                found = Int(match.1) ?? 0
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        port = found
        if found == 0 {
            p.terminate()
            throw HeraldProcessError(message: "herald did not start: \(sink.text.withLock { $0 })")
        }
    }

    var log: String { output.text.withLock { $0 } }
    var url: String { "http://127.0.0.1:\(port)" }

    /// Sends SIGTERM and waits for the exit status.
    func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(20)) async throws -> Int32 {
        kill(process.processIdentifier, signal)
        let deadline = ContinuousClock.now + timeout
        while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
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

/// What the process printed, collected as it arrives.
final class OutputBuffer: Sendable {
    let text = Mutex<String>("")
}
