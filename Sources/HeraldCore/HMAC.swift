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
            guard let ctx = spare.withLock({ $0.popLast()?.pointer }) ?? EVP_MAC_CTX_dup(context) else {
                fatalError("OpenSSL could not duplicate an HMAC-SHA256 context")
            }
            var out = [UInt8](repeating: 0, count: 32)
            let ok = prefix.withUnsafeBytes { p in
                suffix.withUnsafeBytes { s in
                    out.withUnsafeMutableBufferPointer { o in
                        herald_hmac_sha256_reuse(ctx, p.baseAddress, p.count, body.baseAddress, body.count,
                                                 s.baseAddress, s.count, o.baseAddress)
                    }
                }
            }
            precondition(ok == 1, "OpenSSL HMAC-SHA256 failed")
            spare.withLock { $0.append(KeyedContext(pointer: ctx)) }
            return out
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
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: c - 48
            case 97...102: c - 87
            case 65...70: c - 55
            default: nil
            }
        }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count / 2)
        var it = utf8.makeIterator()
        while let hi = it.next(), let lo = it.next() {
            guard let h = nibble(hi), let l = nibble(lo) else { return nil }
            out.append(h << 4 | l)
        }
        return out
    }
}
