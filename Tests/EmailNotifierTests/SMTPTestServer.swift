import Foundation
import HeraldCore
import HeraldTesting
import Logging
import Synchronization
import Testing
@testable import EmailNotifier

/// Paths the tests need, found from this file: the repository root and the Python helper
/// under `Tests/Support`.
enum TestPaths {
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let serverScript = repoRoot.appendingPathComponent("Tests/Support/smtp_server.py")
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, made with openssl on first use;
/// the tests trust it through `caFile`.
enum TestCertificate {
    private static let made = Mutex<(cert: String, key: String)?>(nil)

    /// The certificate's and key's paths, or nil if openssl could not make them. Tests asking
    /// at once may each make one; the first made is kept and used by all.
    static func files() async -> (cert: String, key: String)? {
        if let files = made.withLock({ $0 }) { return files }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("herald-smtp-cert-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let cert = dir.appendingPathComponent("cert.pem").path
        let key = dir.appendingPathComponent("key.pem").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = [
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? await ChildProcess.run(process).status) == 0 else { return nil }
        return made.withLock { kept in
            if kept == nil { kept = (cert, key) }
            return kept
        }
    }
}

/// One message as the Python server received and parsed it.
struct ReceivedMessage: Decodable {
    struct Parsed: Decodable {
        var headers: [String: [String]]
        var parts: [Part]
        var defects: [String]
    }
    struct Part: Decodable {
        var type: String
        var params: [String: String]
        var disposition: String?
        var encoding: String?
        var content: String?
    }

    var mailFrom: String
    var mailOptions: [String]
    var rcptTos: [String]
    var raw: String
    var peerPort: Int
    var parsed: Parsed

    /// The first decoded value of a header (lower-case name).
    func header(_ name: String) -> String? { parsed.headers[name]?.first }
    func part(_ type: String) -> Part? { parsed.parts.first { $0.type == type } }
    var rawText: String { String(decoding: Data(base64Encoded: raw) ?? Data(), as: UTF8.self) }
}

/// The aiosmtpd server from `Tests/Support/smtp_server.py`, on a free port of 127.0.0.1.
final class SMTPTestServer {
    let port: Int
    private let process: Process
    private let exit: ChildExit
    private let stdin: Pipe
    private let outFile: URL

    /// Starts the server with extra command-line `arguments` (see the script) and waits for
    /// its port, at most 20 seconds.
    init(_ arguments: [String] = []) async throws {
        outFile = FileManager.default.temporaryDirectory.appendingPathComponent("herald-smtp-\(UUID().uuidString).jsonl")
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [TestPaths.serverScript.path, "--out", outFile.path] + arguments
        stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        exit = ChildExit(of: process)
        let text = try await ChildProcess.start(process, output: stdout)
        let found = text.split(separator: "\n").first(where: { $0.hasPrefix("PORT ") })
            .flatMap { Int($0.dropFirst(5).trimmingCharacters(in: .whitespaces)) }
        guard let found else {
            process.terminate()
            throw ServerError(reason: "smtp_server.py did not report a port (is python3-aiosmtpd installed?)")
        }
        port = found
    }

    struct ServerError: Error { var reason: String }

    /// Every message received so far, oldest first.
    func messages() throws -> [ReceivedMessage] {
        guard let data = try? Data(contentsOf: outFile) else { return [] }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try data.split(separator: UInt8(ascii: "\n")).map { try decoder.decode(ReceivedMessage.self, from: Data($0)) }
    }

    /// The client ports of the connections that ended with QUIT, in order.
    func quits() -> [Int] {
        guard let text = try? String(contentsOfFile: outFile.path + ".quit", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { Int($0) }
    }

    /// Stops the server, waits for it to exit (suspended, holding no thread; killed if it has
    /// not exited within 20 seconds) and removes its output.
    func stop() async {
        try? stdin.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
        if await exit.status(within: .seconds(20)) == nil {
            kill(process.processIdentifier, SIGKILL)
        }
        removeOutput()
    }

    private func removeOutput() {
        try? FileManager.default.removeItem(at: outFile)
        try? FileManager.default.removeItem(atPath: outFile.path + ".quit")
    }

    /// A server not stopped by ``stop()`` is terminated here, without waiting for it.
    deinit {
        if process.isRunning { process.terminate() }
        removeOutput()
    }
}

/// Runs `body` with a server that is stopped afterwards, whatever happens.
func withSMTPServer<T>(_ arguments: [String] = [], _ body: (SMTPTestServer) async throws -> T) async throws -> T {
    let server = try await SMTPTestServer(arguments)
    let result: T
    do {
        result = try await body(server)
    } catch {
        await server.stop()
        throw error
    }
    await server.stop()
    return result
}

/// Arguments for the TLS modes, with the test certificate.
func tlsArguments(_ mode: String) async throws -> [String] {
    let files = try #require(await TestCertificate.files(), "openssl could not make a test certificate")
    return ["--mode", mode, "--cert", files.cert, "--key", files.key]
}

enum Fixtures {
    static func event(_ name: String = "guest_booked") throws -> Event {
        try SampleEvents.event(name)
    }

    static func context() -> PluginContext {
        PluginContext.testing(name: "mail", baseDirectory: "/")
    }

    /// A Japanese booking notification with a line that needs dot-stuffing.
    static func notification(_ eventName: String = "guest_booked", kind: HeraldNotification.Kind = .booked,
                             deliveryKey: String = "evt_test|mail", html: Bool = true,
                             routeOptions: [String: String] = [:]) throws -> HeraldNotification {
        HeraldNotification(
            event: try event(eventName),
            title: "新しい予約: 山田 太郎 様 — 料金プランについてのご相談 (11月27日 14:00〜15:00 JST)",
            text: "山田 太郎 様から予約がありました。\n.hidden line starting with a dot\n.\n..\nEnd = fin  \n",
            html: html ? "<p>山田 太郎 様から<b>予約</b>がありました。</p>\n<p>.dot</p>" : nil,
            kind: kind, locale: .ja, routeOptions: routeOptions, deliveryKey: deliveryKey)
    }

    static func settings(port: Int, _ change: (inout EmailNotifier.Settings) -> Void = { _ in }) -> EmailNotifier.Settings {
        var s = EmailNotifier.Settings(
            host: "127.0.0.1", port: port, security: SMTPSecurity.none, from: "Herald 通知 <bot@example.com>",
            to: ["Ops Team <ops@example.com>", "\"Sato, Hanako\" <hanako@example.com>"],
            cc: ["鈴木 一郎 <ichiro@example.com>"], bcc: ["audit@example.com"], heloName: "herald.test",
            connectTimeout: "5s", commandTimeout: "5s", messageTimeout: "10s")
        change(&s)
        return s
    }

    /// Settings for the TLS modes: the test CA as `caFile`, and the test user.
    static func tlsSettings(port: Int, security: SMTPSecurity, password: String = "s3cret",
                            host: String = "127.0.0.1") async throws -> EmailNotifier.Settings {
        let files = try #require(await TestCertificate.files(), "openssl could not make a test certificate")
        return settings(port: port) {
            $0.host = host
            $0.security = security
            $0.caFile = files.cert
            $0.username = "bot@example.com"
            $0.password = password
        }
    }
}
