import Foundation

/// A rendered notification: what a notifier sends for one event.
///
/// Templates produce ``title``, ``text`` and ``html``; Herald adds labelled ``fields`` (when,
/// who, answers, cancel reason) so that chat cards and emails can lay them out natively.
/// The original ``event`` stays attached, raw JSON included, for plugins that need more.
public struct HeraldNotification: Sendable {
    /// The event this notification is about.
    public var event: Event
    /// One line: an email subject, a card header.
    public var title: String
    /// Plain-text body (UTF-8, newlines as `\n`, no markup).
    public var text: String
    /// Optional HTML body for notifiers that can show it (email).
    public var html: String?
    /// Labelled facts, in display order.
    public var fields: [Field]
    /// What happened to the booking, for colours, icons and calendar methods.
    public var kind: Kind
    /// The language the notification was rendered in.
    public var locale: HeraldLocale
    /// Free-form options from the route that produced this notification (`options:` in a
    /// route), e.g. `toGuest: "true"` for the email notifier.
    public var routeOptions: [String: String]
    /// Stable for one event at one notifier, across retries and restarts: use it as an
    /// idempotency key where the target supports one (email Message-ID, webhook-id).
    public var deliveryKey: String
    /// 1 for the first attempt, 2 for the first retry, …
    public var attempt: Int

    /// A notification; Herald's renderer makes these, tests use `HeraldNotification.rendered`
    /// from HeraldTesting. An empty `deliveryKey` becomes the event id.
    public init(
        event: Event, title: String, text: String, html: String? = nil, fields: [Field] = [],
        kind: Kind = .other, locale: HeraldLocale = .en, routeOptions: [String: String] = [:],
        deliveryKey: String = "", attempt: Int = 1
    ) {
        self.event = event
        self.title = title
        self.text = text
        self.html = html
        self.fields = fields
        self.kind = kind
        self.locale = locale
        self.routeOptions = routeOptions
        self.deliveryKey = deliveryKey.isEmpty ? event.id : deliveryKey
        self.attempt = attempt
    }

    /// The ``deliveryKey`` Herald gives the notification of one event at one notifier.
    package static func deliveryKey(eventID: String, notifier: String) -> String {
        String(concatenating: [eventID, ".", notifier])
    }

    /// A labelled value, e.g. "Guest" → "山田 太郎 <taro@example.jp>".
    public struct Field: Sendable, Equatable {
        /// The label, in the notification's language.
        public var name: String
        /// The value, plain text.
        public var value: String
        /// Short enough to sit next to another field in a two-column layout.
        public var short: Bool
        /// A field; `short` if it fits half a card's width.
        public init(_ name: String, _ value: String, short: Bool = false) {
            self.name = name
            self.value = value
            self.short = short
        }
    }

    /// What the event did to the booking.
    public enum Kind: String, Sendable, CaseIterable {
        /// A new booking (`guest_booked`).
        case booked
        /// Moved by the guest or the host.
        case rescheduled
        /// Cancelled by the guest or the host.
        case cancelled
        /// A booking request that waits for the host (`guest_booking_request_created`).
        case requested
        /// A request the host accepted.
        case accepted
        /// A request the host declined.
        case declined
        /// Any other event, including ones from generic sources.
        case other

        /// The kind for a Jicoo event name; unknown names are `.other`.
        public init(eventName: String) {
            switch eventName {
            case "guest_booked": self = .booked
            case "guest_rescheduled", "host_rescheduled": self = .rescheduled
            case "guest_cancelled", "host_cancelled": self = .cancelled
            case "guest_booking_request_created": self = .requested
            case "host_booking_request_accepted": self = .accepted
            case "host_booking_request_declined": self = .declined
            default: self = .other
            }
        }

        /// A colour per kind as 0xRRGGBB: green for new, amber for moved, red for cancelled.
        public var color: UInt32 {
            switch self {
            case .booked, .accepted: 0x2EB67D
            case .rescheduled: 0xECB22E
            case .cancelled, .declined: 0xE01E5A
            case .requested: 0x36C5F0
            case .other: 0x8D8D8D
            }
        }

        /// `#RRGGBB`.
        public var hexColor: String { "#" + String(format: "%06X", color) }

        /// A small icon for chat messages.
        public var emoji: String {
            switch self {
            case .booked: "📅"
            case .rescheduled: "🔁"
            case .cancelled: "❌"
            case .requested: "📝"
            case .accepted: "✅"
            case .declined: "🚫"
            case .other: "🔔"
            }
        }
    }
}

/// Languages with built-in templates.
public enum HeraldLocale: String, Sendable, CaseIterable, Codable {
    /// English.
    case en
    /// Japanese.
    case ja
}
