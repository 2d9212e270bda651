import Foundation
import HeraldCore
import HeraldTesting
import Testing

@testable import ChatNotifiers

@Suite("Generic webhook")
struct WebhookNotifierTests {
    static let secret = "whsec_" + Data("a test secret of 32 bytes, okay!".utf8).base64EncodedString()

    func send(_ settings: @escaping @Sendable (String) -> WebhookNotifier.Settings,
              _ notifications: [HeraldNotification]) async throws -> [HTTPRecorder.Request] {
        try await Harness.with { harness in
            try await HTTPRecorder.with { server in
                let plugin = try WebhookNotifier(settings: settings(server.base + "/receive?k=v"), context: harness.context)
                for n in notifications { try await plugin.deliver(n) }
                return server.requests
            }
        }
    }

    @Test func rawBodySigned() async throws {
        let n = try Fixture.notification()
        let requests = try await send({ .init(url: $0, secret: Self.secret, headers: ["X-Api-Key": "key-日本"]) }, [n, n])
        let request = try #require(requests.first)
        #expect(request.uri == "/receive?k=v")
        #expect(request.body == n.event.body)
        #expect(request.headers["content-type"] == "application/json")
        #expect(request.headers["x-api-key"] == "key-日本")
        #expect(request.headers["webhook-id"] == "evt_0000test0001:chat")
        #expect(requests[1].headers["webhook-id"] == "evt_0000test0001:chat")
        let timestamp = try #require(request.headers["webhook-timestamp"].flatMap { Int64($0) })
        #expect(abs(timestamp - Int64(Date().timeIntervalSince1970)) < 60)
        // The receiver's side: Herald's own verifier accepts the signature.
        let verifier = try StandardWebhooksSignature(secrets: [Secret(Self.secret)])
        #expect(throws: Never.self) {
            try verifier.verify(body: request.body, header: { request.headers[$0.lowercased()] }, now: timestamp)
        }
        let wrong = try StandardWebhooksSignature(secrets: [Secret("whsec_" + Data("another secret".utf8).base64EncodedString())])
        #expect(throws: SignatureFailure.signatureMismatch) {
            try wrong.verify(body: request.body, header: { request.headers[$0.lowercased()] }, now: timestamp)
        }
    }

    /// The plugin signs with swift-crypto and Herald verifies with OpenSSL: both read a
    /// secret the same way (``StandardWebhooksKey``), with or without `whsec_`.
    @Test("Herald's verifier accepts the plugin's signature", arguments: [secret, Data("no prefix".utf8).base64EncodedString()])
    func signatureMatchesHeraldsVerifier(_ secret: String) async throws {
        let request = try #require(try await send({ .init(url: $0, secret: secret) }, [try Fixture.notification()]).first)
        let timestamp = try #require(request.headers["webhook-timestamp"].flatMap { Int64($0) })
        #expect(throws: Never.self) {
            try StandardWebhooksSignature(secrets: [Secret(secret)])
                .verify(body: request.body, header: { request.headers[$0.lowercased()] }, now: timestamp)
        }
    }

    /// The signed content is `id.timestamp.body`, so the spec forbids `.` in `webhook-id`;
    /// the dispatcher's delivery keys are `<event id>.<notifier>`.
    @Test func webhookIDHasNoDot() async throws {
        let n = try Fixture.notification(deliveryKey: "evt_01a20a2ec34b765c83084fab.crm.hook")
        let requests = try await send({ .init(url: $0, secret: Self.secret) }, [n])
        let request = try #require(requests.first)
        #expect(request.headers["webhook-id"] == "evt_01a20a2ec34b765c83084fab_crm_hook")
        let timestamp = try #require(request.headers["webhook-timestamp"].flatMap { Int64($0) })
        let verifier = try StandardWebhooksSignature(secrets: [Secret(Self.secret)])
        #expect(throws: Never.self) {
            try verifier.verify(body: request.body, header: { request.headers[$0.lowercased()] }, now: timestamp)
        }
    }

    @Test func unsignedStillCarriesID() async throws {
        let requests = try await send({ .init(url: $0) }, [try Fixture.notification()])
        let request = try #require(requests.first)
        #expect(request.headers["webhook-id"] == "evt_0000test0001:chat")
        #expect(request.headers["webhook-timestamp"] != nil)
        #expect(request.headers["webhook-signature"] == nil)
    }

    @Test func jsonTemplate() async throws {
        let template = #"""
        {"title": "{{notification.title}}", "text": "{{notification.text}}", "event": "{{event.name}}",
         "guest": "{{payload.object.contact.name}}", "kind": "{{notification.kind}}",
         "fields": [{{#notification.fields}}{"n": "{{name}}", "v": "{{value}}"},{{/notification.fields}}{}],
         "raw": {{{json.payload}}}, "all": {{{json.fields}}}, "key": "{{deliveryKey}}"}
        """#
        let n = try Fixture.notification(title: #"予約 "VIP" \ 🎉"#)
        let request = try #require(try await send({ .init(url: $0, template: template) }, [n]).first)
        let body = try #require(request.json)
        #expect(body["title"] == .string(#"予約 "VIP" \ 🎉"#))
        #expect(body["text"] == .string("ご予約ありがとうございます。\n<b>料金</b> & *プラン* について"))
        #expect(body["event"] == .string("guest_booked"))
        #expect(body["guest"] == .string("山田 太郎"))
        #expect(body["kind"] == .string("booked"))
        #expect(body["fields"] == json(#"""
        [{"n": "日時", "v": "2026年11月27日(金) 14:00〜15:00 (JST)"}, {"n": "ゲスト", "v": "山田 太郎 <taro.yamada@example.jp>"},
         {"n": "ご相談内容", "v": "料金プランについて 💴"}, {}]
        """#))
        #expect(body["raw"] == n.event.payload)
        #expect(body["all"] == json(#"""
        [{"name": "日時", "value": "2026年11月27日(金) 14:00〜15:00 (JST)", "short": false},
         {"name": "ゲスト", "value": "山田 太郎 <taro.yamada@example.jp>", "short": true},
         {"name": "ご相談内容", "value": "料金プランについて 💴", "short": true}]
        """#))
        #expect(body["key"] == .string("evt_0000test0001:chat"))
    }

    @Test func textTemplate() async throws {
        let settings: @Sendable (String) -> WebhookNotifier.Settings = {
            .init(url: $0, contentType: "text/plain; charset=utf-8", template: "{{notification.title}} – {{event.name}}")
        }
        let request = try #require(try await send(settings, [try Fixture.notification(title: "A & B <予約>")]).first)
        #expect(String(decoding: request.body, as: UTF8.self) == "A & B <予約> – guest_booked")
        #expect(request.headers["content-type"] == "text/plain; charset=utf-8")
    }

    @Test func templateThatIsNotJSONIsAConfigurationError() async throws {
        let error = await DeliveryError.thrown {
            _ = try await send({ .init(url: $0, template: "{\"a\": {{notification.title}}}") }, [try Fixture.notification()])
        }
        #expect(error?.disposition == .configuration)
    }

    @Test func settingsAreChecked() {
        let context = Harness().context
        #expect(throws: ConfigError.self) { try WebhookNotifier(settings: .init(url: "ftp://x/y"), context: context) }
        #expect(throws: ConfigError.self) {
            try WebhookNotifier(settings: .init(url: "https://x/y", headers: ["webhook-id": "mine"]), context: context)
        }
        #expect(throws: ConfigError.self) {
            try WebhookNotifier(settings: .init(url: "https://x/y", headers: ["X-A": "a\r\nX-B: b"]), context: context)
        }
        #expect(throws: ConfigError.self) { try WebhookNotifier(settings: .init(url: "https://x/y", secret: "whsec_!!!"), context: context) }
        #expect(throws: ConfigError.self) { try WebhookNotifier(settings: .init(url: "https://x/y", secret: "whsec_"), context: context) }
        #expect(throws: ConfigError.self) { try WebhookNotifier(settings: .init(url: "https://x/y", template: "{{#a}}"), context: context) }
    }
}
