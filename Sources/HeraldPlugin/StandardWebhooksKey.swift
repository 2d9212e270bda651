import Foundation

/// A secret written in a form its scheme cannot use. The message never contains the secret.
public struct SecretFormatError: Error, Sendable, CustomStringConvertible {
    /// What is wrong with the secret, without the secret.
    public let message: String
    /// An error with `message`.
    public init(_ message: String) { self.message = message }
    /// The message.
    public var description: String { message }
}

/// The HMAC key of a Standard Webhooks secret, decoded as the reference libraries decode it:
/// an optional `whsec_` prefix, then standard base64, padding optional.
///
/// The one rule for both directions: Herald's endpoints that verify (`scheme:
/// standard-webhooks`) and the `webhook` notifier that signs.
public enum StandardWebhooksKey {
    /// The key bytes of `secret`; throws for a secret that is not base64 or decodes to nothing.
    public static func decode(_ secret: some Collection<UInt8>) throws(SecretFormatError) -> [UInt8] {
        var text = Substring(decoding: Array(secret), as: UTF8.self)
        if text.hasPrefix("whsec_") { text = text.dropFirst(6) }
        guard !text.isEmpty else { throw SecretFormatError("a Standard Webhooks secret needs base64 after whsec_; it is empty") }
        let core = text.utf8.reversed().drop(while: { $0 == UInt8(ascii: "=") }).count
        let notBase64 = SecretFormatError("a Standard Webhooks secret must be whsec_ followed by base64 (A-Z, a-z, 0-9, +, /)")
        // At most two "=", and never one character past a multiple of four (no byte ends there).
        guard text.utf8.count - core <= 2, core % 4 != 1 else { throw notBase64 }
        let padded = String(decoding: text.utf8.prefix(core), as: UTF8.self) + String(repeating: "=", count: (4 - core % 4) % 4)
        guard let data = Data(base64Encoded: padded) else { throw notBase64 }
        guard !data.isEmpty else { throw SecretFormatError("a Standard Webhooks secret must not decode to an empty key") }
        return Array(data)
    }
}
