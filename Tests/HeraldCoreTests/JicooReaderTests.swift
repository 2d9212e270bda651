import Foundation
import Testing
@testable import HeraldCore
import HeraldPlugin
import HeraldTesting

/// The Jicoo decoder reads its fields straight from the body's bytes and leaves the rest of
/// the tree unbuilt. These tests hold it to the slow way it replaced: parse the whole body,
/// then read the booking from the parsed `object` (``Booking/init(json:warnings:)``), for
/// the same event or the same error, word for word.
@Suite("Jicoo body reader")
struct JicooReaderTests {
    /// What a decode says about a body: the error's reason, or the fields read.
    struct Reading: Equatable {
        var error: String?
        var name: String?
        var occurredAt: Date?
        var booking: Booking?
        var warnings: [String] = []
    }

    /// The decode as it was before the reader: the whole tree first.
    static func viaTree(_ body: Data) -> Reading {
        let payload: JSONValue
        do { payload = try JSONValue.parse(body) } catch { return Reading(error: error.reason) }
        guard case .object = payload else { return Reading(error: "the body is JSON but not an object") }
        guard let name = payload["event"]?.stringValue, !name.isEmpty else {
            return Reading(error: "missing string field \"event\"")
        }
        var reading = Reading(name: name)
        if let created = payload["createdAt"]?.stringValue {
            reading.occurredAt = ISO8601.parse(created)
            if reading.occurredAt == nil {
                reading.warnings.append("createdAt: \"\(created.prefix(40))\" is not an ISO 8601 date; ignored")
            }
        }
        if let object = payload["object"], case .object = object {
            reading.booking = Booking(json: object, warnings: &reading.warnings)
        } else {
            reading.warnings.append("object: missing or not an object; no booking details")
        }
        return reading
    }

    static func viaReader(_ body: Data) -> Reading {
        do {
            let event = try EventSource.jicoo.decode(body: body, endpoint: "/hooks/jicoo")
            return Reading(name: event.name, occurredAt: event.occurredAt, booking: event.booking, warnings: event.warnings)
        } catch {
            return Reading(error: error.reason)
        }
    }

    static let edgeCases: [String] = [
        // Duplicates: the last one counts, at the top and inside `object`.
        #"{"event":"a","event":"guest_booked","object":{"uid":"1","uid":"2","status":"x","status":null}}"#,
        #"{"event":"guest_booked","object":{"uid":"1"},"object":"not an object"}"#,
        #"{"event":"guest_booked","object":"first","object":{"uid":"second"}}"#,
        // Names written with escapes are the same names.
        #"{"\u0065vent":"guest_booked","object":{"\u0075id":"escaped","time\u005aone":"Asia/Tokyo"}}"#,
        // Members nobody reads, of every kind and nesting, and empty names.
        #"{"":1,"x":[{"y":[1,2.5e3,-0,true,false,null,"s\n\u00e9"]},{}],"event":"guest_booked","z":{"":{"a":[]}},"object":{"":"","other":{"k":[[[]]]},"uid":"u"}}"#,
        // Odd kinds where strings, objects and arrays are expected.
        #"{"event":"guest_booked","createdAt":5,"object":{"uid":12345678901234567890,"contact":[1],"answers":{"a":1},"tracking":["x"],"startedAt":"2026-13-01T00:00:00Z"}}"#,
        #"{"event":"guest_booked","object":{"contact":{"name":"n","name":7,"email":"e"},"answers":[{"question":"q","content":"one"},{"question":1},{"content":["x"]},5],"tracking":{"a":"1","a":2,"b":"2","c":null}}}"#,
        // Duplicates inside the guest, the answers and the tracking, and of them.
        #"{"event":"guest_booked","object":{"answers":[{"question":"q","question":1,"content":"x"},{"question":"r","content":["a"],"content":"b"},{"content":[1,"c",null],"question":"s"}],"contact":{"name":"a"},"contact":{"email":"e"},"tracking":{"x":"1"},"tracking":{"y":"2","y":"3"}}}"#,
        #"{"event":"","object":{}}"#,
        #"{"event":7,"object":{}}"#,
        #"{"object":{}}"#,
        "\u{FEFF}{\"event\":\"guest_booked\"}",
        #"  {"event":"guest_booked"}  "#,
        // Not an object, or not JSON, at every level.
        #"[{"event":"guest_booked"}]"#, #""guest_booked""#, "", "   ", "null",
        #"{"event":"guest_booked","object":{"uid":"u",}}"#,
        #"{"event":"guest_booked","skipped":{"a":1,}}"#,
        #"{"event":"guest_booked","skipped":[1,]}"#,
        #"{"event":"guest_booked","skipped":"bad \x escape"}"#,
        #"{"event":"guest_booked","skipped":01}"#,
        #"{"event":"guest_booked","skipped":1e999}"#,
        #"{"event":"guest_booked","skipped":"\ud800"}"#,
        #"{"event":"guest_booked","skipped":tru}"#,
        #"{"event":"guest_booked"} trailing"#,
        #"{"event":"guest_booked","object":{"uid":"u"}"#,
        "{\"event\":\"guest_booked\",\"skipped\":\"control \u{01} byte\"}",
        String(repeating: "[", count: 600) + String(repeating: "]", count: 600),
        #"{"event":"guest_booked","skipped":"# + String(repeating: "[", count: 600) + "}",
        #"{"event":"guest_booked","deep":"# + String(repeating: "[", count: 600) + String(repeating: "]", count: 600) + "}",
    ]

    @Test func agreesWithTheTreeOnEverySharedBody() throws {
        for name in Fixtures.eventNames {
            let body = try Fixtures.eventBody(name)
            let reading = Self.viaReader(body)
            #expect(reading.error == nil, "\(name)")
            #expect(reading == Self.viaTree(body), "\(name)")
        }
    }

    @Test(arguments: edgeCases)
    func agreesWithTheTreeOnEdgeCases(_ text: String) {
        let body = Data(text.utf8)
        #expect(Self.viaReader(body) == Self.viaTree(body))
    }

    @Test func invalidUTF8IsRefusedWhereverItIs() {
        for member in ["event", "skipped", "object"] {
            var body = Data(#"{"event":"guest_booked","\#(member)":"ok"#.utf8)
            body.append(contentsOf: [0xC3, 0x28])
            body.append(contentsOf: #""}"#.utf8)
            let reading = Self.viaReader(body)
            #expect(reading.error?.contains("invalid UTF-8") == true, "\(member)")
            #expect(reading == Self.viaTree(body))
        }
    }

    /// Every body one edit away from a shared one (a byte removed, or replaced by one that
    /// matters to JSON) decodes to the same event, or fails with the same reason at the same
    /// byte, as through the tree. Each body also comes with a copy of itself first under a
    /// member nobody reads, so that edits land in skipped values as often as in read ones.
    @Test func agreesWithTheTreeOnEveryEditedBody() throws {
        var generator = SeededGenerator(seed: 0x4A49_434F_4F21)
        let replacements = Array(#"{}[]":,\"0-e.tfn "#.utf8) + [0x00, 0x1F, 0x80, 0xC3, 0xFF]
        var compared = 0
        let bodies = try Fixtures.eventNames.flatMap { name in
            let body = try Fixtures.eventBody(name)
            return [body, Data(#"{"copy":"#.utf8) + body + Data(",".utf8) + body.dropFirst()]
        }
        for body in bodies {
            for _ in 0..<300 {
                var edited = body
                let at = Int(generator.next() % UInt64(body.count))
                if generator.next() % 3 == 0 {
                    edited.remove(at: edited.index(edited.startIndex, offsetBy: at))
                } else {
                    edited[edited.index(edited.startIndex, offsetBy: at)] =
                        replacements[Int(generator.next() % UInt64(replacements.count))]
                }
                #expect(Self.viaReader(edited) == Self.viaTree(edited), "\(String(decoding: edited, as: UTF8.self))")
                compared += 1
            }
        }
        #expect(compared == Fixtures.eventNames.count * 2 * 300)
    }

    /// The payload is built on first use, and is the whole body parsed.
    @Test func payloadIsTheWholeBody() throws {
        for name in Fixtures.eventNames {
            let body = try Fixtures.eventBody(name)
            let event = try EventSource.jicoo.decode(body: body, endpoint: "/hooks/jicoo")
            #expect(event.hasObjectPayload)
            #expect(event.payload == (try JSONValue.parse(body)), "\(name)")
            #expect(event.payload == (try JSONValue.parse(body)), "\(name), asked twice")
        }
    }

    /// An event made with a payload keeps it, and says whether it is an object.
    @Test func givenPayloadIsKept() {
        let body = Data(#"{"a":1}"#.utf8)
        let list = Event(id: "evt_1", endpoint: "/x", source: "generic", name: "n", receivedAt: Date(),
                         occurredAt: nil, booking: nil, payload: .array([.null]), body: body)
        #expect(!list.hasObjectPayload)
        #expect(list.payload == .array([.null]))
        let object = Event(id: "evt_2", endpoint: "/x", source: "generic", name: "n", receivedAt: Date(),
                           occurredAt: nil, booking: nil, payload: .object([:]), body: body)
        #expect(object.hasObjectPayload)
    }
}
