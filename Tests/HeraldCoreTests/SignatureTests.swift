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

    /// How the header is split, beyond the shared vectors: empty elements, blanks around
    /// elements and values, a key with a blank before its `=` (another key), the last `t`.
    @Test func headerElementsAreSplitAsBytes() throws {
        let body = Data(#"{"event":"guest_booked"}"#.utf8)
        let scheme = JicooSignature(secrets: [Secret("s")])
        let signature = try #require(scheme.sign(body: body, timestamp: 1000, id: "").first?.value.split(separator: "=").last)
        func verify(_ header: String) throws(SignatureFailure) {
            try scheme.verify(body: body, header: headers([JicooSignature.headerName: header]), now: 1000)
        }
        #expect(throws: Never.self) { try verify(",, \tt=1000 \t,,v1=\(signature)\t ,") }
        #expect(throws: Never.self) { try verify("t=5,v1=\(signature),t=1000") }
        #expect(throws: Never.self) { try verify("t=1000,v1=zz,v1=\(signature),v2=\(signature)") }
        // A candidate of the right length that is not hex is skipped, and hex of either case matches.
        let notHex = String(repeating: "g", count: 64)
        #expect(throws: Never.self) { try verify("t=1000,v1=\(notHex),v1=\(signature.uppercased())") }
        #expect(throws: SignatureFailure.signatureMismatch) { try verify("t=1000,v1=\(notHex)") }
        #expect(throws: SignatureFailure.malformedHeader) { try verify("t =1000,v1=\(signature)") }
        #expect(throws: SignatureFailure.malformedHeader) { try verify("t= 1000,v1=\(signature)") }
        #expect(throws: SignatureFailure.malformedHeader) { try verify("t=1000,v1 =\(signature)") }
        #expect(throws: SignatureFailure.signatureMismatch) { try verify("t=1000,v1=\(signature)0") }
        #expect(throws: SignatureFailure.timestampOutsideTolerance) { try verify("t=0000000000000001000,v1=\(signature)") }
        #expect(throws: SignatureFailure.timestampOutsideTolerance) { try verify("t=99999999999999999999999,v1=\(signature)") }
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
        let scheme = try StandardWebhooksSignature(secrets: [Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")], tolerance: 300)
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

    /// The reference libraries' tests (standard-webhooks, libraries/javascript and python):
    /// the same secret with and without `whsec_`, several signatures of which one is valid,
    /// and their "sign function" answer.
    @Test func standardWebhooksReferenceVectors() throws {
        let payload = Data(#"{"test": 2432232314}"#.utf8)
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
        for secret in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] {
            let scheme = try StandardWebhooksSignature(secrets: [Secret(secret)])
            let signed = scheme.sign(body: payload, timestamp: 1614265330, id: id)
            #expect(signed.first { $0.name == "webhook-signature" }?.value == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
            let valid = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
            let several = ["v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
                           valid, "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="].joined(separator: " ")
            let h = ["webhook-id": id, "webhook-timestamp": "1614265330", "webhook-signature": several]
            #expect(throws: Never.self) { try scheme.verify(body: payload, header: headers(h), now: 1614265330) }
            var partial = h
            partial["webhook-signature"] = String(valid.prefix(8))
            #expect(throws: SignatureFailure.self) { try scheme.verify(body: payload, header: headers(partial), now: 1614265330) }
            partial["webhook-signature"] = "v1,"
            #expect(throws: SignatureFailure.self) { try scheme.verify(body: payload, header: headers(partial), now: 1614265330) }
        }
    }

    /// Secrets are base64 after an optional `whsec_`, padding optional, as the reference
    /// libraries decode them (Python appends "=="); an empty or non-base64 one is refused
    /// instead of being used as raw bytes.
    @Test func standardWebhooksSecretsDecodeLikeTheReferences() throws {
        let key = Array("a 25-byte key, not 24 ..".utf8) + [0xFF]   // 25 bytes: base64 ends in "=="
        let padded = Data(key).base64EncodedString()
        #expect(padded.hasSuffix("=="))
        let unpadded = String(padded.dropLast(2))
        #expect(try StandardWebhooksSignature.key(of: Secret("whsec_" + unpadded)) == key)
        #expect(try StandardWebhooksSignature.key(of: Secret("whsec_" + padded)) == key)
        #expect(try StandardWebhooksSignature.key(of: Secret(unpadded)) == key)
        // What a sender with the unpadded secret signs, Herald verifies.
        let body = Data("{}".utf8)
        let scheme = try StandardWebhooksSignature(secrets: [Secret("whsec_" + unpadded)])
        let mac = HMAC.Key(key).mac(prefix: Array("msg_1.1000.".utf8), body)
        let h = ["webhook-id": "msg_1", "webhook-timestamp": "1000", "webhook-signature": "v1," + Data(mac).base64EncodedString()]
        #expect(throws: Never.self) { try scheme.verify(body: body, header: headers(h), now: 1000) }
        for bad in ["whsec_", "", "whsec_!!!!", "whsec_abcde", "whsec_===="] {
            #expect(throws: SecretFormatError.self, "\(bad)") { try StandardWebhooksSignature.key(of: Secret(bad)) }
        }
        let error = try #require(throws: SecretFormatError.self) { try StandardWebhooksSignature.key(of: Secret("whsec_s3cr3t!value")) }
        #expect(!error.message.contains("s3cr3t"))
    }

    /// Like the references (`now - timestamp > tolerance` fails), a timestamp exactly
    /// `tolerance` seconds old or ahead is accepted; one second more is not.
    @Test func standardWebhooksToleranceBoundary() throws {
        let scheme = try StandardWebhooksSignature(secrets: [Secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")], tolerance: 300)
        let payload = Data(#"{"test": 2432232314}"#.utf8)
        let h = headers(["webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
                         "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="])
        #expect(throws: Never.self) { try scheme.verify(body: payload, header: h, now: 1614265330 + 300) }
        #expect(throws: Never.self) { try scheme.verify(body: payload, header: h, now: 1614265330 - 300) }
        #expect(throws: SignatureFailure.timestampOutsideTolerance) { try scheme.verify(body: payload, header: h, now: 1614265330 + 301) }
        #expect(throws: SignatureFailure.timestampOutsideTolerance) { try scheme.verify(body: payload, header: h, now: 1614265330 - 301) }
    }

    /// GitHub's documented example ("Validating webhook deliveries": secret
    /// `It's a Secret to Everybody`, payload `Hello, World!`).
    @Test func githubDocumentedExample() throws {
        let scheme = try EventSource.github.defaultScheme.makeScheme(secrets: [Secret("It's a Secret to Everybody")])
        let body = Data("Hello, World!".utf8)
        let h = headers(["X-Hub-Signature-256": "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"])
        #expect(throws: Never.self) { try scheme.verify(body: body, header: h, now: 0) }
        #expect(throws: SignatureFailure.signatureMismatch) { try scheme.verify(body: Data("Hello, World?".utf8), header: h, now: 0) }
        #expect(scheme.sign(body: body, timestamp: 0, id: "").first?.value == "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
    }

    @Test func standardWebhooksSignsWhatItVerifies() throws {
        let scheme = try StandardWebhooksSignature(secrets: [Secret("whsec_" + Data("0123456789abcdef".utf8).base64EncodedString())])
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
