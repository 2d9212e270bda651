import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A free TCP port on 127.0.0.1 (bound, read, released).
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

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

/// A real HTTP server on 127.0.0.1 that records every request and answers from a script:
/// per path, a list of (status, headers) to use in turn, then 200.
final class Recorder: Sendable {
    struct Request: Sendable {
        let method: String
        let path: String
        let headers: HTTPFields
        let body: Data
        let at: ContinuousClock.Instant
        var text: String { String(decoding: body, as: UTF8.self) }
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:] }
    }

    let port: Int
    private let task: Task<Void, any Error>
    private let group: ServiceGroup

    init() async throws {
        let portBox = PortBox()
        let router = Router()
        let holder = RecorderState()
        router.on("**", method: .post) { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 22)
            holder.requests.withLock {
                $0.append(Request(method: "POST", path: request.uri.path, headers: request.headers,
                                  body: Data(buffer: body), at: .now))
            }
            let next = holder.script.withLock { s -> (Int, [String: String])? in
                guard var list = s[request.uri.path], !list.isEmpty else { return nil }
                let first = list.removeFirst()
                s[request.uri.path] = list
                return first
            }
            var response = Response(status: .init(code: next?.0 ?? 200), body: ResponseBody(byteBuffer: ByteBuffer(string: next == nil ? #"{"ok":true,"message_id":"1"}"# : #"{"error":"scripted"}"#)))
            response.headers[.contentType] = "application/json"
            for (k, v) in next?.1 ?? [:] { response.headers[HTTPField.Name(k)!] = v }
            return response
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { portBox.value.store($0.localAddress?.port ?? 0, ordering: .relaxed) },
                              logger: Logger(label: "recorder"))
        let group = ServiceGroup(configuration: .init(services: [app], logger: Logger(label: "recorder")))
        self.group = group
        task = Task { try await group.run() }
        let deadline = ContinuousClock.now + .seconds(10)
        while portBox.value.load(ordering: .relaxed) == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        port = portBox.value.load(ordering: .relaxed)
        state = holder
    }

    private let state: RecorderState

    var url: String { "http://127.0.0.1:\(port)" }
    var received: [Request] { state.requests.withLock { $0 } }
    func received(_ path: String) -> [Request] { received.filter { $0.path == path } }
    func respond(_ path: String, _ responses: [(Int, [String: String])]) { state.script.withLock { $0[path] = responses } }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await task.value
    }
}

final class RecorderState: Sendable {
    let requests = Mutex<[Recorder.Request]>([])
    let script = Mutex<[String: [(Int, [String: String])]]>([:])
}

final class PortBox: Sendable { let value = Atomic<Int>(0) }
