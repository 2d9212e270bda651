/// Why a delivery attempt failed, and what the dispatcher should do about it.
///
/// Plugins throw this from ``NotifierPlugin/deliver(_:)``. Messages must be safe to log and
/// store in the journal: never include a secret, a token or a full webhook URL.
public struct DeliveryError: Error, Sendable, CustomStringConvertible, Equatable {
    /// What the dispatcher does after a failed attempt.
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

    /// Whether and when the delivery is tried again.
    public var disposition: Disposition
    /// What went wrong, for the log and `herald deliveries show`.
    public var message: String

    /// An error with an explicit disposition; the static functions below read better.
    public init(_ disposition: Disposition, _ message: String) {
        self.disposition = disposition
        self.message = message
    }

    /// A failure that may not happen next time (a network error, HTTP 429 or 5xx, SMTP 4xx).
    /// `after` is the target's own wait (e.g. `Retry-After`), which wins over the backoff.
    public static func retryable(_ message: String, after: Duration? = nil) -> DeliveryError {
        DeliveryError(.retryable(after: after), message)
    }

    /// The target refused this notification for good: the delivery is dead at once.
    public static func permanent(_ message: String) -> DeliveryError {
        DeliveryError(.permanent, message)
    }

    /// The settings cannot work (a wrong password, an untrusted certificate): the delivery is
    /// dead at once and the message tells a person what to fix.
    public static func configuration(_ message: String) -> DeliveryError {
        DeliveryError(.configuration, message)
    }

    /// `error` as Herald's dispatcher treats it: a ``DeliveryError`` as it is, anything else
    /// as retryable with its description.
    package init(treating error: any Error) {
        self = error as? DeliveryError ?? .retryable(String(describing: error))
    }

    /// Whether the dispatcher will try again.
    public var isRetryable: Bool {
        if case .retryable = disposition { return true }
        return false
    }

    /// The disposition, then the message: `retryable (after 7.0 seconds): Slack answered HTTP 429`.
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
