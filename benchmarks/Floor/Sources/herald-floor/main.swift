// herald-floor [--nio] PORT SECRET [OUTFILE]
//
// The floor for benchmarks/run.sh: the least a Swift receiver on Herald's HTTP stack
// (Hummingbird 2 over SwiftNIO) must do for a Jicoo webhook, and nothing more. POST
// /hooks/jicoo: read the body (at most 1 MiB), check `Jicoo-Webhook-Signature: t=<unix>,v1=<hex>`
// (HMAC-SHA256 over "<t>.<body>", 300 s tolerance, any v1 may match, constant-time compare),
// with OUTFILE append the body and a newline with one write(2) on an O_APPEND descriptor (no
// fsync, like the aiohttp receiver), answer 202. GET /healthz answers 200. No journal, no
// decoding, no rendering, no logging: what Herald costs above this is Herald's own work.
import CLibCrypto
import Foundation
import HTTPTypes
import Hummingbird

#if canImport(Glibc)
import Glibc
#endif

// `--nio`: the plain SwiftNIO handler of NIOFloor.swift instead of Hummingbird.
let nio = CommandLine.arguments.dropFirst().first == "--nio"
let arguments = nio ? [CommandLine.arguments[0]] + CommandLine.arguments.dropFirst(2) : CommandLine.arguments
guard arguments.count == 3 || arguments.count == 4, let port = Int(arguments[1]) else {
    FileHandle.standardError.write(Data("usage: herald-floor [--nio] PORT SECRET [OUTFILE]\n".utf8))
    exit(2)
}

/// Everything the handler reads, made once: a keyed HMAC context and the output descriptor.
struct Receiver: @unchecked Sendable {
    // OpenSSL only reads `keyed` when duplicating it, which is thread-safe.
    let keyed: OpaquePointer
    let fd: Int32

    static let tolerance = 300

    func verify(_ header: String, body: ByteBuffer) -> Bool {
        var timestamp: Substring?
        var candidates: [Substring] = []
        for part in header.split(separator: ",") {
            let field = part.drop(while: { $0 == " " })
            if field.hasPrefix("t=") { timestamp = field.dropFirst(2) }
            else if field.hasPrefix("v1=") { candidates.append(field.dropFirst(3)) }
        }
        guard let timestamp, let t = Int(timestamp), !candidates.isEmpty,
              abs(Int(time(nil)) - t) <= Self.tolerance else { return false }
        var mac = [UInt8](repeating: 0, count: 32)
        let prefix = Array(timestamp.utf8) + [UInt8(ascii: ".")]
        let ok = body.withUnsafeReadableBytes { b in
            prefix.withUnsafeBytes { p in
                mac.withUnsafeMutableBufferPointer { floor_hmac_sha256(keyed, p.baseAddress, p.count, b.baseAddress, b.count, $0.baseAddress) }
            }
        }
        guard ok == 1 else { return false }
        for candidate in candidates {
            guard let expected = Self.unhex(candidate), expected.count == 32 else { continue }
            if CRYPTO_memcmp(expected, mac, 32) == 0 { return true }
        }
        return false
    }

    static func unhex(_ text: Substring) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: c - 48
            case 97...102: c - 87
            case 65...70: c - 55
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(digits.count / 2)
        var i = 0
        while i < digits.count {
            guard let hi = nibble(digits[i]), let lo = nibble(digits[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    func append(_ body: ByteBuffer) -> Bool {
        guard fd >= 0 else { return true }
        var line = body
        line.writeInteger(UInt8(ascii: "\n"))
        let written = line.withUnsafeReadableBytes { write(fd, $0.baseAddress, $0.count) }
        return written == line.readableBytes
    }
}

let secret = Array(arguments[2].utf8)
guard let keyed = secret.withUnsafeBytes({ floor_keyed_context($0.baseAddress, $0.count) }) else {
    FileHandle.standardError.write(Data("herald-floor: OpenSSL could not key HMAC-SHA256\n".utf8))
    exit(1)
}
let fd: Int32 = arguments.count == 4 ? open(arguments[3], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644) : -1
if arguments.count == 4 && fd < 0 {
    FileHandle.standardError.write(Data("herald-floor: cannot open \(arguments[3])\n".utf8))
    exit(1)
}
let receiver = Receiver(keyed: keyed, fd: fd)
if nio { try runNIOFloor(port: port, receiver: receiver) }

let signatureHeader = HTTPField.Name("Jicoo-Webhook-Signature")!
let router = Router()
router.post("/hooks/jicoo") { request, _ -> Response in
    guard let header = request.headers[signatureHeader] else {
        return Response(status: .unauthorized)
    }
    let body = try await request.body.collect(upTo: 1 << 20)
    guard receiver.verify(header, body: body) else { return Response(status: .unauthorized) }
    guard receiver.append(body) else { return Response(status: .serviceUnavailable) }
    return Response(status: .accepted, headers: [.contentType: "application/json"],
                    body: ResponseBody(byteBuffer: ByteBuffer(string: "{\"ok\":true}\n")))
}
router.get("/healthz") { _, _ in "ok" }
let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)))
try await app.runService()
