import Foundation

/// A parsed JSON document, kept whole so templates and plugins can reach any field.
public enum JSONValue: Sendable, Equatable, Codable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number, with the text it was sent as (see ``JSONNumber``).
    case number(JSONNumber)
    /// A string.
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object; key order is not kept.
    case object([String: JSONValue])

    /// Decodes any JSON value.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(JSONNumber(n)) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    /// Encodes the value; integral numbers as integers.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .number(let n):
            if let i = Self.exactInteger(n.value) { try c.encode(i) } else { try c.encode(n.value) }
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    /// Parses UTF-8 JSON bytes. Throws ``JSONValue/ParseError`` with a short reason.
    public static func parse(_ bytes: some Collection<UInt8>) throws(ParseError) -> JSONValue {
        let result: Result<JSONValue, ParseError>? = bytes.withContiguousStorageIfAvailable { buffer in
            Result { () throws(ParseError) in try JSONParser.parse(buffer) }
        }
        if let result { return try result.get() }
        return try Array(bytes).withUnsafeBufferPointer { buffer throws(ParseError) in try JSONParser.parse(buffer) }
    }

    /// Why bytes are not JSON, in a short phrase that says where.
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        /// The reason, for a person.
        public let reason: String
        /// The reason.
        public var description: String { reason }
    }

    /// `n` as an integer when it is one and a Double holds it exactly; nil otherwise (a
    /// fraction, or too large: converting those to Int64 would trap).
    static func exactInteger(_ n: Double) -> Int64? {
        n.rounded() == n && abs(n) < 9.0e15 ? Int64(n) : nil
    }

    /// `n` as text: `3`, not `3.0`, for integers; Swift's shortest form otherwise.
    static func numberText(_ n: Double) -> String {
        exactInteger(n).map(String.init) ?? String(n)
    }

    /// The value at `key` of an object, or nil.
    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    /// The string, or nil for any other kind of value.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// A value Mustache can render: dictionaries, arrays, strings, numbers, booleans.
    public var templateValue: Any {
        switch self {
        case .null: return ""
        case .bool(let b): return b
        case .number(let n): return n.text
        case .string(let s): return s
        case .array(let a): return a.map(\.templateValue)
        case .object(let o): return o.mapValues(\.templateValue)
        }
    }
}

/// A JSON number as the sender wrote it, and its value.
///
/// The text is kept because a Double cannot hold every number a sender may use as an
/// identifier: `12345678901234567890` and `12345678901234567891` are the same Double, and so
/// are `0`, `-0` and `1e-400`. Keys and output are built from ``text``; arithmetic uses
/// ``value``. Two numbers are equal when their values are.
public struct JSONNumber: Sendable, Hashable, CustomStringConvertible, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral {
    /// The number as written in the document (valid JSON number syntax), or Swift's shortest
    /// form for a number made in code (`3`, not `3.0`).
    public let text: String
    /// The nearest Double; finite.
    public let value: Double

    /// A number made in code.
    public init(_ value: Double) {
        self.value = value
        text = JSONValue.numberText(value)
    }

    /// A number read from a document: `text` must be a JSON number whose value is `value`.
    init(text: String, value: Double) {
        self.text = text
        self.value = value
    }

    public init(integerLiteral value: Int64) { self.init(Double(value)) }
    public init(floatLiteral value: Double) { self.init(value) }

    public var description: String { text }
    public static func == (a: JSONNumber, b: JSONNumber) -> Bool { a.value == b.value }
    public func hash(into hasher: inout Hasher) { hasher.combine(value) }
}

// MARK: - Writing

extension JSONValue {
    /// Appends compact JSON (UTF-8, `/` unescaped, object keys in dictionary order).
    public func write(to out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .number(let n): out.append(contentsOf: n.text.utf8)
        case .string(let s): Self.writeString(s, to: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (i, element) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                element.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            var first = true
            for (key, value) in o {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                Self.writeString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                value.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Appends `text` as a JSON string literal. Runs of bytes that need no escape (nearly
    /// all of them) are copied at once rather than appended byte by byte: this runs for every
    /// string of every file line.
    public static func writeString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { bytes in
            var start = 0
            var i = 0
            while i < bytes.count {
                // Words of eight bytes with nothing to escape are skipped whole.
                if let base = bytes.baseAddress {
                    while i &+ 8 <= bytes.count, !JSONParser.needsEscape(UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)) {
                        i &+= 8
                    }
                    guard i < bytes.count else { break }
                }
                let byte = bytes[i]
                i += 1
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                if start < i - 1 { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<(i - 1)])) }
                start = i
                // Byte by byte: an array literal per escape was an allocation per line break.
                out.append(UInt8(ascii: "\\"))
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(byte)
                case 0x0A: out.append(UInt8(ascii: "n"))
                case 0x0D: out.append(UInt8(ascii: "r"))
                case 0x09: out.append(UInt8(ascii: "t"))
                default:
                    out.append(UInt8(ascii: "u")); out.append(UInt8(ascii: "0")); out.append(UInt8(ascii: "0"))
                    out.append(.lowercaseHexDigit(byte >> 4)); out.append(.lowercaseHexDigit(byte & 0xF))
                }
            }
            if start < bytes.count { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start...])) }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// Compact JSON text of this value.
    public var jsonText: String {
        var out: [UInt8] = []
        write(to: &out)
        return String(decoding: out, as: UTF8.self)
    }
}
