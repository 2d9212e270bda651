import COpenSSL
import Foundation
import Synchronization

/// HMAC-SHA256 and SHA-256 through OpenSSL's libcrypto, and a constant-time comparison.
public enum HMAC {
    /// A secret turned into a keyed OpenSSL context once, reused for every message.
    public final class Key: @unchecked Sendable {
        // `context` is immutable after init; OpenSSL only reads it when duplicating, which is
        // thread-safe. Each thread-safe use takes a keyed copy from `spare` (or duplicates one)
        // and puts it back, so the key schedule is computed once per copy, not per message.
        private let context: OpaquePointer
        private let spare = Mutex<[KeyedContext]>([])

        private struct KeyedContext: @unchecked Sendable { let pointer: OpaquePointer }

        public init(_ secret: [UInt8]) {
            let made = secret.withUnsafeBufferPointer { herald_hmac_sha256_keyed($0.baseAddress, $0.count) }
            guard let made else { fatalError("OpenSSL could not create an HMAC-SHA256 context") }
            context = made
        }

        deinit {
            EVP_MAC_CTX_free(context)
            spare.withLock { for c in $0 { EVP_MAC_CTX_free(c.pointer) } }
        }

        /// HMAC-SHA256 over `prefix ‖ body ‖ suffix` without joining them first.
        public func mac(prefix: [UInt8] = [], _ body: UnsafeRawBufferPointer, suffix: [UInt8] = []) -> [UInt8] {
            [UInt8](unsafeUninitializedCapacity: 32) { out, count in
                prefix.withUnsafeBytes { p in
                    suffix.withUnsafeBytes { s in write(p, body, s, into: out.baseAddress!) }
                }
                count = 32
            }
        }

        /// HMAC-SHA256 over `prefix ‖ body`, its 32 bytes written to `out` (for callers that
        /// keep them on the stack).
        func mac(prefix: UnsafeRawBufferPointer, _ body: UnsafeRawBufferPointer, into out: UnsafeMutablePointer<UInt8>) {
            write(prefix, body, UnsafeRawBufferPointer(start: nil, count: 0), into: out)
        }

        private func write(_ prefix: UnsafeRawBufferPointer, _ body: UnsafeRawBufferPointer, _ suffix: UnsafeRawBufferPointer,
                           into out: UnsafeMutablePointer<UInt8>) {
            guard let ctx = spare.withLock({ $0.popLast()?.pointer }) ?? EVP_MAC_CTX_dup(context) else {
                fatalError("OpenSSL could not duplicate an HMAC-SHA256 context")
            }
            let ok = herald_hmac_sha256_reuse(ctx, prefix.baseAddress, prefix.count, body.baseAddress, body.count,
                                              suffix.baseAddress, suffix.count, out)
            precondition(ok == 1, "OpenSSL HMAC-SHA256 failed")
            spare.withLock { $0.append(KeyedContext(pointer: ctx)) }
        }

        public func mac(prefix: [UInt8] = [], _ body: some ContiguousBytes) -> [UInt8] {
            body.withUnsafeBytes { mac(prefix: prefix, $0) }
        }
    }

    /// SHA-256 digest.
    public static func sha256(_ data: some ContiguousBytes) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        let ok = data.withUnsafeBytes { d in
            out.withUnsafeMutableBufferPointer { herald_sha256(d.baseAddress, d.count, $0.baseAddress) }
        }
        precondition(ok == 1, "OpenSSL SHA-256 failed")
        return out
    }

    /// Compares two MACs in constant time (for equal lengths) with `CRYPTO_memcmp`.
    public static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count, !a.isEmpty else { return false }
        return a.withUnsafeBytes { x in b.withUnsafeBytes { y in CRYPTO_memcmp(x.baseAddress, y.baseAddress, a.count) == 0 } }
    }

    /// Lowercase hex.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0xF)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Bytes from hex of either case; nil for odd length or a non-hex digit.
    public static func unhex(_ text: Substring) -> [UInt8]? {
        var text = text
        return text.withUTF8 { unhex($0) }
    }

    /// The bytes the hex digits in `utf8` stand for; nil for an odd count or a non-hex byte.
    static func unhex(_ utf8: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard utf8.count % 2 == 0 else { return nil }
        var valid = false
        let out = [UInt8](unsafeUninitializedCapacity: utf8.count / 2) { buffer, count in
            valid = utf8.isEmpty || unhex(utf8, into: buffer.baseAddress!)
            count = valid ? utf8.count / 2 : 0
        }
        return valid ? out : nil
    }

    /// Writes the `utf8.count / 2` bytes the hex digits in `utf8` (an even count) stand for to
    /// `out`; false at the first byte that is not a hex digit of either case.
    static func unhex(_ utf8: UnsafeBufferPointer<UInt8>, into out: UnsafeMutablePointer<UInt8>) -> Bool {
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: c - 48
            case 97...102: c - 87
            case 65...70: c - 55
            default: nil
            }
        }
        var i = 0
        while i + 1 < utf8.count {
            guard let h = nibble(utf8[i]), let l = nibble(utf8[i + 1]) else { return false }
            out[i / 2] = h << 4 | l
            i += 2
        }
        return true
    }
}
