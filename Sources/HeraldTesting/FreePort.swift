import Foundation

/// A free TCP port on 127.0.0.1 (bound, read, released): for a server a test starts, or as
/// a port where nothing listens.
public func freePort() -> Int {
    RefusingPort().port  // released again at once
}

/// A port on 127.0.0.1 where nothing listens, kept so for as long as this object lives: its
/// socket is bound but never listens, so a connection to it is refused, and no other server
/// (a test running in parallel) can take the port meanwhile, as it could a ``freePort()``.
public final class RefusingPort: Sendable {
    public let port: Int
    private let fd: Int32

    public init() {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = Int(UInt16(bigEndian: addr.sin_port))
    }

    deinit { close(fd) }
}
