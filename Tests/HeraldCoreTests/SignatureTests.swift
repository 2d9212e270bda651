import Foundation
import Testing
@testable import HeraldCore

struct SignatureVector: Decodable, CustomTestStringConvertible, Sendable {
    let `case`: String
    let expect: String
    let reason: String
    let secret: String
    let now: Int64
    let tolerance_s: Int64
    let body_base64: String
    let header: String
    var testDescription: String { self.case }

    static let all: [SignatureVector] = {
        let url = Fixtures.vectors.appendingPathComponent("jicoo-signatures.jsonl")
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { try? JSONDecoder().decode(SignatureVector.self, from: Data($0.utf8)) }
    }()
}

@Suite("Jicoo signature vectors")
struct JicooVectorTests {
    @Test func allVectorsLoaded() {
        #expect(SignatureVector.all.count == 27)
    }

    @Test(arguments: SignatureVector.all)
    func vector(_ v: SignatureVector) throws {
        let body = try #require(Data(base64Encoded: v.body_base64))
        let scheme = JicooSignature(secrets: [Secret(v.secret)], tolerance: v.tolerance_s)
        let lookup = headers(["Jicoo-Webhook-Signature": v.header])
        if v.expect == "accept" {
            #expect(throws: Never.self) { try scheme.verify(body: body, header: lookup, now: v.now) }
        } else {
            let failure = #expect(throws: SignatureFailure.self) { try scheme.verify(body: body, header: lookup, now: v.now) }
            #expect(failure?.rawValue == v.reason)
        }
    }

    @Test func missingHeaderIsItsOwnReason() {
        let scheme = JicooSignature(secrets: [Secret("s")])
        #expect(throws: SignatureFailure.missingHeader) { try scheme.verify(body: Data("{}".utf8), header: headers([:]), now: 0) }
    }

    @Test func anyRotatedSecretMatches() throws {
        let body = Data(#"{"event":"guest_booked"}"#.utf8)
        let old = JicooSignature(secrets: [Secret("old-secret")])
        let header = try #require(old.sign(body: body, timestamp: 1000, id: "").first)
        let rotated = JicooSignature(secrets: [Secret("new-secret"), Secret("old-secret")])
        #expect(throws: Never.self) { try rotated.verify(body: body, header: headers([header.name: header.value]), now: 1010) }
        let replaced = JicooSignature(secrets: [Secret("new-secret")])
        #expect(throws: SignatureFailure.signatureMismatch) { try replaced.verify(body: body, header: headers([header.name: header.value]), now: 1010) }
    }

    @Test func secretsNeverPrint() {
        let secret = Secret("super-secret-value")
        #expect("\(secret)" == "<redacted>")
        #expect(String(reflecting: secret) == "<redacted>")
        for failure in SignatureFailure.allCases { #expect(!failure.description.contains("super")) }
    }
}

@Suite("Other signature schemes")
struct OtherSchemeTests {
    let body = Data(#"{"type":"invoice.paid","id":42}"#.utf8)

    @Test func githubStyleRoundTripAndFailures() throws {
        let scheme = HMACSHA256Signature(secrets: [Secret("gh-secret")])
        let header = try #require(scheme.sign(body: body, timestamp: 0, id: "").first)
        #expect(header.name == "X-Hub-Signature-256")
        #expect(header.value.hasPrefix("sha256="))
        #expect(throws: Never.self) { try scheme.verify(body: body, header: headers([header.name: header.value.uppercased().replacingOccurrences(of: "SHA256=", with: "sha256=")]), now: 0) }
        #expect(throws: SignatureFailure.missingHeader) { try scheme.verify(body: body, header: headers([:]), now: 0) }
        #expect(throws: SignatureFailure.malformedHeader) { try scheme.verify(body: body, header: headers([header.name: "sha256="]), now: 0) }
        #expect(throws: SignatureFailure.signatureMismatch) { try scheme.verify(body: body + Data(" ".utf8), header: headers([header.name: header.value]), now: 0) }
        let custom = HMACSHA256Signature(secrets: [Secret("gh-secret")], header: "X-Signature")
        #expect(throws: Never.self) { try custom.verify(body: body, header: headers(["x-signature": header.value]), now: 0) }
    }

    /// The example from the Standard Webhooks specification's reference implementations.
    @Test func standardWebhooksKnownAnswer() throws {
        let scheme = StandardWebhooksSignature(secrets: [Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")], tolerance: 300)
        let payload = Data(#"{"test": 2432232314}"#.utf8)
        let h = headers([
            "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "webhook-timestamp": "1614265330",
            "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ])
        #expect(throws: Never.self) { try scheme.verify(body: payload, header: h, now: 1614265330) }
        #expect(throws: SignatureFailure.timestampOutsideTolerance) { try scheme.verify(body: payload, header: h, now: 1614265330 + 301) }
        #expect(throws: SignatureFailure.signatureMismatch) { try scheme.verify(body: payload + Data("x".utf8), header: h, now: 1614265330) }
    }

    @Test func standardWebhooksSignsWhatItVerifies() throws {
        let scheme = StandardWebhooksSignature(secrets: [Secret("whsec_" + Data("0123456789abcdef".utf8).base64EncodedString())])
        let signed = scheme.sign(body: body, timestamp: 5000, id: "msg_1")
        let dict = Dictionary(uniqueKeysWithValues: signed.map { ($0.name, $0.value) })
        #expect(throws: Never.self) { try scheme.verify(body: body, header: headers(dict), now: 5100) }
        var noID = dict
        noID["webhook-id"] = nil
        #expect(throws: SignatureFailure.missingHeader) { try scheme.verify(body: body, header: headers(noID), now: 5100) }
        var bad = dict
        bad["webhook-timestamp"] = "soon"
        #expect(throws: SignatureFailure.malformedHeader) { try scheme.verify(body: body, header: headers(bad), now: 5100) }
    }

    @Test func hmacMatchesKnownRFC4231Vector() {
        // RFC 4231 test case 2.
        let key = HMAC.Key(Array("Jefe".utf8))
        let mac = key.mac(Data("what do ya want for nothing?".utf8))
        #expect(HMAC.hex(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(HMAC.hex(HMAC.sha256(Data("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(HMAC.unhex("0aFF") == [0x0A, 0xFF])
        #expect(HMAC.unhex("0g") == nil)
        #expect(!HMAC.equal([1, 2], [1, 2, 3]))
    }
}
