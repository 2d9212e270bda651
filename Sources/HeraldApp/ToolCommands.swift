import ArgumentParser
import AsyncHTTPClient
import Foundation
import HeraldCore
import HeraldTesting
import NIOCore
import NIOHTTP1

/// `herald check`: validates the whole configuration, templates and notifier settings
/// included, without starting anything. Exit code 0 when valid, 1 otherwise.
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check", abstract: "Validate a configuration file.")
    @OptionGroup var options: ConfigOption

    func run() async throws {
        let config: HeraldConfig
        switch ConfigLoader(registry: try Herald.registry()).check(file: try options.existingPath()) {
        case .success(let loaded): config = loaded
        case .failure(let found):
            for error in found.errors { FileHandle.standardError.write(Data("\(error)\n".utf8)) }
            let count = found.errors.count
            FileHandle.standardError.write(Data("herald: \(count) configuration error\(count == 1 ? "" : "s")\n".utf8))
            throw ExitCode(1)
        }
        print("\(config.file): OK")
        print("  listen     \(config.server.host):\(config.server.port) (max body \(config.server.maxBodyBytes) bytes)")
        print("  storage    \(config.storage.summary)")
        for e in config.endpoints {
            print("  endpoint   POST \(e.path)  source \(e.source.rawValue), scheme \(e.schemeName.rawValue)")
        }
        for n in config.notifiers {
            print("  notifier   \(n.name) (\(n.kind)), concurrency \(n.policy.concurrency), timeout \(n.policy.timeout)")
        }
        // The sample events (HeraldTesting's, as `herald routes test` uses them), conditions applied.
        let router = RouteTable(routes: config.routes)
        for event in try HeraldTesting.SampleEvents.all() {
            let targets = router.targets(for: event).map(\.notifier)
            print("  route      \(event.name) → \(targets.isEmpty ? "(nothing)" : targets.joined(separator: ", "))")
        }
    }
}

/// `herald sign`: prints the signature headers a sender would attach to a body.
struct SignCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sign", abstract: "Print the signature header(s) for a body file.",
        discussion: "Example: herald sign --secret \"$JICOO_SECRET\" body.json")

    @Argument(help: "The body file, signed byte for byte.") var bodyFile: String
    @Option(help: "jicoo, hmac-sha256 or standard-webhooks.") var scheme: String = "jicoo"
    @Option(help: "The signing secret.") var secret: String?
    @Option(help: "Read the secret from this file instead.") var secretFile: String?
    @Option(help: "Header name for hmac-sha256.") var header: String?
    @Option(help: "Unix time to sign at (default: now).") var timestamp: Int64?
    @Option(help: "webhook-id for standard-webhooks (default: random).") var id: String?

    func run() async throws {
        guard let name = SignatureSchemeName(rawValue: scheme) else {
            throw ValidationError("unknown scheme \(scheme); use jicoo, hmac-sha256 or standard-webhooks")
        }
        let key = try readSecret(secret, secretFile)
        guard let body = FileManager.default.contents(atPath: bodyFile) else { throw ValidationError("cannot read \(bodyFile)") }
        let signer: any SignatureScheme
        do { signer = try name.makeScheme(secrets: [Secret(key)], header: header) } catch { throw ValidationError(error.message) }
        for h in signer.sign(body: body, timestamp: timestamp ?? Int64(Date().timeIntervalSince1970), id: id ?? "msg_" + UUID().uuidString) {
            print("\(h.name): \(h.value)")
        }
    }
}

/// `herald send-test`: posts a signed sample Jicoo event, as Jicoo would.
struct SendTestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send-test", abstract: "Post a signed sample Jicoo event to a Herald endpoint.",
        discussion: "Events: \(SampleEvents.names.joined(separator: ", ")).\nWith --config, the URL and secret come from the first jicoo endpoint.")

    @Argument(help: "The event to send.") var event: String = "guest_booked"
    @Option(name: .shortAndLong, help: "Take the URL and secret from this configuration file.") var config: String?
    @Option(help: "The endpoint URL, e.g. http://127.0.0.1:8080/hooks/jicoo.") var url: String?
    @Option(help: "The signing secret.") var secret: String?
    @Option(help: "Read the secret from this file instead.") var secretFile: String?
    @Option(help: "Send this body file instead of a generated sample.") var body: String?

    func run() async throws {
        guard SampleEvents.names.contains(event) || body != nil else {
            throw ValidationError("unknown event \(event); one of: \(SampleEvents.names.joined(separator: ", "))")
        }
        var target = url
        var key = secret
        if let config, url == nil || (secret == nil && secretFile == nil) {
            let (u, s) = try Self.endpoint(fromConfig: config)
            target = target ?? u
            key = key ?? s
        }
        if key == nil { key = try readSecret(nil, secretFile) }
        guard let target, let key else { throw ValidationError("give --url and --secret (or --config)") }
        let payload: Data
        if let body {
            guard let data = FileManager.default.contents(atPath: body) else { throw ValidationError("cannot read \(body)") }
            payload = data
        } else {
            payload = SampleEvents.body(event: event)
        }
        let signer = JicooSignature(secrets: [Secret(key)])
        var request = HTTPClientRequest(url: target)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "herald-send-test")
        for h in signer.sign(body: payload, timestamp: Int64(Date().timeIntervalSince1970), id: "") {
            request.headers.add(name: h.name, value: h.value)
        }
        request.body = .bytes(ByteBuffer(bytes: payload))
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let response = try await client.execute(request, timeout: .seconds(15))
            let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
            print("\(response.status.code) \(response.status.reasonPhrase) \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
            try await client.shutdown()
            if !(200..<300).contains(Int(response.status.code)) { throw ExitCode(1) }
        } catch let error as ExitCode {
            throw error
        } catch {
            try? await client.shutdown()
            FileHandle.standardError.write(Data("herald: cannot post to \(target): \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// The URL and first secret of the first Jicoo endpoint in a configuration.
    static func endpoint(fromConfig path: String) throws -> (String, String) {
        let config = try ConfigOption(config: path).load()
        guard let endpoint = config.endpoints.first(where: { $0.source == .jicoo }) ?? config.endpoints.first else {
            throw ValidationError("\(path) has no endpoint")
        }
        let host = config.server.host == "0.0.0.0" ? "127.0.0.1" : config.server.host
        guard let secret = endpoint.secrets.first else { throw ValidationError("\(endpoint.path) has no secret") }
        return ("http://\(host):\(config.server.port)\(endpoint.path)", String(decoding: secret.bytes, as: UTF8.self))
    }
}

extension ConfigOption {
    init(config: String) {
        self.init()
        self.config = config
    }
}

/// Reads a secret given inline or in a file (trailing newline dropped).
func readSecret(_ inline: String?, _ file: String?) throws -> String {
    if let inline { return inline }
    guard let file else { throw ValidationError("give --secret or --secret-file") }
    guard let data = FileManager.default.contents(atPath: file), let text = String(data: data, encoding: .utf8) else {
        throw ValidationError("cannot read the secret file \(file)")
    }
    return text.trimmingCharacters(in: .newlines)
}
