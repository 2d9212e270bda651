import Foundation
import HeraldTesting

/// Debian's aiosmtpd, through `Tests/Support/smtp_server.py`, recording what it receives.
final class SMTPServerProcess: Sendable {
    let process: Process
    let port: Int
    let outFile: String
    private let stdin: Pipe

    init(port: Int = 0, arguments: [String] = []) async throws {
        outFile = tempDir() + "/mail.jsonl"
        let helper = try await SupportScript(
            "smtp_server.py", arguments: ["--out", outFile, "--port", String(port)] + arguments)
        let p = helper.process
        process = p
        stdin = helper.input
        let text = helper.firstLine
        guard let line = text.split(separator: "\n").first, line.hasPrefix("PORT "), let n = Int(line.dropFirst(5)) else {
            p.terminate()
            throw HeraldProcessError(message: "smtp_server.py did not start (is python3-aiosmtpd installed?): \(text)")
        }
        self.port = n
    }

    /// Messages received so far: envelope, decoded headers and MIME parts.
    var messages: [[String: Any]] { jsonLines(outFile) }

    func stop() {
        try? stdin.fileHandleForWriting.close()
        process.terminate()
    }

    deinit { if process.isRunning { process.terminate() } }
}

/// A Python script of `Tests/Support` started with its standard input and output on pipes,
/// once it has printed its first line (how each says it is ready, and on which port) or
/// exited, or 20 s have passed (then it is terminated).
struct SupportScript {
    let process: Process
    let input: Pipe
    let output: Pipe
    /// What the script printed before its first newline (with it), or until it stopped.
    let firstLine: String

    init(_ name: String, arguments: [String]) async throws {
        let script = HeraldProcess.repoRoot.appendingPathComponent("Tests/Support/\(name)").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = [script] + arguments
        let out = Pipe()
        let input = Pipe()
        p.standardOutput = out
        p.standardInput = input
        p.standardError = FileHandle.nullDevice
        let text = try await ChildProcess.start(p, output: out)
        process = p
        self.input = input
        output = out
        firstLine = text
    }
}
