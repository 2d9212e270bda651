import Foundation

/// Debian's aiosmtpd, through `Tests/Support/smtp_server.py`, recording what it receives.
final class SMTPServerProcess: Sendable {
    let process: Process
    let port: Int
    let outFile: String
    private let stdin: Pipe

    init(port: Int = 0, arguments: [String] = []) throws {
        let script = HeraldProcess.repoRoot.appendingPathComponent("Tests/Support/smtp_server.py").path
        outFile = tempDir() + "/mail.jsonl"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = [script, "--out", outFile, "--port", String(port)] + arguments
        let out = Pipe()
        let input = Pipe()
        p.standardOutput = out
        p.standardInput = input
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        stdin = input
        var text = ""
        let deadline = Date().addingTimeInterval(20)
        while !text.contains("\n"), Date() < deadline, p.isRunning {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
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
