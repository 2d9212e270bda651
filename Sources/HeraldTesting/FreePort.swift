import Foundation

/// A port on 127.0.0.1 where nothing listens, kept so for as long as this object lives.
///
/// Its socket is bound but never listens, so a connection to it is refused, and no server a
/// test starts in parallel on port 0 is given this port meanwhile (a port bound and released
/// at once could be, and the test would then talk to that server). The socket is bound with
/// `SO_REUSEADDR`, so the test itself can later start its own server on the port with that
/// option (NIO and Python's asyncio set it) while the reservation still holds: a target that
/// is down and comes up later, with no moment in which another process can take its port.
public final class RefusingPort: Sendable {
    public let port: Int
    private let fd: Int32

    public init() {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var reuse: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
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
