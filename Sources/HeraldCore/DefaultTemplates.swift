/// Herald's built-in templates: a title and a lead sentence per Jicoo event, in English and
/// Japanese, followed by one shared body. Users override them per route with `template:`.
enum DefaultTemplates {
    struct Text { let title: String; let lead: String }

    static let en: [String: Text] = [
        "guest_booked": Text(title: "New booking: {{guest.name}} — {{when}}", lead: "{{guest.name}} booked a meeting."),
        "guest_rescheduled": Text(title: "Rescheduled by guest: {{guest.name}} — {{when}}", lead: "{{guest.name}} moved their booking to a new time."),
        "host_rescheduled": Text(title: "Rescheduled by host: {{guest.name}} — {{when}}", lead: "The booking with {{guest.name}} was moved to a new time by the host."),
        "guest_cancelled": Text(title: "Cancelled by guest: {{guest.name}} — {{when}}", lead: "{{guest.name}} cancelled their booking."),
        "host_cancelled": Text(title: "Cancelled by host: {{guest.name}} — {{when}}", lead: "The host cancelled the booking with {{guest.name}}."),
        "guest_booking_request_created": Text(title: "Booking request: {{guest.name}} — {{when}}", lead: "{{guest.name}} requested a booking. It needs your approval."),
        "host_booking_request_accepted": Text(title: "Request accepted: {{guest.name}} — {{when}}", lead: "The booking request from {{guest.name}} was accepted."),
        "host_booking_request_declined": Text(title: "Request declined: {{guest.name}} — {{when}}", lead: "The booking request from {{guest.name}} was declined."),
        // Not an event: what a route's `remind:` sends before the start.
        "reminder": Text(title: "Reminder: {{guest.name}} {{startsIn}} — {{when}}", lead: "Your meeting with {{guest.name}} starts {{startsIn}}."),
    ]

    static let ja: [String: Text] = [
        "guest_booked": Text(title: "新しい予約: {{guest.name}} 様 — {{when}}", lead: "{{guest.name}} 様から予約が入りました。"),
        "guest_rescheduled": Text(title: "ゲストが日程を変更: {{guest.name}} 様 — {{when}}", lead: "{{guest.name}} 様が予約の日程を変更しました。"),
        "host_rescheduled": Text(title: "ホストが日程を変更: {{guest.name}} 様 — {{when}}", lead: "{{guest.name}} 様との予約の日程をホストが変更しました。"),
        "guest_cancelled": Text(title: "ゲストがキャンセル: {{guest.name}} 様 — {{when}}", lead: "{{guest.name}} 様が予約をキャンセルしました。"),
        "host_cancelled": Text(title: "ホストがキャンセル: {{guest.name}} 様 — {{when}}", lead: "{{guest.name}} 様との予約をホストがキャンセルしました。"),
        "guest_booking_request_created": Text(title: "予約リクエスト: {{guest.name}} 様 — {{when}}", lead: "{{guest.name}} 様から予約リクエストが届きました。承認をお願いします。"),
        "host_booking_request_accepted": Text(title: "リクエスト承認: {{guest.name}} 様 — {{when}}", lead: "{{guest.name}} 様の予約リクエストを承認しました。"),
        "host_booking_request_declined": Text(title: "リクエスト却下: {{guest.name}} 様 — {{when}}", lead: "{{guest.name}} 様の予約リクエストを却下しました。"),
        "reminder": Text(title: "リマインダー: {{guest.name}} 様 {{startsIn}} — {{when}}", lead: "{{guest.name}} 様との予定が{{startsIn}}に始まります。"),
    ]

    /// For event names Herald does not know (kept and routable, never rejected).
    static let unknown: [HeraldLocale: Text] = [
        .en: Text(title: "{{sourceLabel}} event {{event}}{{#guest.name}}: {{guest.name}}{{/guest.name}}", lead: "Herald received a {{event}} event."),
        .ja: Text(title: "{{sourceLabel}} イベント {{event}}{{#guest.name}}: {{guest.name}} 様{{/guest.name}}", lead: "{{event}} イベントを受け取りました。"),
    ]

    /// The daily agenda (a notifier's `agenda:`): the day's bookings, one line each.
    static let agenda: [HeraldLocale: (title: String, text: String)] = [
        .en: (title: "Bookings for {{date}} ({{count}})",
              text: """
                {{#bookings}}
                {{time}}  {{guest}}{{#email}} <{{email}}>{{/email}}{{#eventType}}  [{{eventType}}]{{/eventType}}
                {{/bookings}}
                {{^bookings}}
                No bookings.
                {{/bookings}}
                """),
        .ja: (title: "{{date}} の予定 ({{count}}件)",
              text: """
                {{#bookings}}
                {{time}}  {{guest}} 様{{#email}} <{{email}}>{{/email}}{{#eventType}}  [{{eventType}}]{{/eventType}}
                {{/bookings}}
                {{^bookings}}
                予定はありません。
                {{/bookings}}
                """),
    ]

    /// The plain-text body after the lead: one line per field.
    static let body = """
        {{lead}}

        {{#fields}}
        {{name}}: {{value}}
        {{/fields}}
        """

    static let html = """
        <!DOCTYPE html>
        <html><body style="font-family: sans-serif; line-height: 1.5">
        <h2 style="margin: 0 0 8px">{{title}}</h2>
        <p>{{lead}}</p>
        <table cellpadding="6" style="border-collapse: collapse">
        {{#fields}}
        <tr><th align="left" valign="top" style="color: #555; white-space: nowrap">{{name}}</th><td style="white-space: pre-line">{{value}}</td></tr>
        {{/fields}}
        </table>
        </body></html>
        """

    /// The built-in fields' labels.
    enum Label {
        case when, guest, email, reason, cancelledBy, booking, event, host, guestWho

        /// A switch, not a dictionary keyed by name: labels are read for every render, and
        /// hashing a name cost more than the rest of the lookup.
        var text: (en: String, ja: String) {
            switch self {
            case .when: ("When", "日時")
            case .guest: ("Guest", "ゲスト")
            case .email: ("Email", "メール")
            case .reason: ("Cancel reason", "キャンセル理由")
            case .cancelledBy: ("Cancelled by", "キャンセル者")
            case .booking: ("Booking ID", "予約ID")
            case .event: ("Event", "イベント")
            case .host: ("host", "ホスト")
            case .guestWho: ("guest", "ゲスト")
            }
        }
    }

    /// A field label in `locale`.
    static func label(_ label: Label, _ locale: HeraldLocale) -> String {
        locale == .ja ? label.text.ja : label.text.en
    }
}
