import Foundation

/// Reads UTF-8 JSON (RFC 8259) straight into a ``JSONValue``.
///
/// Every accepted webhook body is parsed here, and again when a delivery is read back from
/// the journal, so this avoids Foundation's `JSONSerialization`, which builds an `NSObject`
/// tree that then has to be converted (the whole decode of a 1 KB Jicoo body went from 20 to
/// 8.5 µs). It follows RFC 8259 strictly: no trailing commas (which Foundation on Linux
/// tolerates), comments, leading zeros, control characters in strings, invalid escapes,
/// unpaired surrogates or invalid UTF-8; a duplicate key keeps its last value.
struct JSONParser {
    /// Deeper nesting is refused rather than risking the stack on hostile input.
    static let maxDepth = 512

    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0
    private var depth = 0
    /// Reused for strings with escapes.
    private var scratch: [UInt8] = []

    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws(JSONValue.ParseError) -> JSONValue {
        try read(bytes) { parser throws(JSONValue.ParseError) in try parser.value() }
    }

    /// Reads a whole document with `body`, which must consume exactly one value (with
    /// ``value()``, ``skipValue()`` or ``readObject(keys:_:)``); anything after it but
    /// whitespace is an error.
    static func read<T>(_ bytes: UnsafeBufferPointer<UInt8>, _ body: (inout JSONParser) throws(JSONValue.ParseError) -> T)
        throws(JSONValue.ParseError) -> T {
        var parser = JSONParser(bytes: bytes)
        // A UTF-8 byte order mark is tolerated, as JSONSerialization does.
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { parser.index = 3 }
        parser.skipWhitespace()
        let value = try body(&parser)
        parser.skipWhitespace()
        guard parser.index == bytes.count else { throw parser.error("unexpected data after the JSON value") }
        return value
    }

    /// Where the parser is: the offset of the next byte it reads.
    var position: Int { index }

    /// Whether the value at the index is an object (it may still be malformed).
    var atObject: Bool { index < bytes.count && bytes[index] == UInt8(ascii: "{") }

    /// Whether the value at the index is an array (it may still be malformed).
    var atArray: Bool { index < bytes.count && bytes[index] == UInt8(ascii: "[") }

    /// Whether the value at the index is a string (it may still be malformed).
    var atString: Bool { index < bytes.count && bytes[index] == UInt8(ascii: "\"") }

    private init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    private func error(_ reason: String) -> JSONValue.ParseError {
        JSONValue.ParseError(reason: "invalid JSON: \(reason) at byte \(index)")
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    /// The value at the index, built whole.
    mutating func value() throws(JSONValue.ParseError) -> JSONValue {
        guard index < bytes.count else { throw error("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try object(build: true)
        case UInt8(ascii: "["): return try array(build: true)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        default: throw error("unexpected character '\(Self.show(bytes[index]))'")
        }
    }

    /// Checks the value at the index as ``value()`` would, building nothing: the same
    /// grammar, limits and error reasons.
    mutating func skipValue() throws(JSONValue.ParseError) {
        guard index < bytes.count else { throw error("unexpected end of input") }
        switch bytes[index] {
        case UInt8(ascii: "{"): _ = try object(build: false)
        case UInt8(ascii: "["): _ = try array(build: false)
        case UInt8(ascii: "\""): _ = try scanString()
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): _ = try number()
        default: throw error("unexpected character '\(Self.show(bytes[index]))'")
        }
    }

    private mutating func literal(_ word: StaticString) throws(JSONValue.ParseError) {
        let count = word.utf8CodeUnitCount
        guard index + count <= bytes.count,
              memcmp(bytes.baseAddress! + index, word.utf8Start, count) == 0 else {
            throw error("invalid literal")
        }
        index += count
    }

    private mutating func enter() throws(JSONValue.ParseError) {
        depth += 1
        guard depth <= Self.maxDepth else { throw error("nested deeper than \(Self.maxDepth) levels") }
    }

    /// An object (or, unless `build`, only checked: `.null`).
    private mutating func object(build: Bool) throws(JSONValue.ParseError) -> JSONValue {
        guard build else {
            // Checking only: with no names to match, no key becomes a String.
            try members(named: JSONKeys.none) { parser, _, _ throws(JSONValue.ParseError) in try parser.skipValue() }
            return .null
        }
        // Collected first, then hashed into a dictionary of the right size at once. The one
        // object grammar, shared with the readers: a loop of its own saved the whole-tree
        // parse about 1,000 instructions a kilobyte (a closure call per member), no longer on
        // a Jicoo webhook's path.
        var members: [(String, JSONValue)] = []
        members.reserveCapacity(16)
        try self.members(named: nil) { parser, _, key throws(JSONValue.ParseError) in
            members.append((key ?? "", try parser.value()))
        }
        return .object(Dictionary(members, uniquingKeysWith: { _, last in last }))
    }

    /// Reads the object at the index member by member: `read` gets each member whose name is
    /// in `keys`, by its position there, with the parser at its value, and must consume that
    /// value (a duplicate name comes again: the last one counts, as in a parsed object). The
    /// other members are checked and skipped. A decoder that needs a few fields reads them
    /// this way without building the object.
    mutating func readObject(keys: JSONKeys, _ read: (inout JSONParser, Int) throws(JSONValue.ParseError) -> Void)
        throws(JSONValue.ParseError) {
        try members(named: keys) { parser, position, _ throws(JSONValue.ParseError) in
            if let position { try read(&parser, position) } else { try parser.skipValue() }
        }
    }

    /// Reads the object at the index member by member, whatever their names: `read` gets each
    /// name (unescaped) with the parser at its value, and must consume that value. A
    /// duplicate name comes again; the last one counts, as in a parsed object.
    mutating func readObject(_ read: (inout JSONParser, String) throws(JSONValue.ParseError) -> Void)
        throws(JSONValue.ParseError) {
        try members(named: nil) { parser, _, key throws(JSONValue.ParseError) in try read(&parser, key ?? "") }
    }

    /// An object's members: `member` gets, with the parser at each one's value, its position
    /// in `keys` (nil when not there), or without `keys` its name, and consumes that value.
    /// Inlined into each caller, so that each runs its own closure without a call.
    @inline(__always)
    private mutating func members(named keys: JSONKeys?,
                                  _ member: (inout JSONParser, Int?, String?) throws(JSONValue.ParseError) -> Void)
        throws(JSONValue.ParseError) {
        try enter()
        index += 1  // {
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            depth -= 1
            return
        }
        while true {
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a string key") }
            // Matched on its bytes: a member not read never becomes a String.
            var position: Int?
            var key: String?
            if let keys {
                if let raw = try scanString() {
                    position = keys.position(of: raw)
                } else {
                    position = scratch.withUnsafeBufferPointer { keys.position(of: $0) }
                }
            } else {
                key = try string()
            }
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':' after a key") }
            index += 1
            skipWhitespace()
            try member(&self, position, key)
            skipWhitespace()
            guard index < bytes.count else { throw error("unterminated object") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                skipWhitespace()
                continue
            }
            guard bytes[index] == UInt8(ascii: "}") else { throw error("expected ',' or '}' in an object") }
            index += 1
            depth -= 1
            return
        }
    }

    /// An array (or, unless `build`, only checked: `.null`).
    private mutating func array(build: Bool) throws(JSONValue.ParseError) -> JSONValue {
        var elements: [JSONValue] = []
        try readArray { parser throws(JSONValue.ParseError) in
            if build { elements.append(try parser.value()) } else { try parser.skipValue() }
        }
        return build ? .array(elements) : .null
    }

    /// Reads the array at the index element by element: `read` gets the parser at each
    /// element, and must consume it.
    @inline(__always)
    mutating func readArray(_ read: (inout JSONParser) throws(JSONValue.ParseError) -> Void) throws(JSONValue.ParseError) {
        try enter()
        index += 1  // [
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            depth -= 1
            return
        }
        while true {
            try read(&self)
            skipWhitespace()
            guard index < bytes.count else { throw error("unterminated array") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                skipWhitespace()
                continue
            }
            guard bytes[index] == UInt8(ascii: "]") else { throw error("expected ',' or ']' in an array") }
            index += 1
            depth -= 1
            return
        }
    }

    /// A string starting at the opening quote; the index ends after the closing one.
    mutating func string() throws(JSONValue.ParseError) -> String {
        if let raw = try scanString() { return String(decoding: raw, as: UTF8.self) }
        return String(decoding: scratch, as: UTF8.self)
    }

    /// Checks a string from its opening quote; the index ends after the closing one. Returns
    /// its bytes when they hold no escape, else nil with the unescaped bytes in `scratch`.
    private mutating func scanString() throws(JSONValue.ParseError) -> UnsafeBufferPointer<UInt8>? {
        index += 1  // "
        let start = index
        // Any byte at or above 0x80 seen: only then can the string be invalid UTF-8.
        var high: UInt8 = 0
        // Eight bytes at a time while none is a quote, a backslash or a control character;
        // the byte loop below takes over at the first such byte, which the word that stops
        // the loop locates (not walking up to seven bytes before it). One byte at a time cost
        // eight instructions a byte, and most of a body's bytes are in strings.
        var highBits: UInt64 = 0
        if let base = bytes.baseAddress {
            while index &+ 8 <= bytes.count {
                let word = UInt64(littleEndian: UnsafeRawPointer(base + index).loadUnaligned(as: UInt64.self))
                let special = Self.escapeMask(word)
                if special != 0 {
                    let before = special.trailingZeroBitCount & ~7
                    highBits |= word & ((1 &<< UInt64(before)) &- 1)
                    index &+= before &>> 3
                    break
                }
                highBits |= word
                index &+= 8
            }
        }
        if highBits & 0x8080_8080_8080_8080 != 0 { high = 0x80 }
        // Fast path: no escapes, so the bytes between the quotes are the string.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: bytes[start..<index])
                guard high < 0x80 || Self.isValidUTF8(slice) else { throw error("invalid UTF-8 in a string") }
                index += 1
                return slice
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw error("control character in a string") }
            high |= byte
            index += 1
        }
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                let valid = scratch.withUnsafeBufferPointer(Self.isValidUTF8)
                guard valid else { throw error("invalid UTF-8 in a string") }
                index += 1
                return nil
            case UInt8(ascii: "\\"):
                index += 1
                guard index < bytes.count else { break }
                let escaped = bytes[index]
                index += 1
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scratch.append(escaped)
                case UInt8(ascii: "b"): scratch.append(0x08)
                case UInt8(ascii: "f"): scratch.append(0x0C)
                case UInt8(ascii: "n"): scratch.append(0x0A)
                case UInt8(ascii: "r"): scratch.append(0x0D)
                case UInt8(ascii: "t"): scratch.append(0x09)
                case UInt8(ascii: "u"): try unicodeEscape()
                default: index -= 1; throw error("invalid escape '\\\(Self.show(escaped))'")
                }
            case 0..<0x20:
                throw error("control character in a string")
            default:
                scratch.append(byte)
                index += 1
            }
        }
        throw error("unterminated string")
    }

    /// `\uXXXX` (the index is after the `u`), with a following `\uXXXX` for a surrogate pair.
    private mutating func unicodeEscape() throws(JSONValue.ParseError) {
        var scalar = try hex4()
        if (0xD800..<0xDC00).contains(scalar) {
            guard index + 6 <= bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                throw error("unpaired surrogate in a \\u escape")
            }
            index += 2
            let low = try hex4()
            guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate in a \\u escape") }
            scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00..<0xE000).contains(scalar) {
            throw error("unpaired surrogate in a \\u escape")
        }
        guard let unicode = Unicode.Scalar(scalar) else { throw error("invalid \\u escape") }
        scratch.append(contentsOf: UTF8.encode(unicode)!)
    }

    private mutating func hex4() throws(JSONValue.ParseError) -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error("invalid hex digit in a \\u escape")
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, kept as written with its value.
    private mutating func number() throws(JSONValue.ParseError) -> JSONNumber {
        let start = index
        var negative = false
        if bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        let intStart = index
        guard index < bytes.count, Self.isDigit(bytes[index]) else { throw error("expected a digit") }
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if index < bytes.count, Self.isDigit(bytes[index]) { throw error("leading zero in a number") }
        } else {
            while index < bytes.count, Self.isDigit(bytes[index]) { index += 1 }
        }
        var integral = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            integral = false
            index += 1
            guard index < bytes.count, Self.isDigit(bytes[index]) else { throw error("expected a digit after '.'") }
            while index < bytes.count, Self.isDigit(bytes[index]) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            integral = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, Self.isDigit(bytes[index]) else { throw error("expected a digit in an exponent") }
            while index < bytes.count, Self.isDigit(bytes[index]) { index += 1 }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        // Integers that fit exactly in a Double need no strtod.
        if integral, index - intStart <= 15 {
            var value: Int64 = 0
            for i in intStart..<index { value = value * 10 + Int64(bytes[i] - UInt8(ascii: "0")) }
            return JSONNumber(text: text, value: negative ? -Double(value) : Double(value))
        }
        guard let value = Double(text), value.isFinite else { throw error("number out of range") }
        return JSONNumber(text: text, value: value)
    }

    /// Well-formed UTF-8 per RFC 3629: no overlongs, surrogates or code points past U+10FFFF.
    /// (The standard library's validating initialiser is generic and costs more than parsing.)
    /// Whether any of the eight bytes of `word` is a quote, a backslash or below 0x20: the
    /// bytes a JSON string must escape. A byte of `word ^ 0x2222…` is zero where `word` has a
    /// quote, and `(y - 0x0101…) & ~y & 0x8080…` is not zero exactly when some byte of `y` is
    /// zero; subtracting 0x2020… instead finds a byte below 0x20.
    @inline(__always)
    static func needsEscape(_ word: UInt64) -> Bool { escapeMask(word) != 0 }

    /// ``needsEscape(_:)``'s test as a mask: zero when no byte needs an escape, else its
    /// lowest set bit is the top bit of the first byte (in little-endian order) that does.
    /// Each term's lowest set bit is exact (a borrow only carries upwards from a flagged
    /// byte); bits above it may be false alarms, and are never used.
    @inline(__always)
    static func escapeMask(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let quote = word ^ (ones &* 0x22)
        let slash = word ^ (ones &* 0x5C)
        let special = ((quote &- ones) & ~quote) | ((slash &- ones) & ~slash) | ((word &- ones &* 0x20) & ~word)
        return special & (ones &* 0x80)
    }

    static func isValidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var i = 0
        let n = bytes.count
        while i < n {
            let lead = bytes[i]
            if lead < 0x80 { i += 1; continue }
            func continuation(_ k: Int) -> Bool { i + k < n && bytes[i + k] & 0xC0 == 0x80 }
            switch lead {
            case 0xC2...0xDF:
                guard continuation(1) else { return false }
                i += 2
            case 0xE0...0xEF:
                guard continuation(1), continuation(2) else { return false }
                let second = bytes[i + 1]
                if lead == 0xE0, second < 0xA0 { return false }   // overlong
                if lead == 0xED, second > 0x9F { return false }   // surrogate
                i += 3
            case 0xF0...0xF4:
                guard continuation(1), continuation(2), continuation(3) else { return false }
                let second = bytes[i + 1]
                if lead == 0xF0, second < 0x90 { return false }   // overlong
                if lead == 0xF4, second > 0x8F { return false }   // past U+10FFFF
                i += 4
            default:
                return false
            }
        }
        return true
    }

    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    private static func show(_ byte: UInt8) -> String {
        byte >= 0x20 && byte < 0x7F ? String(UnicodeScalar(byte)) : String(format: "\\x%02X", byte)
    }
}

/// Member names a decoder reads with ``JSONParser/readObject(keys:_:)``, matched on their
/// UTF-8 bytes (length first), so that the members it does not read are never made into
/// strings.
struct JSONKeys: Sendable {
    private let names: [[UInt8]]

    init(_ names: [String]) { self.names = names.map { Array($0.utf8) } }

    /// No names: every member is skipped.
    static let none = JSONKeys([])

    /// The position of the name that is exactly `key` (unescaped bytes), or nil.
    func position(of key: UnsafeBufferPointer<UInt8>) -> Int? {
        for (position, name) in names.enumerated() where name.count == key.count {
            if key.isEmpty || name.withUnsafeBufferPointer({ memcmp($0.baseAddress!, key.baseAddress!, key.count) == 0 }) {
                return position
            }
        }
        return nil
    }
}
