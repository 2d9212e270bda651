#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// System errors as the end of a sentence a user can act on, for error messages that are
/// stored with a delivery and shown by `herald deliveries show` and in logs.
public enum SystemErrorText {
    /// `strerror` in lower case: "permission denied", "read-only file system".
    public static func reason(_ code: Int32) -> String {
        let text = String(cString: strerror(code))
        return text.prefix(1).lowercased() + text.dropFirst()
    }

    /// One sentence for a failed connection to `target` (`host:port`), e.g. "connection
    /// refused by 127.0.0.1:2525", rather than NIO's `connection reset (error set):
    /// Connection refused) (errno: 111)`.
    public static func connectFailure(errno code: Int32, target: String) -> String {
        switch code {
        case ECONNREFUSED: "connection refused by \(target)"
        case ECONNRESET: "connection reset by \(target)"
        case ETIMEDOUT: "connection to \(target) timed out"
        case EHOSTUNREACH: "\(target) is unreachable (no route to host)"
        case ENETUNREACH: "\(target) is unreachable (network unreachable)"
        default: "cannot connect to \(target): \(reason(code))"
        }
    }
}
