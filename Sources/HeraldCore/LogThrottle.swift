import Logging
import Synchronization

/// Logs a line that can repeat per request (a full disk, descriptors running out, a flood of
/// refused connections) at most once per interval, with a count of the ones held back.
///
/// The first occurrence is logged at once; the next ones within `interval` are only counted;
/// the first one after the interval is logged with "(and N more like it in the last 10s)".
/// While the disk was full, one line per rejected request made 29,514 lines in 15 s; this
/// makes it two. One throttle per kind of line: lines of different kinds do not hide each other.
public final class LogThrottle: Sendable {
    public let interval: Duration
    private let now: @Sendable () -> ContinuousClock.Instant
    private struct State {
        var lastLogged: ContinuousClock.Instant?
        var heldBack = 0
    }
    private let state = Mutex(State())

    /// - Parameter now: the clock; tests pass one they advance by hand.
    public init(interval: Duration = .seconds(10), now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }) {
        self.interval = interval
        self.now = now
    }

    /// Whether this occurrence is to be logged: `nil` when it is only counted, otherwise how
    /// many were held back since the last line that was logged.
    public func admit() -> Int? {
        let t = now()
        return state.withLock { s -> Int? in
            if let last = s.lastLogged, t < last + interval {
                s.heldBack += 1
                return nil
            }
            let held = s.heldBack
            s.lastLogged = t
            s.heldBack = 0
            return held
        }
    }

    /// Logs `message` if ``admit()`` lets it through, saying how many like it were held back.
    public func log(_ logger: Logger, _ level: Logger.Level, _ message: @autoclosure () -> String,
                    metadata: @autoclosure () -> Logger.Metadata? = nil) {
        guard logger.logLevel <= level, let held = admit() else { return }
        let text = held == 0 ? message() : "\(message()) (and \(held) more like it in the last \(Self.describe(interval)))"
        logger.log(level: level, "\(text)", metadata: metadata())
    }

    /// `10s`, `1m`, `250ms`: the interval as the configuration would write it.
    static func describe(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        if ms % 60_000 == 0 { return "\(ms / 60_000)m" }
        if ms % 1000 == 0 { return "\(ms / 1000)s" }
        return "\(ms)ms"
    }
}
