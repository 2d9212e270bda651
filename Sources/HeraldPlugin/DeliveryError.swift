/// Why a delivery attempt failed, and what the dispatcher should do about it.
///
/// Plugins throw this from ``NotifierPlugin/deliver(_:)``. Messages must be safe to log and
/// store in the journal: never include a secret, a token or a full webhook URL.
public struct DeliveryError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Disposition: Sendable, Equatable {
        /// Try again later; `after` is the target's own hint (e.g. `Retry-After`) and wins
        /// over the notifier's backoff schedule.
        case retryable(after: Duration?)
        /// The target refused this notification for good (e.g. SMTP 550, HTTP 400).
        case permanent
        /// The notifier is misconfigured (wrong password, bad certificate); retrying
        /// cannot help until a person fixes the configuration.
        case configuration
    }

    public var disposition: Disposition
    public var message: String

    public init(_ disposition: Disposition, _ message: String) {
        self.disposition = disposition
        self.message = message
    }

    public static func retryable(_ message: String, after: Duration? = nil) -> DeliveryError {
        DeliveryError(.retryable(after: after), message)
    }

    public static func permanent(_ message: String) -> DeliveryError {
        DeliveryError(.permanent, message)
    }

    public static func configuration(_ message: String) -> DeliveryError {
        DeliveryError(.configuration, message)
    }

    public var isRetryable: Bool {
        if case .retryable = disposition { return true }
        return false
    }

    public var description: String {
        switch disposition {
        case .retryable(let after):
            if let after { return "retryable (after \(after)): \(message)" }
            return "retryable: \(message)"
        case .permanent: return "permanent: \(message)"
        case .configuration: return "configuration: \(message)"
        }
    }
}
