import Foundation
import HeraldCore

/// Realistic Jicoo bodies for `herald send-test`: one per documented event, booked for
/// tomorrow 14:00–15:00 Tokyo time, with a fresh booking uid so dedupe never hides a test.
enum SampleEvents {
    static let names = [
        "guest_booked", "guest_rescheduled", "guest_cancelled", "host_rescheduled", "host_cancelled",
        "guest_booking_request_created", "host_booking_request_accepted", "host_booking_request_declined",
    ]

    static func body(event: String, now: Date = Date()) -> Data {
        let day = (Int(now.timeIntervalSince1970) / 86400 + 1) * 86400
        let start = Date(timeIntervalSince1970: TimeInterval(day + 5 * 3600))
        let end = start.addingTimeInterval(3600)
        let cancelled = event.contains("cancelled") || event.contains("declined")
        let by: Any = event.hasPrefix("host") ? "host" : "guest"
        let object: [String: Any] = [
            "uid": "bk_test_" + String(UInt64.random(in: 0..<UInt64(1) << 40), radix: 36),
            "eventTypeUid": "et_consult60",
            "status": cancelled ? "cancel" : (event == "guest_booking_request_created" ? "request" : "open"),
            "timeZone": "Asia/Tokyo",
            "createdAt": iso(now.addingTimeInterval(-60)),
            "updatedAt": iso(now),
            "startedAt": iso(start),
            "endedAt": iso(end),
            "cancelReason": cancelled ? "別の予定が入ったため" : NSNull(),
            "cancelledAt": cancelled ? iso(now) : NSNull(),
            "cancelledBy": cancelled ? by : NSNull(),
            "contact": ["email": "taro.yamada@example.jp", "name": "山田 太郎"],
            "answers": [
                ["question": "ご相談内容", "content": ["料金プランについて"]],
                ["question": "How did you find out?", "content": ["SNS", "Friend"]],
            ],
            "tracking": ["utm_source": "herald", "utm_medium": "send-test"],
        ]
        let root: [String: Any] = ["event": event, "createdAt": iso(now), "object": object]
        return (try? JSONSerialization.data(withJSONObject: root, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
    }

    static func iso(_ date: Date) -> String {
        let s = ISO8601.format(date)
        return String(s.dropLast()) + ".000Z"
    }
}
