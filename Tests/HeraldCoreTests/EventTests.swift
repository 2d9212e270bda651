import Foundation
import Testing
@testable import HeraldCore
import HeraldPlugin

@Suite("Jicoo event decoding")
struct EventTests {
    @Test func everySharedBodyDecodes() throws {
        let names = Fixtures.eventNames
        #expect(names.count == 11)
        for name in names {
            let event = try Fixtures.event(name)
            #expect(event.source == "jicoo")
            #expect(event.booking?.uid != nil, "\(name)")
            #expect(event.booking?.startedAt != nil, "\(name)")
            #expect(event.id.hasPrefix("evt_"))
            #expect(event.body == (try Fixtures.eventBody(name)))
        }
    }

    @Test func documentedEventsHaveTheirNames() throws {
        for name in ["guest_booked", "guest_rescheduled", "guest_cancelled", "host_rescheduled", "host_cancelled",
                     "guest_booking_request_created", "host_booking_request_accepted", "host_booking_request_declined"] {
            #expect(try Fixtures.event(name).name == name)
        }
    }

    @Test func bookingFieldsAreTyped() throws {
        let e = try Fixtures.event("guest_cancelled")
        let b = try #require(e.booking)
        #expect(b.contact?.name == "山田 太郎")
        #expect(b.contact?.email == "taro.yamada@example.jp")
        #expect(b.cancelReason == "別の予定が入ったため")
        #expect(b.cancelledBy == "guest")
        #expect(b.startedAt == Date(timeIntervalSince1970: 1795755600))
        #expect(b.cancelledAt == ISO8601.parse("2026-11-22T03:04:04.900Z"))
        #expect(b.answers.map(\.question) == ["ご相談内容", "How did you find out?"])
        #expect(b.answers[1].content == ["SNS", "Friend"])
        #expect(b.tracking["utm_source"] == "twitter")
        #expect(e.occurredAt == ISO8601.parse("2026-11-22T03:04:05Z"))
        #expect(e.warnings.isEmpty)
    }

    /// The tracking parameters are read from the body's bytes when asked for: the same
    /// parameters as a parsed body gives (a later value of a name counts; one that is not a
    /// string removes it), a malformed `tracking` still fails the decode, and a set value
    /// replaces what the body said.
    @Test func trackingIsReadWhenAskedForAndCanBeSet() throws {
        let body = Data(#"{"event":"guest_booked","object":{"tracking":{"a":"1","a":2,"b":"2","c":null,"d":{"e":"f"},"u\u0074m":"\u00e9"}}}"#.utf8)
        var booking = try #require(try EventSource.jicoo.decode(body: body, endpoint: "/x").booking)
        #expect(booking.tracking == ["b": "2", "utm": "é"])
        #expect(booking.tracking == ["b": "2", "utm": "é"], "read again, the same")
        booking.tracking["z"] = "9"
        #expect(booking.tracking == ["b": "2", "utm": "é", "z": "9"])
        #expect(throws: DecodeError.self) {
            try EventSource.jicoo.decode(body: Data(#"{"event":"guest_booked","object":{"tracking":{"a":"\u12"}}}"#.utf8),
                                         endpoint: "/x")
        }
    }

    @Test func malformedDateBecomesNilWithAWarning() throws {
        let e = try Fixtures.event("seed_example")
        #expect(e.name == "guest_booked")
        #expect(e.booking?.cancelledAt == nil)
        #expect(e.booking?.cancelReason == "Another meeting scheduled")
        #expect(e.warnings.count == 1)
        #expect(e.warnings.first?.contains("cancelledAt") == true)
    }

    /// One warning per unreadable field, also for `updatedAt`, which is read for its text and its date.
    @Test func anUnreadableFieldWarnsOnce() throws {
        let wrongType = try EventSource.jicoo.decode(
            body: Data(#"{"event":"guest_booked","object":{"uid":"bk_1","updatedAt":true}}"#.utf8), endpoint: "/x")
        #expect(wrongType.warnings == ["object.updatedAt: expected a string; ignored"])
        #expect(wrongType.booking?.updatedAt == nil && wrongType.booking?.updatedAtText == nil)
        let notADate = try EventSource.jicoo.decode(
            body: Data(#"{"event":"guest_booked","object":{"uid":"bk_1","updatedAt":"soon"}}"#.utf8), endpoint: "/x")
        #expect(notADate.warnings == [#"object.updatedAt: "soon" is not an ISO 8601 date; ignored"#])
        #expect(notADate.booking?.updatedAt == nil && notADate.booking?.updatedAtText == "soon")
    }

    @Test func missingOptionalsAreNil() throws {
        let e = try Fixtures.event("minimal_missing_optionals")
        #expect(e.booking?.cancelReason == nil)
        #expect(e.booking?.cancelledAt == nil)
        #expect(e.booking?.answers.isEmpty == true)
        #expect(e.booking?.tracking.isEmpty == true)
        #expect(e.warnings.isEmpty)
    }

    @Test func unknownEventNameIsKept() throws {
        let e = try Fixtures.event("unknown_event")
        #expect(e.name == "guest_no_show")
        #expect(HeraldNotification.Kind(eventName: e.name) == .other)
    }

    @Test func rawJSONStaysAvailable() throws {
        let e = try Fixtures.event("guest_booked")
        #expect(e.payload["object"]?["tracking"]?["utm_term"] == .string("howto"))
        #expect(e.payload["object"]?["cancelReason"] == .null)
    }

    @Test func malformedBodiesAreErrors() {
        #expect(throws: DecodeError.self) { try EventSource.jicoo.decode(body: Data("{not json".utf8), endpoint: "/x") }
        #expect(throws: DecodeError.self) { try EventSource.jicoo.decode(body: Data("[1,2]".utf8), endpoint: "/x") }
        #expect(throws: DecodeError.self) { try EventSource.jicoo.decode(body: Data(#"{"object":{}}"#.utf8), endpoint: "/x") }
        let odd = try? EventSource.jicoo.decode(body: Data(#"{"event":"guest_booked","object":{"uid":5,"contact":null,"answers":"x"}}"#.utf8), endpoint: "/x")
        #expect(odd?.booking?.uid == "5")
        #expect(odd?.booking?.contact == nil)
        // A number too large for Int64 is its text as sent, not a crash.
        let huge = try? EventSource.jicoo.decode(body: Data(#"{"event":"guest_booked","object":{"uid":1e300,"status":2.5}}"#.utf8), endpoint: "/x")
        #expect(huge?.booking?.uid == "1e300")
        #expect(huge?.booking?.status == "2.5")
    }

    /// Numeric booking uids that one Double cannot tell apart keep their own text, so their
    /// dedupe keys differ and the second booking is not answered as a duplicate.
    @Test func numericUidsKeepEveryDigit() throws {
        func key(_ uid: String) throws -> String {
            let body = #"{"event":"guest_booked","object":{"uid":\#(uid),"updatedAt":"2026-11-24T05:00:00Z"}}"#
            let event = try EventSource.jicoo.decode(body: Data(body.utf8), endpoint: "/x")
            #expect(event.booking?.uid == uid)
            return EventSource.jicoo.dedupeKey(for: event)
        }
        for (a, b) in [("12345678901234567890", "12345678901234567891"), ("0", "-0"), ("0", "1e-400"), ("1.0", "1")] {
            #expect(try key(a) != key(b), "\(a) and \(b) share a dedupe key")
        }
        // Written back exactly as received.
        let body = Data(#"[12345678901234567891,-0,1e-400,1.50,{"n":-12.5e+3}]"#.utf8)
        #expect(try JSONValue.parse(body).jsonText == String(decoding: body, as: UTF8.self))
    }

    @Test func genericSourceReadsTheNameField() throws {
        let e = try EventSource.generic.decode(body: Data(#"{"type":"invoice.paid"}"#.utf8), endpoint: "/g")
        #expect(e.name == "invoice.paid")
        let f = try EventSource.generic.decode(body: Data(#"{"kind":"x"}"#.utf8), endpoint: "/g", eventField: "kind")
        #expect(f.name == "x")
    }

    @Test func jicooDedupeKeyIgnoresCreatedAt() throws {
        let a = try Fixtures.event("guest_booked")
        var text = try #require(String(data: try Fixtures.eventBody("guest_booked"), encoding: .utf8))
        text = text.replacingOccurrences(of: "2026-11-20T01:15:43.000Z", with: "2026-11-20T01:20:00.000Z")
        let b = try EventSource.jicoo.decode(body: Data(text.utf8), endpoint: "/hooks/jicoo")
        #expect(EventSource.jicoo.dedupeKey(for: a) == EventSource.jicoo.dedupeKey(for: b))
        #expect(EventSource.jicoo.dedupeKey(for: a) == "guest_booked|bk_7Qx2mZp9|2026-11-20T01:15:42.341Z")
        let c = try Fixtures.event("guest_cancelled")
        #expect(EventSource.jicoo.dedupeKey(for: a) != EventSource.jicoo.dedupeKey(for: c))
        #expect(EventSource.generic.dedupeKey(for: a).hasPrefix("sha256:"))
    }

    /// `evt_`, 12 hex digits of the time in milliseconds, 12 of the random part: ordered by
    /// time, and never twice the same in a process, even many in one millisecond.
    @Test func eventIDsAreTimeOrderedAndDistinct() {
        let at = Date(timeIntervalSince1970: 1_764_500_000.123)
        let ids = (0..<20_000).map { _ in Event.makeID(at: at) }
        #expect(Set(ids).count == ids.count)
        for id in ids.prefix(100) {
            #expect(id.utf8.count == 28)
            #expect(id.hasPrefix("evt_" + String(1_764_500_000_123, radix: 16).leftPadded(to: 12)))
            #expect(id.dropFirst(4).allSatisfy { "0123456789abcdef".contains($0) }, "\(id)")
        }
        // The random parts use all their digits: no digit position is stuck at one value.
        for position in 16..<28 {
            #expect(Set(ids.prefix(1000).map { Array($0.utf8)[position] }).count > 8, "position \(position)")
        }
        #expect(Event.makeID(at: at) < Event.makeID(at: at.addingTimeInterval(0.001)))
        #expect(Event.makeID(at: Date(timeIntervalSince1970: 0)).hasPrefix("evt_000000000000"))
    }

    @Test func iso8601Parsing() {
        #expect(ISO8601.parse("2026-11-27T05:00:00Z") == Date(timeIntervalSince1970: 1795755600))
        #expect(ISO8601.parse("2026-11-27T14:00:00+09:00") == Date(timeIntervalSince1970: 1795755600))
        #expect(ISO8601.parse("2026-11-27T05:00:00.250Z")?.timeIntervalSince1970 == 1795755600.25)
        #expect(ISO8601.parse("2019-08-294T14:01:01.000Z") == nil)
        #expect(ISO8601.parse("2026-02-30T00:00:00Z") == nil)
        #expect(ISO8601.parse("2026-11-27") == nil)
        #expect(ISO8601.format(Date(timeIntervalSince1970: 1795755600)) == "2026-11-27T05:00:00Z")
        #expect(ISO8601.format(Date(timeIntervalSince1970: 1795755600.999)) == "2026-11-27T05:00:00Z")
        #expect(ISO8601.format(Date(timeIntervalSince1970: -1)) == "1969-12-31T23:59:59Z")
        #expect(ISO8601.format(Date(timeIntervalSince1970: -59011459200)) == "0100-01-01T00:00:00Z")
        #expect(ISO8601.format(Date(timeIntervalSince1970: -62167219201)) == "-0001-12-31T23:59:59Z")
        #expect(ISO8601.format(Date(timeIntervalSince1970: 253402300800)) == "10000-01-01T00:00:00Z")
        // Dates no parser makes are formatted, not trapped on.
        #expect(ISO8601.format(Date(timeIntervalSince1970: .nan)) == "1970-01-01T00:00:00Z")
        #expect(ISO8601.format(Date(timeIntervalSince1970: .infinity)).hasSuffix("T01:46:40Z"))
        #expect(ISO8601.format(Date(timeIntervalSince1970: -.infinity)).hasPrefix("-"))
        #expect(ISO8601.dayAndSecond(Date(timeIntervalSince1970: 1795755600), offset: 9 * 3600) == (20784, 50400))
        #expect(ISO8601.dayAndSecond(Date(timeIntervalSince1970: -1)) == (-1, 86399))
    }

    @Test func httpDatesAreWrittenAsTheyAreRead() {
        // RFC 9110's example, and a Thursday on day 0 and a Wednesday before it.
        #expect(HTTPDate.format(Date(timeIntervalSince1970: 784111777)) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(HTTPDate.format(Date(timeIntervalSince1970: 0.9)) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(HTTPDate.format(Date(timeIntervalSince1970: -1)) == "Wed, 31 Dec 1969 23:59:59 GMT")
        for seconds in stride(from: 0, to: 4_000_000_000, by: 123_456_789) {
            let date = Date(timeIntervalSince1970: Double(seconds))
            #expect(HTTPDate.parse(HTTPDate.format(date)) == date)
        }
    }

    @Test func concatenationJoinsPiecesWholly() {
        #expect(String(concatenating: []) == "")
        #expect(String(concatenating: ["", ""]) == "")
        #expect(String(concatenating: ["guest_booked", "|", "bk_1", "|", "2026"]) == "guest_booked|bk_1|2026")
        let long = String(repeating: "x", count: 40)
        #expect(String(concatenating: [long, "山田 太郎", "", "🎉"]) == long + "山田 太郎🎉")
        #expect(String(concatenating: [long, "山田"]).count == 42)
    }
}

private extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

