import COpenSSL
import Foundation

/// Why a webhook's signature was refused. The raw value is what clients see in a 401.
public enum SignatureFailure: String, Error, Sendable, CaseIterable, CustomStringConvertible {
    case missingHeader = "missing_header"
    case malformedHeader = "malformed_header"
    case timestampOutsideTolerance = "timestamp_outside_tolerance"
    case signatureMismatch = "signature_mismatch"

    public var description: String { rawValue }
}

/// The signature schemes an endpoint can require (`scheme:` in the configuration).
public enum SignatureSchemeName: String, Sendable, CaseIterable {
    /// `Jicoo-Webhook-Signature: t=<unix>,v1=<hex>` over `<t>.<body>`.
    case jicoo
    /// `X-Hub-Signature-256: sha256=<hex>` over the body (GitHub style; header configurable).
    case hmacSHA256 = "hmac-sha256"
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`.
    case standardWebhooks = "standard-webhooks"
}

/// A webhook secret. Prints as `<redacted>` so it cannot leak into logs or errors.
public struct Secret: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    public let bytes: [UInt8]
    public init(_ text: String) { bytes = Array(text.utf8) }
    public init(bytes: [UInt8]) { self.bytes = bytes }
    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
}

/// Verifies (and, for tests and `herald sign`, produces) a webhook signature.
public protocol SignatureScheme: Sendable {
    /// Checks the signature headers against the raw body at time `now` (unix seconds).
    /// `header` looks a request header up by name, case-insensitively.
    func verify(body: UnsafeRawBufferPointer, header: (String) -> String?, now: Int64) throws(SignatureFailure)

    /// The headers a sender would attach to `body`, signed with the first secret.
    func sign(body: Data, timestamp: Int64, id: String) -> [(name: String, value: String)]
}

extension SignatureScheme {
    public func verify(body: Data, header: (String) -> String?, now: Int64) throws(SignatureFailure) {
        let result: Result<Void, SignatureFailure> = body.withUnsafeBytes { raw in
            do throws(SignatureFailure) { try verify(body: raw, header: header, now: now); return .success(()) }
            catch { return .failure(error) }
        }
        try result.get()
    }

}

extension SignatureSchemeName {
    /// Builds the scheme with an endpoint's secrets. Fails only for a Standard Webhooks
    /// secret that is not base64 (see ``StandardWebhooksSignature/key(of:)``).
    public func makeScheme(secrets: [Secret], tolerance: Int64 = 300, header: String? = nil) throws(SecretFormatError) -> any SignatureScheme {
        switch self {
        case .jicoo: JicooSignature(secrets: secrets, tolerance: tolerance)
        case .hmacSHA256: HMACSHA256Signature(secrets: secrets, header: header ?? "X-Hub-Signature-256")
        case .standardWebhooks: try StandardWebhooksSignature(secrets: secrets, tolerance: tolerance)
        }
    }
}

/// `Jicoo-Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.
///
/// Spaces after commas are allowed, any one of several `v1` values may match, other
/// schemes are ignored, hex is case-insensitive, and `t` must be within `tolerance`
/// seconds of now in either direction. Each secret (for rotation) is tried in turn.
public struct JicooSignature: SignatureScheme {
    public static let headerName = "Jicoo-Webhook-Signature"
    let keys: [HMAC.Key]
    let tolerance: Int64

    public init(secrets: [Secret], tolerance: Int64 = 300) {
        keys = secrets.map { HMAC.Key($0.bytes) }
        self.tolerance = tolerance
    }

    public func verify(body: UnsafeRawBufferPointer, header: (String) -> String?, now: Int64) throws(SignatureFailure) {
        guard var value = header(Self.headerName) else { throw .missingHeader }
        if let failure = value.withUTF8({ verify(body: body, header: $0, now: now) }) { throw failure }
    }

    /// The check itself, over the header's bytes, with nothing allocated: the header is read
    /// twice in place (once for `t` and the count of `v1`s, then each `v1` against each MAC),
    /// and the MACs and candidates live on the stack. Nil when a secret signed the body.
    private func verify(body: UnsafeRawBufferPointer, header: UnsafeBufferPointer<UInt8>, now: Int64) -> SignatureFailure? {
        var timestamp: UnsafeBufferPointer<UInt8>?
        var candidates = 0
        var wellFormed = 0
        Self.forEachElement(of: header) { key, value in
            if key.elementsEqual("t".utf8) {
                timestamp = value
            } else if key.elementsEqual("v1".utf8) {
                candidates += 1
                if value.count == 64 { wellFormed += 1 }
            }
        }
        guard let timestamp, !timestamp.isEmpty, timestamp.allSatisfy({ $0 >= 48 && $0 <= 57 }), candidates > 0 else {
            return .malformedHeader
        }
        // Eighteen digits cannot overflow; more are no timestamp of this era anyway.
        guard timestamp.count <= 18 else { return .timestampOutsideTolerance }
        let t = timestamp.reduce(Int64(0)) { $0 * 10 + Int64($1 - 48) }
        guard abs(now - t) <= tolerance else { return .timestampOutsideTolerance }
        guard wellFormed > 0 else { return .signatureMismatch }
        // "<t>." (at most 19 bytes), the expected MAC, one candidate's bytes.
        let matched = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 96) { scratch -> Bool in
            let base = scratch.baseAddress!
            UnsafeMutableRawPointer(base).copyMemory(from: timestamp.baseAddress!, byteCount: timestamp.count)
            base[timestamp.count] = UInt8(ascii: ".")
            let prefix = UnsafeRawBufferPointer(start: base, count: timestamp.count + 1)
            let expected = base + 32
            let candidate = base + 64
            for key in keys {
                key.mac(prefix: prefix, body, into: expected)
                var found = false
                Self.forEachElement(of: header) { name, value in
                    guard !found, value.count == 64, name.elementsEqual("v1".utf8),
                          HMAC.unhex(value, into: candidate) else { return }
                    found = CRYPTO_memcmp(expected, candidate, 32) == 0
                }
                if found { return true }
            }
            return false
        }
        return matched ? nil : .signatureMismatch
    }

    /// Calls `visit` with the key and value of each `key=value` element of the header, in
    /// order. Elements are split on `,` (empty ones and those without `=` skipped), and blanks
    /// before a key and after a value are ignored. Read as bytes: splitting Characters, or
    /// even Substrings of the UTF-8 view, cost more than the HMAC's bookkeeping.
    private static func forEachElement(of header: UnsafeBufferPointer<UInt8>,
                                       _ visit: (_ key: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) -> Void) {
        func blank(_ c: UInt8) -> Bool { c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") }
        var start = 0
        while start < header.count {
            var end = start
            while end < header.count, header[end] != UInt8(ascii: ",") { end += 1 }
            var keyStart = start
            while keyStart < end, blank(header[keyStart]) { keyStart += 1 }
            if let eq = header[keyStart..<end].firstIndex(of: UInt8(ascii: "=")) {
                var valueEnd = end
                while valueEnd > eq + 1, blank(header[valueEnd - 1]) { valueEnd -= 1 }
                visit(UnsafeBufferPointer(rebasing: header[keyStart..<eq]), UnsafeBufferPointer(rebasing: header[(eq + 1)..<valueEnd]))
            }
            start = end + 1
        }
    }

    public func sign(body: Data, timestamp: Int64, id: String) -> [(name: String, value: String)] {
        guard let key = keys.first else { return [] }
        let mac = key.mac(prefix: Array("\(timestamp).".utf8), body)
        return [(Self.headerName, "t=\(timestamp),v1=\(HMAC.hex(mac))")]
    }
}

/// GitHub-style `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
public struct HMACSHA256Signature: SignatureScheme {
    let keys: [HMAC.Key]
    let headerName: String

    public init(secrets: [Secret], header: String = "X-Hub-Signature-256") {
        keys = secrets.map { HMAC.Key($0.bytes) }
        headerName = header
    }

    public func verify(body: UnsafeRawBufferPointer, header: (String) -> String?, now: Int64) throws(SignatureFailure) {
        guard let value = header(headerName) else { throw .missingHeader }
        var text = Substring(value).trimmingPrefix(while: { $0 == " " }).trimmingSuffix(while: { $0 == " " })
        if text.lowercased().hasPrefix("sha256=") { text = text.dropFirst(7) }
        guard !text.isEmpty else { throw .malformedHeader }
        guard let given = HMAC.unhex(text), given.count == 32 else { throw .signatureMismatch }
        for key in keys where HMAC.equal(key.mac(body), given) { return }
        throw .signatureMismatch
    }

    public func sign(body: Data, timestamp: Int64, id: String) -> [(name: String, value: String)] {
        guard let key = keys.first else { return [] }
        return [(headerName, "sha256=" + HMAC.hex(key.mac(body)))]
    }
}

/// Standard Webhooks (standardwebhooks.com): `webhook-signature: v1,<base64>` over
/// `<webhook-id>.<webhook-timestamp>.<body>`, keyed with the base64-decoded secret.
///
/// The timestamp may be `tolerance` seconds old or ahead and no more: like the reference
/// libraries (JavaScript: `now - timestamp > tolerance` fails; Python: `timestamp < now -
/// tolerance` fails), a timestamp exactly `tolerance` seconds away is accepted.
public struct StandardWebhooksSignature: SignatureScheme {
    let keys: [HMAC.Key]
    let tolerance: Int64

    /// Fails for a secret that is not base64 or decodes to nothing (``key(of:)``).
    public init(secrets: [Secret], tolerance: Int64 = 300) throws(SecretFormatError) {
        var keys: [HMAC.Key] = []
        for secret in secrets { keys.append(HMAC.Key(try Self.key(of: secret))) }
        self.keys = keys
        self.tolerance = tolerance
    }

    /// The HMAC key of a secret (``StandardWebhooksKey/decode(_:)``, shared with the webhook
    /// notifier that signs).
    public static func key(of secret: Secret) throws(SecretFormatError) -> [UInt8] {
        try StandardWebhooksKey.decode(secret.bytes)
    }

    public func verify(body: UnsafeRawBufferPointer, header: (String) -> String?, now: Int64) throws(SignatureFailure) {
        guard let id = header("webhook-id"), let ts = header("webhook-timestamp"), let sig = header("webhook-signature")
        else { throw .missingHeader }
        guard !id.isEmpty, !ts.isEmpty, ts.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { throw .malformedHeader }
        guard ts.utf8.count <= 18, let t = Int64(ts), abs(now - t) <= tolerance else { throw .timestampOutsideTolerance }
        let candidates = sig.split(separator: " ").compactMap { part -> [UInt8]? in
            guard part.hasPrefix("v1,"), let data = Data(base64Encoded: String(part.dropFirst(3))) else { return nil }
            return Array(data)
        }
        guard !candidates.isEmpty else {
            if sig.split(separator: " ").contains(where: { $0.contains(",") }) { throw .signatureMismatch }
            throw .malformedHeader
        }
        let prefix = Array("\(id).\(ts).".utf8)
        for key in keys {
            let expected = key.mac(prefix: prefix, body)
            for candidate in candidates where HMAC.equal(expected, candidate) { return }
        }
        throw .signatureMismatch
    }

    public func sign(body: Data, timestamp: Int64, id: String) -> [(name: String, value: String)] {
        guard let key = keys.first else { return [] }
        let mac = key.mac(prefix: Array("\(id).\(timestamp).".utf8), body)
        return [
            ("webhook-id", id),
            ("webhook-timestamp", String(timestamp)),
            ("webhook-signature", "v1," + Data(mac).base64EncodedString()),
        ]
    }
}

extension Substring {
    func trimmingSuffix(while predicate: (Character) -> Bool) -> Substring {
        var s = self
        while let last = s.last, predicate(last) { s = s.dropLast() }
        return s
    }
}
