import Foundation
import HeraldCore
import HeraldPlugin

/// Realistic webhook bodies and the events Herald makes of them, for testing a plugin
/// without a running Herald: the eight documented Jicoo events and one generic webhook.
///
/// The Jicoo bodies are the team's shared test vectors (a booking for 2026-11-27 14:00–15:00
/// in Asia/Tokyo, guest 山田 太郎, two answers, UTM tracking; cancellations carry a reason),
/// embedded so a plugin package needs no files. Herald's tests check they stay equal to the
/// vectors.
///
/// ```swift
/// let event = try SampleEvents.event("guest_cancelled")
/// #expect(event.booking?.cancelReason != nil)
/// ```
public enum SampleEvents {
    /// The documented Jicoo event names, in the order Jicoo's documentation lists them.
    public static let jicooNames = [
        "guest_booked",
        "guest_rescheduled",
        "guest_cancelled",
        "host_rescheduled",
        "host_cancelled",
        "guest_booking_request_created",
        "host_booking_request_accepted",
        "host_booking_request_declined",
    ]

    /// When Herald accepted the sample events, by default: 2026-11-22T04:00:05Z, after the
    /// last of them was sent and before the booking.
    public static let receivedAt = Date(timeIntervalSince1970: 1_795_320_005)

    /// The body of a Jicoo event (one of ``jicooNames``) exactly as Jicoo would POST it; nil
    /// for another name.
    public static func jicooBody(_ name: String) -> Data? {
        jicooBodies[name].map { Data($0.utf8) }
    }

    /// A sample Jicoo body (one of ``jicooNames``) about another booking, at another time:
    /// `uid` replaces the booking's uid, and the meeting runs `minutes` from `start`. For
    /// reminders, reschedules and anything else that depends on when a booking starts.
    public static func jicooBody(_ name: String, booking uid: String, startingAt start: Date, minutes: Int = 60) -> Data? {
        guard var text = jicooBodies[name] else { return nil }
        for (field, value) in [("startedAt", start), ("endedAt", start + TimeInterval(minutes * 60))] {
            text = text.replacingOccurrences(of: #""\#(field)"\s*:\s*"[^"]*""#,
                                             with: "\"\(field)\": \"\(ISO8601.format(value))\"", options: .regularExpression)
        }
        return Data(text.replacingOccurrences(of: "bk_7Qx2mZp9", with: uid).utf8)
    }

    /// The event Herald makes of a sample Jicoo body, as if it arrived on `/hooks/jicoo`.
    ///
    /// - Parameters:
    ///   - name: one of ``jicooNames``.
    ///   - id: the event id; the default is fixed so test output is stable.
    /// - Throws: ``SampleError`` for a name that is not a sample.
    public static func event(_ name: String, id: String = "evt_0000sample0001", receivedAt: Date = receivedAt) throws -> Event {
        guard let body = jicooBody(name) else { throw SampleError(name: name) }
        return try EventSource.jicoo.decode(body: body, endpoint: "/hooks/jicoo", id: id, receivedAt: receivedAt)
    }

    /// A webhook from some other sender (`source: generic`): an `invoice.paid` event with a
    /// nested object, arriving on `/hooks/billing`. It has no booking.
    public static func genericEvent(id: String = "evt_0000sample0002", receivedAt: Date = receivedAt) throws -> Event {
        try EventSource.generic.decode(body: Data(genericBody.utf8), endpoint: "/hooks/billing", id: id, receivedAt: receivedAt)
    }

    /// Every sample: the eight Jicoo events, then the generic one.
    public static func all() throws -> [Event] {
        try jicooNames.map { try event($0) } + [genericEvent()]
    }

    /// Thrown by ``event(_:id:receivedAt:)`` for a name that has no sample.
    public struct SampleError: Error, CustomStringConvertible {
        /// The name asked for.
        public let name: String
        /// Names the samples that exist.
        public var description: String {
            "no sample event \"\(name)\"; samples: \(SampleEvents.jicooNames.joined(separator: ", "))"
        }
    }

    static let genericBody = #"""
    {"type": "invoice.paid", "id": "in_1Q2w3E4r", "created": 1795655740, "data": {"amount": 12000, "currency": "jpy", "customer": {"name": "山田 太郎", "email": "taro.yamada@example.jp"}}}
    """#

    static let jicooBodies: [String: String] = [
        "guest_booked": #"""
        {
          "event": "guest_booked",
          "createdAt": "2026-11-20T01:15:43.000Z",
          "object": {
            "uid": "bk_7Qx2mZp9",
            "eventTypeUid": "et_consult60",
            "status": "open",
            "timeZone": "Asia/Tokyo",
            "createdAt": "2026-11-20T01:15:42.341Z",
            "updatedAt": "2026-11-20T01:15:42.341Z",
            "startedAt": "2026-11-27T05:00:00.000Z",
            "endedAt": "2026-11-27T06:00:00.000Z",
            "cancelReason": null,
            "cancelledAt": null,
            "cancelledBy": null,
            "contact": {
              "email": "taro.yamada@example.jp",
              "name": "山田 太郎"
            },
            "answers": [
              {
                "question": "ご相談内容",
                "content": [
                  "料金プランについて"
                ]
              },
              {
                "question": "How did you find out?",
                "content": [
                  "SNS",
                  "Friend"
                ]
              }
            ],
            "tracking": {
              "utm_campaign": "winter_campaign",
              "utm_source": "twitter",
              "utm_medium": "owned_media",
              "utm_content": "jicoo-how-to",
              "utm_term": "howto"
            }
          }
        }
        """#,
        "guest_rescheduled": #"""
        {
          "event": "guest_rescheduled",
          "createdAt": "2026-11-21T09:00:01.000Z",
          "object": {
            "uid": "bk_7Qx2mZp9",
            "eventTypeUid": "et_consult60",
            "status": "open",
            "timeZone": "Asia/Tokyo",
            "createdAt": "2026-11-20T01:15:42.341Z",
            "updatedAt": "2026-11-21T09:00:00.512Z",
            "startedAt": "2026-11-28T02:30:00.000Z",
            "endedAt": "2026-11-28T03:30:00.000Z",
            "cancelReason": null,
            "cancelledAt": null,
            "cancelledBy": null,
            "contact": {
              "email": "taro.yamada@example.jp",
              "name": "山田 太郎"
            },
            "answers": [
              {
                "question": "ご相談内容",
                "content": [
                  "料金プランについて"
                ]
              },
              {
                "question": "How did you find out?",
                "content": [
                  "SNS",
                  "Friend"
                ]
              }
            ],
            "tracking": {
              "utm_campaign": "winter_campaign",
              "utm_source": "twitter",
              "utm_medium": "owned_media",
              "utm_content": "jicoo-how-to",
              "utm_term": "howto"
            }
          }
        }
        """#,
        "guest_cancelled": #"""
        {
          "event": "guest_cancelled",
          "createdAt": "2026-11-22T03:04:05.000Z",
          "object": {
            "uid": "bk_7Qx2mZp9",
            "eventTypeUid": "et_consult60",
            "status": "cancel",
            "timeZone": "Asia/Tokyo",
            "createdAt": "2026-11-20T01:15:42.341Z",
            "updatedAt": "2026-11-22T03:04:04.900Z",
            "startedAt": "2026-11-27T05:00:00.000Z",
            "endedAt": "2026-11-27T06:00:00.000Z",
            "cancelReason": "別の予定が入ったため",
            "cancelledAt": "2026-11-22T03:04:04.900Z",
            "cancelledBy": "guest",
            "contact": {
              "email": "taro.yamada@example.jp",
              "name": "山田 太郎"
            },
            "answers": [
              {
                "question": "ご相談内容",
                "content": [
                  "料金プランについて"
                ]
              },
              {
                "question": "How did you find out?",
                "content": [
                  "SNS",
                  "Friend"
                ]
              }
            ],
            "tracking": {
              "utm_campaign": "winter_campaign",
              "utm_source": "twitter",
              "utm_medium": "owned_media",
              "utm_content": "jicoo-how-to",
              "utm_term": "howto"
            }
          }
        }
        """#,
        "host_rescheduled": #"""
        {
          "event": "host_rescheduled",
          "createdAt": "2026-11-21T10:00:01.000Z",
          "object": {
            "uid": "bk_7Qx2mZp9",
            "eventTypeUid": "et_consult60",
            "status": "open",
            "timeZone": "Asia/Tokyo",
            "createdAt": "2026-11-20T01:15:42.341Z",
            "updatedAt": "2026-11-21T10:00:00.000Z",
            "startedAt": "2026-11-29T07:00:00Z",
            "endedAt": "2026-11-29T08:00:00Z",
            "cancelReason": null,
            "cancelledAt": null,
            "cancelledBy": null,
            "contact": {
              "email": "taro.yamada@example.jp",
              "name": "山田 太郎"
            },
            "answers": [
              {
                "question": "ご相談内容",
                "content": [
                  "料金プランについて"
                ]
              },
              {
                "question": "How did you find out?",
                "content": [
                  "SNS",
                  "Friend"
                ]
              }
            ],
            "tracking": {
              "utm_campaign": "winter_campaign",
              "utm_source": "twitter",
              "utm_medium": "owned_media",
              "utm_content": "jicoo-how-to",
              "utm_term": "howto"
            }
          }
        }
        """#,
        "host_cancelled": #"""
        {
          "event": "host_cancelled",
          "createdAt": "2026-11-22T04:00:00.000Z",
          "object": {
            "uid": "bk_7Qx2mZp9",
            "eventTypeUid": "et_consult60",
            "status": "cancel",
            "timeZone": "America/New_York",
            "createdAt": "2026-11-20T01:15:42.341Z",
            "updatedAt": "2026-11-20T01:15:42.341Z",
            "startedAt": "2026-11-27T05:00:00.000Z",
            "endedAt": "2026-11-27T06:00:00.000Z",
            "cancelReason": "Host unavailable",
            "cancelledAt": "2026-11-22T03:59:59.000Z",
            "cancelledBy": "host",
            "contact": {
              "email": "jane@example.com",
              "name": "Jane Doe"
            },
            "answers": [
              {
                "question": "ご相談内容",
                "content": [
                  "料金プランについて"
                ]
              },
              {
                "question": "How did you find out?",
                "content": [
                  "SNS",
                  "Friend"
                ]
              }
            ],
            "tracking": {
              "utm_campaign": "winter_campaign",
              "utm_source": "twitter",
              "utm_medium": "owned_media",
              "utm_content": "jicoo-how-to",
              "utm_term": "howto"
            }
          }
        }
        """#,
        "guest_booking_request_created": #"""
        {
          "event": "guest_booking_request_created",
          "createdAt": "2026-11-23T00:00:00.000Z",
          "object": {
            "uid": "bk_7Qx2mZp9",
            "eventTypeUid": "et_consult60",
            "status": "request",
            "timeZone": "Asia/Tokyo",
            "createdAt": "2026-11-20T01:15:42.341Z",
            "updatedAt": "2026-11-20T01:15:42.341Z",
            "startedAt": "2026-11-27T05:00:00.000Z",
            "endedAt": "2026-11-27T06:00:00.000Z",
            "cancelReason": null,
            "cancelledAt": null,
            "cancelledBy": null,
            "contact": {
              "email": "taro.yamada@example.jp",
              "name": "山田 太郎"
            },
            "answers": [
              {
                "question": "ご相談内容",
                "content": [
                  "料金プランについて"
                ]
              },
              {
                "question": "How did you find out?",
                "content": [
                  "SNS",
                  "Friend"
                ]
              }
            ],
            "tracking": {
              "utm_campaign": "winter_campaign",
              "utm_source": "twitter",
              "utm_medium": "owned_media",
              "utm_content": "jicoo-how-to",
              "utm_term": "howto"
            }
          }
        }
        """#,
        "host_booking_request_accepted": #"""
        {
          "event": "host_booking_request_accepted",
          "createdAt": "2026-11-23T01:00:00.000Z",
          "object": {
            "uid": "bk_7Qx2mZp9",
            "eventTypeUid": "et_consult60",
            "status": "open",
            "timeZone": "Asia/Tokyo",
            "createdAt": "2026-11-20T01:15:42.341Z",
            "updatedAt": "2026-11-20T01:15:42.341Z",
            "startedAt": "2026-11-27T05:00:00.000Z",
            "endedAt": "2026-11-27T06:00:00.000Z",
            "cancelReason": null,
            "cancelledAt": null,
            "cancelledBy": null,
            "contact": {
              "email": "taro.yamada@example.jp",
              "name": "山田 太郎"
            },
            "answers": [
              {
                "question": "ご相談内容",
                "content": [
                  "料金プランについて"
                ]
              },
              {
                "question": "How did you find out?",
                "content": [
                  "SNS",
                  "Friend"
                ]
              }
            ],
            "tracking": {
              "utm_campaign": "winter_campaign",
              "utm_source": "twitter",
              "utm_medium": "owned_media",
              "utm_content": "jicoo-how-to",
              "utm_term": "howto"
            }
          }
        }
        """#,
        "host_booking_request_declined": #"""
        {
          "event": "host_booking_request_declined",
          "createdAt": "2026-11-23T02:00:00.000Z",
          "object": {
            "uid": "bk_7Qx2mZp9",
            "eventTypeUid": "et_consult60",
            "status": "cancel",
            "timeZone": "Asia/Tokyo",
            "createdAt": "2026-11-20T01:15:42.341Z",
            "updatedAt": "2026-11-20T01:15:42.341Z",
            "startedAt": "2026-11-27T05:00:00.000Z",
            "endedAt": "2026-11-27T06:00:00.000Z",
            "cancelReason": null,
            "cancelledAt": "2026-11-23T02:00:00.000Z",
            "cancelledBy": "host",
            "contact": {
              "email": "taro.yamada@example.jp",
              "name": "山田 太郎"
            },
            "answers": [
              {
                "question": "ご相談内容",
                "content": [
                  "料金プランについて"
                ]
              },
              {
                "question": "How did you find out?",
                "content": [
                  "SNS",
                  "Friend"
                ]
              }
            ],
            "tracking": {
              "utm_campaign": "winter_campaign",
              "utm_source": "twitter",
              "utm_medium": "owned_media",
              "utm_content": "jicoo-how-to",
              "utm_term": "howto"
            }
          }
        }
        """#,
    ]
}
