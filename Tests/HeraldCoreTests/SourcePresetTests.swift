import Foundation
import Testing
@testable import HeraldCore

/// Senders other than Jicoo: the `github` preset, `eventHeader:`, delivery ids as dedupe
/// keys, Standard Webhooks secrets checked at load, and what the built-in template shows.
@Suite("Other senders")
struct SourcePresetTests {
    static let githubSecret = "It's a Secret to Everybody"

    func load(_ yaml: String) throws -> HeraldConfig { try ConfigLoader.testing().load(yaml: yaml) }

    func loadError(_ yaml: String) -> ConfigError? {
        do { _ = try load(yaml); return nil } catch let error as ConfigError { return error } catch { return nil }
    }

    @Test func githubPresetNamesItsHeaders() throws {
        let config = try load("""
            endpoints:
              - { path: /gh, source: github, secrets: ["x"] }
              - { path: /other, source: generic, eventHeader: X-Event-Name, secrets: ["y"] }
              - { path: /sw, source: generic, scheme: standard-webhooks, secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] }
            """)
        let gh = config.endpoints[0]
        #expect(gh.schemeName == .hmacSHA256)
        #expect(gh.eventNameHeader == "X-GitHub-Event")
        #expect(gh.deliveryIDHeader == "X-GitHub-Delivery")
        #expect(config.endpoints[1].eventNameHeader == "X-Event-Name")
        #expect(config.endpoints[1].deliveryIDHeader == nil)
        #expect(config.endpoints[2].deliveryIDHeader == "webhook-id")
        let bad = try #require(loadError("endpoints: [{ path: /g, source: generic, eventHeader: \"X Event\", secrets: [x] }]"))
        #expect(bad.keyPath == "endpoints[0].eventHeader")
        let unknown = try #require(loadError("endpoints: [{ path: /g, source: gitlab, secrets: [x] }]"))
        #expect(unknown.message.contains("jicoo, generic, github"))
    }

    /// `herald check` used to accept these and every request then failed with signature_mismatch.
    @Test func standardWebhooksSecretsAreCheckedAtLoad() throws {
        for (secrets, line) in [("[\"whsec_\"]", 3), ("[\"ok\", \"whsec_!!!!\"]", 3)] {
            let e = try #require(loadError("""
                endpoints:
                  - path: /sw
                    secrets: \(secrets)
                    scheme: standard-webhooks
                """))
            #expect(e.keyPath == "endpoints[0].secrets")
            #expect(e.line == line)
            #expect(e.message.contains("base64"))
            #expect(!e.message.contains("!!!!"))
        }
        // Unpadded base64 is what the reference libraries accept.
        _ = try load("endpoints: [{ path: /sw, scheme: standard-webhooks, secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwAA] }]")
    }

    @Test func hugeDurationIsAnErrorNotATrap() throws {
        let e = try #require(loadError("endpoints: [{ path: /h, secrets: [x], tolerance: 1e300d }]"))
        #expect(e.keyPath == "endpoints[0].tolerance")
        #expect(Duration.parse("1e300") == nil)
        #expect(Duration.parse("inf") == nil)
    }

    func pipeline(_ endpoint: String) async throws -> Pipeline {
        let config = try load("""
            storage: { memory: true }
            endpoints: [\(endpoint)]
            notifiers:
              audit: { kind: recording, label: audit }
            routes:
              - { events: [issues], notify: [audit] }
            """)
        return try await Pipeline(config: config, journal: MemoryJournal())
    }

    /// A GitHub delivery: the event name from `X-GitHub-Event` (routes match it), a
    /// redelivery recognised by `X-GitHub-Delivery` even when the body differs.
    @Test func githubEventNameAndDeliveryID() async throws {
        let p = try await pipeline("{ path: /gh, source: github, secrets: [\"\(Self.githubSecret)\"] }")
        func post(_ body: String, delivery: String, event: String = "issues") async throws -> Pipeline.Outcome {
            let data = Data(body.utf8)
            let scheme = try EventSource.github.defaultScheme.makeScheme(secrets: [Secret(Self.githubSecret)])
            let sig = scheme.sign(body: data, timestamp: 0, id: "")[0]
            return await p.receive(path: "/gh", body: data, header: headers([
                sig.name: sig.value, "X-GitHub-Event": event, "X-GitHub-Delivery": delivery]))
        }
        let body = #"{"action":"opened","issue":{"title":"Crash on start","number":7},"repository":{"full_name":"acme/herald"},"sender":{"login":"octocat"}}"#
        guard case .accepted(let id, 1) = try await post(body, delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958") else {
            Issue.record("a signed GitHub event routed by its X-GitHub-Event name must be accepted"); return
        }
        let stored = try #require(try await p.journal.event(id: id))
        #expect(stored.name == "issues")
        let again = try await post(body.replacingOccurrences(of: "opened", with: "reopened"), delivery: "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        #expect(again == .duplicate(eventID: id))
        guard case .accepted(_, 0) = try await post(body, delivery: "another-delivery", event: "push") else {
            Issue.record("a new delivery id is a new event"); return
        }
    }

    /// Standard Webhooks: a retry carries the same `webhook-id` (and a new timestamp and signature).
    @Test func standardWebhooksIDIsTheDedupeKey() async throws {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        let p = try await pipeline("{ path: /sw, source: generic, scheme: standard-webhooks, secrets: [\"\(secret)\"] }")
        let scheme = try StandardWebhooksSignature(secrets: [Secret(secret)])
        func post(_ body: String, at time: Int64) async -> Pipeline.Outcome {
            let data = Data(body.utf8)
            let signed = Dictionary(uniqueKeysWithValues: scheme.sign(body: data, timestamp: time, id: "msg_2Kd9").map { ($0.name, $0.value) })
            return await p.receive(path: "/sw", body: data, header: headers(signed), now: Date(timeIntervalSince1970: TimeInterval(time)))
        }
        guard case .accepted(let id, _) = await post(#"{"type":"issues","sentAt":1}"#, at: 1_700_000_000) else {
            Issue.record("expected accepted"); return
        }
        #expect(await post(#"{"type":"issues","sentAt":2}"#, at: 1_700_000_060) == .duplicate(eventID: id))
    }

    /// The built-in template for an event without a booking shows what the body says.
    @Test func defaultTemplateShowsTheBodysKeyFields() throws {
        let body = Data(#"{"action":"opened","issue":{"title":"Crash on start","number":7},"repository":{"full_name":"acme/herald","id":1},"sender":{"login":"octocat"},"hook_id":12,"tags":["a"]}"#.utf8)
        let event = try EventSource.github.decode(body: body, endpoint: "/gh", eventName: "issues")
        let n = try Renderer().render(event)
        #expect(n.title == "GitHub event issues")
        #expect(n.text.contains("Event: issues"))
        #expect(n.text.contains("action: opened"))
        #expect(n.text.contains("repository: acme/herald"))
        #expect(n.text.contains("sender: octocat"))
        #expect(n.text.contains("issue: Crash on start"))
        #expect(n.text.contains("hook_id: 12"))
        // Only arrays: the start of the JSON instead.
        let list = try EventSource.generic.decode(body: Data(#"{"items": [1, 2, 3]}"#.utf8), endpoint: "/g")
        #expect(try Renderer().render(list).text.contains(#"Body: {"items": [1, 2, 3]}"#))
        let long = try EventSource.generic.decode(body: Data("{\"note\": \"\(String(repeating: "x", count: 5000))\"}".utf8), endpoint: "/g")
        let note = try #require(try Renderer().render(long).fields.first { $0.name == "note" })
        #expect(note.value.count == PayloadSummary.valueLimit)
    }
}
