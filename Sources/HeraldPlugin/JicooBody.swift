import Foundation

/// What Herald reads of a Jicoo body, `{event, createdAt, object: {…booking…}}`, read
/// straight from its bytes: the three members and the booking's fields are built (the
/// tracking parameters only when asked for, from their bytes), every other byte is checked as
/// ``JSONValue/parse(_:)`` would (the same errors, at the same places) and skipped. Building
/// the whole tree first, then a dictionary per object, cost more than half of a decode.
package struct JicooBody: Sendable {
    /// The `event` member's value.
    package var event: JSONValue?
    /// The `createdAt` member's value.
    package var createdAt: JSONValue?
    /// The booking's fields when `object` is an object; nil when it is missing or not one.
    package var object: Booking.Fields?

    private static let names = JSONKeys(["event", "createdAt", "object"])

    /// Reads a body; nil when it is JSON but not an object. A duplicate member counts with
    /// its last value, as in a parsed object.
    package static func read(_ body: Data) throws(JSONValue.ParseError) -> JicooBody? {
        let result: Result<JicooBody?, JSONValue.ParseError> = body.withUnsafeBytes { raw in
            Result { () throws(JSONValue.ParseError) in
                try JSONParser.read(raw.assumingMemoryBound(to: UInt8.self)) { parser throws(JSONValue.ParseError) in
                    guard parser.atObject else {
                        try parser.skipValue()
                        return nil
                    }
                    var read = JicooBody()
                    try parser.readObject(keys: names) { parser, position throws(JSONValue.ParseError) in
                        switch position {
                        case 0: read.event = try parser.value()
                        case 1: read.createdAt = try parser.value()
                        default:
                            guard parser.atObject else {
                                read.object = nil
                                try parser.skipValue()
                                return
                            }
                            var fields = Booking.Fields()
                            try parser.readObject(keys: Booking.memberNames) { parser, position throws(JSONValue.ParseError) in
                                switch Booking.Member(rawValue: position) {
                                case .contact: fields.contact = try readContact(&parser)
                                case .answers: fields.answers = try readAnswers(&parser)
                                case .tracking:
                                    // Checked now, read when asked for (``Booking/tracking``).
                                    guard parser.atObject else {
                                        try parser.skipValue()
                                        fields.tracking = .read([:])
                                        return
                                    }
                                    let start = parser.position
                                    try parser.skipValue()
                                    fields.tracking = .unread(body[(body.startIndex + start)..<(body.startIndex + parser.position)])
                                case let member?: fields.set(member, try parser.value())
                                case nil: try parser.skipValue()
                                }
                            }
                            read.object = consume fields
                        }
                    }
                    return consume read
                }
            }
        }
        switch consume result {
        case .success(let read): return read
        case .failure(let error): throw error
        }
    }

    private static let contactNames = JSONKeys(["name", "email"])
    private static let answerNames = JSONKeys(["question", "content"])

    /// As ``Booking/contact(_:)`` reads the parsed value.
    private static func readContact(_ parser: inout JSONParser) throws(JSONValue.ParseError) -> Booking.Contact? {
        guard parser.atObject else {
            try parser.skipValue()
            return nil
        }
        var contact = Booking.Contact()
        try parser.readObject(keys: contactNames) { parser, position throws(JSONValue.ParseError) in
            let text = try parser.value().stringValue
            if position == 0 { contact.name = text } else { contact.email = text }
        }
        return contact
    }

    /// As ``Booking/answers(_:)`` reads the parsed value.
    private static func readAnswers(_ parser: inout JSONParser) throws(JSONValue.ParseError) -> [Booking.Answer] {
        guard parser.atArray else {
            try parser.skipValue()
            return []
        }
        var answers: [Booking.Answer] = []
        try parser.readArray { parser throws(JSONValue.ParseError) in
            guard parser.atObject else { return try parser.skipValue() }
            var question: String?
            var content: [String] = []
            try parser.readObject(keys: answerNames) { parser, position throws(JSONValue.ParseError) in
                if position == 0 { question = try parser.value().stringValue } else { content = try readContent(&parser) }
            }
            if let question { answers.append(Booking.Answer(question: question, content: content)) }
        }
        return answers
    }

    /// As ``Booking/content(_:)`` reads the parsed value (an array's strings, or a string
    /// alone), read from the bytes: building the array as a `JSONValue` first allocated its
    /// elements twice.
    private static func readContent(_ parser: inout JSONParser) throws(JSONValue.ParseError) -> [String] {
        if parser.atString { return [try parser.string()] }
        guard parser.atArray else {
            try parser.skipValue()
            return []
        }
        var content: [String] = []
        try parser.readArray { parser throws(JSONValue.ParseError) in
            if parser.atString { content.append(try parser.string()) } else { try parser.skipValue() }
        }
        return content
    }

    /// The tracking parameters in the bytes of a `tracking` object that ``read(_:)`` checked.
    static func tracking(in object: Data) -> [String: String] {
        object.withUnsafeBytes { raw in
            let read = try? JSONParser.read(raw.assumingMemoryBound(to: UInt8.self)) { parser throws(JSONValue.ParseError) in
                try readTracking(&parser)
            }
            return read ?? [:]
        }
    }

    /// As ``Booking/tracking(_:)`` reads the parsed value: the last value of a name counts,
    /// so a later one that is not a string removes it.
    private static func readTracking(_ parser: inout JSONParser) throws(JSONValue.ParseError) -> [String: String] {
        guard parser.atObject else {
            try parser.skipValue()
            return [:]
        }
        // Sized for the usual handful of UTM members: growing from empty rehashed it three times.
        var tracking = [String: String](minimumCapacity: 8)
        try parser.readObject { parser, name throws(JSONValue.ParseError) in
            tracking[name] = try parser.value().stringValue
        }
        return tracking
    }
}
