import Foundation
import HeraldCore
import HeraldTesting
import Logging
import Synchronization
import Testing

@testable import ChatNotifiers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A TCP port on 127.0.0.1 held for one test. Listening, it accepts connections (the kernel
/// completes the handshake) but never reads or answers: a service that hangs. Bound but not
/// listening, it refuses connections; holding it keeps parallel tests from taking the port.
final class LocalPort: Sendable {
    let fd: Int32
    let port: Int

    init(listening: Bool) throws {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, length) == 0 && (!listening || listen(fd, 16) == 0) && getsockname(fd, sa, &length) == 0
            }
        }
        guard ok else {
            close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(fd) }
}

/// A plugin context with its own shared resources; ``shutdown()`` closes the HTTP client.
struct Harness: Sendable {
    let shared = SharedResources()

    var context: PluginContext {
        PluginContext.testing(baseDirectory: "/tmp", shared: shared)
    }

    func shutdown() async throws {
        try await shared.get(SharedHTTPClient.self) { SharedHTTPClient() }.shutdown()
    }

    /// Runs `body`, then shuts the client down whether or not it threw.
    static func with<T: Sendable>(_ body: (Harness) async throws -> T) async throws -> T {
        let harness = Harness()
        do {
            let result = try await body(harness)
            try await harness.shutdown()
            return result
        } catch {
            try await harness.shutdown()
            throw error
        }
    }
}

/// Events and notifications to send.
enum Fixture {
    static let receivedAt = Date(timeIntervalSince1970: 1_795_000_000)

    static func event(_ name: String = "guest_booked") throws -> Event {
        try SampleEvents.event(name, id: "evt_0000test0001", receivedAt: receivedAt)
    }

    static let fields = [
        HeraldNotification.Field("日時", "2026年11月27日(金) 14:00〜15:00 (JST)"),
        HeraldNotification.Field("ゲスト", "山田 太郎 <taro.yamada@example.jp>", short: true),
        HeraldNotification.Field("ご相談内容", "料金プランについて 💴", short: true),
    ]

    /// A booking notification in Japanese with emoji and characters markup cares about.
    static func notification(
        title: String = "新しい予約: 山田 太郎 様 🎉", text: String = "ご予約ありがとうございます。\n<b>料金</b> & *プラン* について",
        fields: [HeraldNotification.Field] = fields, kind: HeraldNotification.Kind = .booked, event: String = "guest_booked",
        deliveryKey: String = "evt_0000test0001:chat", locale: HeraldLocale = .ja
    ) throws -> HeraldNotification {
        HeraldNotification(event: try Fixture.event(event), title: title, text: text, fields: fields, kind: kind,
                     locale: locale, deliveryKey: deliveryKey)
    }
}

/// Parses JSON text written in a test, for comparing bodies structurally.
func json(_ text: String) -> JSONValue {
    do { return try JSONValue.parse(Data(text.utf8)) } catch { fatalError("bad JSON in test: \(error)") }
}
