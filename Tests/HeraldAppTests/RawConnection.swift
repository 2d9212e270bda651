import Foundation

/// A plain TCP connection to 127.0.0.1 for sending what no HTTP client would: partial
/// headers, half bodies, broken chunking. Blocking reads run on a thread of their own, so they
/// never hold a thread of the concurrency pool that the in-process server needs.
struct RawConnection: Sendable {
    let fd: Int32

    /// - Parameter safety: how long a read may block before giving up; a net against a hung
    ///   test, never what a test measures.
    init(port: Int, safety: Int = 20) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HeraldProcessError(message: "socket: errno \(errno)") }
        var timeout = timeval(tv_sec: safety, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            Glibc.close(fd)
            throw HeraldProcessError(message: "connect: errno \(errno)")
        }
        self.fd = fd
    }

    /// Sends all of `text`; false if the peer has gone.
    @discardableResult
    func send(_ text: String) -> Bool { send(Data(text.utf8)) }

    @discardableResult
    func send(_ data: Data) -> Bool {
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if n <= 0 { return false }
                offset += n
            }
            return true
        }
    }

    /// Ends the sending side (the server sees end of input) and keeps reading possible.
    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    func close() { Glibc.close(fd) }

    /// Everything the server sends until it closes the connection; `closed` is false if the
    /// safety timeout ended the wait instead.
    func readUntilClosed() async -> (text: String, closed: Bool) {
        let fd = fd
        return await onOwnThread {
            var received = Data()
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = recv(fd, &buffer, buffer.count, 0)
                if n > 0 { received.append(contentsOf: buffer[..<n]); continue }
                return (String(decoding: received, as: UTF8.self), n == 0 || errno == ECONNRESET)
            }
        }
    }

    /// One HTTP response (header and a Content-Length body), or nil if the connection ended first.
    func readResponse() async -> (status: Int, headers: String, body: String)? {
        let fd = fd
        return await onOwnThread {
            var received = Data()
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                if let end = received.range(of: Data("\r\n\r\n".utf8)) {
                    let head = String(decoding: received[..<end.lowerBound], as: UTF8.self)
                    let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                        .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                    if received.count - end.upperBound >= length {
                        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
                        let body = String(decoding: received[end.upperBound..<(end.upperBound + length)], as: UTF8.self)
                        return (status, head, body)
                    }
                }
                let n = recv(fd, &buffer, buffer.count, 0)
                if n <= 0 { return nil }
                received.append(contentsOf: buffer[..<n])
            }
        }
    }
}

extension RawConnection {
    /// Whether the peer closes at least one of `connections` (waiting up to 20 s as a safety net).
    static func anyClosedByPeer(_ connections: [RawConnection]) async -> Bool {
        let fds = connections.map(\.fd)
        return await onOwnThread {
            var polled = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            guard poll(&polled, nfds_t(polled.count), 20_000) > 0 else { return false }
            var byte: UInt8 = 0
            return polled.contains { $0.revents != 0 && recv($0.fd, &byte, 1, Int32(MSG_DONTWAIT)) == 0 }
        }
    }
}

/// Runs blocking work on a new thread and waits for it without blocking the caller's thread.
func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread.detachNewThread { continuation.resume(returning: work()) }
    }
}
