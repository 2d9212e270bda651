import Foundation
import HTTPTypes
import HeraldApp
import HeraldCore
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

/// The HTTP routes, run in-process with Hummingbird's test client.
@Suite("Webhook routes")
struct WebhookRouteTests {
    static let secret = "route-test-secret"

    /// A pipeline with one Jicoo endpoint at `/hooks/jicoo` and a file notifier; `server` is
    /// the inside of the `server:` mapping. `sqlite`: a SQLite journal in a temporary directory
    /// (whose appends the event loop serves, see `WebhookChannel`) instead of one in memory.
    static func pipeline(server: String, sqlite: Bool = false) async throws -> Pipeline {
        let dir = tempDir()
        let yaml = """
            server: { \(server) }
            storage: { memory: true }
            endpoints: [{ path: /hooks/jicoo, secrets: [\(Self.secret)] }]
            notifiers:
              audit: { kind: file, path: \(dir)/out.jsonl }
            routes:
              - { events: ["*"], notify: [audit] }
            """
        let config = try ConfigLoader(registry: try PluginRegistry(Herald.builtInPlugins)).load(yaml: yaml)
        let journal: any Journal = sqlite ? try SQLiteJournal(directory: "\(dir)/journal", dedupeTTL: .seconds(3600))
                                          : MemoryJournal()
        return try await Pipeline(config: config, journal: journal)
    }

    func app(maxBody: Int = 65536) async throws -> (some ApplicationProtocol, Pipeline, WebhookServer.Readiness) {
        let pipeline = try await Self.pipeline(server: "maxBodyBytes: \(maxBody)")
        let readiness = WebhookServer.Readiness()
        let router = WebhookServer.router(pipeline: pipeline, readiness: readiness)
        return (Application(router: router), pipeline, readiness)
    }

    func signedHeaders(_ body: Data, secret: String = secret, at: Date = Date()) -> HTTPFields {
        var fields = HTTPFields()
        fields[.contentType] = "application/json"
        for h in JicooSignature(secrets: [Secret(secret)]).sign(body: body, timestamp: Int64(at.timeIntervalSince1970), id: "") {
            fields[HTTPField.Name(h.name)!] = h.value
        }
        return fields
    }

    func json(_ buffer: ByteBuffer) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(buffer: buffer)) as? [String: Any]) ?? [:]
    }

    @Test func acceptedThenDuplicate() async throws {
        let (app, _, _) = try await app()
        let body = try Data(contentsOf: HeraldProcess.sharedVectors.appendingPathComponent("jicoo-events/guest_booked.json"))
        try await app.test(.router) { client in
            var firstID = ""
            try await client.execute(uri: "/hooks/jicoo", method: .post, headers: signedHeaders(body), body: ByteBuffer(data: body)) { r in
                #expect(r.status == .accepted)
                firstID = json(r.body)["id"] as? String ?? ""
                #expect(firstID.hasPrefix("evt_"))
                #expect(json(r.body)["deliveries"] as? Int == 1)
            }
            try await client.execute(uri: "/hooks/jicoo", method: .post, headers: signedHeaders(body), body: ByteBuffer(data: body)) { r in
                #expect(r.status == .ok)
                #expect(json(r.body)["duplicate"] as? Bool == true)
                #expect(json(r.body)["id"] as? String == firstID)
            }
        }
    }

    @Test func badSignaturesAre401WithTheReason() async throws {
        let (app, _, _) = try await app()
        let body = Data(#"{"event":"guest_booked","object":{}}"#.utf8)
        try await app.test(.router) { client in
            try await client.execute(uri: "/hooks/jicoo", method: .post, headers: signedHeaders(body, secret: "wrong"), body: ByteBuffer(data: body)) { r in
                #expect(r.status == .unauthorized)
                #expect(json(r.body)["error"] as? String == "signature_mismatch")
            }
            try await client.execute(uri: "/hooks/jicoo", method: .post, body: ByteBuffer(data: body)) { r in
                #expect(r.status == .unauthorized)
                #expect(json(r.body)["error"] as? String == "missing_header")
            }
            try await client.execute(uri: "/hooks/jicoo", method: .post, headers: signedHeaders(body, at: Date().addingTimeInterval(-3600)), body: ByteBuffer(data: body)) { r in
                #expect(r.status == .unauthorized)
                #expect(json(r.body)["error"] as? String == "timestamp_outside_tolerance")
            }
            try await client.execute(uri: "/hooks/jicoo", method: .post, headers: [HTTPField.Name("Jicoo-Webhook-Signature")!: "garbage"], body: ByteBuffer(data: body)) { r in
                #expect(r.status == .unauthorized)
                #expect(json(r.body)["error"] as? String == "malformed_header")
                #expect(!String(buffer: r.body).contains(Self.secret))
            }
        }
    }

    @Test func malformedJSONIs400() async throws {
        let (app, _, _) = try await app()
        let body = Data(#"{"event": "guest_booked", "object": "#.utf8)
        try await app.test(.router) { client in
            try await client.execute(uri: "/hooks/jicoo", method: .post, headers: signedHeaders(body), body: ByteBuffer(data: body)) { r in
                #expect(r.status == .badRequest)
                #expect(json(r.body)["error"] as? String == "malformed_body")
                #expect((json(r.body)["detail"] as? String)?.isEmpty == false)
            }
        }
    }

    @Test func oversizedBodyIs413AndTheLimitItselfIsAccepted() async throws {
        let (app, _, _) = try await app(maxBody: 65536)
        let vectors = try String(contentsOf: HeraldProcess.sharedVectors.appendingPathComponent("jicoo-signatures.jsonl"), encoding: .utf8)
        let line = try #require(vectors.split(separator: "\n").first { $0.contains("large_64k_body") })
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        let encoded = try #require(object?["body_base64"] as? String)
        let big = try #require(Data(base64Encoded: encoded))
        #expect(big.count == 65536)
        try await app.test(.router) { client in
            try await client.execute(uri: "/hooks/jicoo", method: .post, headers: signedHeaders(big), body: ByteBuffer(data: big)) { r in
                #expect(r.status != .contentTooLarge)
            }
            let tooBig = big + Data("x".utf8)
            try await client.execute(uri: "/hooks/jicoo", method: .post, headers: signedHeaders(tooBig), body: ByteBuffer(data: tooBig)) { r in
                #expect(r.status == .contentTooLarge)
                #expect(json(r.body)["error"] as? String == "body_too_large")
            }
        }
    }

    @Test func healthAndReadiness() async throws {
        let (app, _, readiness) = try await app()
        try await app.test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/readyz", method: .get) { #expect($0.status == .serviceUnavailable) }
            readiness.set(true)
            try await client.execute(uri: "/readyz", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/hooks/other", method: .post) { #expect($0.status == .notFound) }
        }
    }
}
