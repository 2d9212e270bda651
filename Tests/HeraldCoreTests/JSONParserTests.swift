import Foundation
import Testing
@testable import HeraldCore

/// Herald's own JSON reader must accept exactly what Foundation's does and build the same
/// values, since every webhook body goes through it.
@Suite("JSON parsing and writing")
struct JSONParserTests {
    /// The same tree JSONSerialization builds, for comparison.
    static func foundationValue(_ data: Data) throws -> JSONValue {
        func convert(_ value: Any) -> JSONValue {
            switch value {
            case let o as [String: Any]: return .object(o.mapValues(convert))
            case let a as [Any]: return .array(a.map(convert))
            case let s as String: return .string(s)
            case is NSNull: return .null
            case let n as NSNumber:
                if type(of: n) == type(of: NSNumber(value: true)) { return .bool(n.boolValue) }
                return .number(JSONNumber(n.doubleValue))
            default: return .null
            }
        }
        return convert(try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]))
    }

    @Test func everySharedBodyParsesAsFoundationDoes() throws {
        for name in Fixtures.eventNames {
            let body = try Fixtures.eventBody(name)
            #expect(try JSONValue.parse(body) == (try Self.foundationValue(body)), "\(name)")
        }
    }

    @Test(arguments: [
        #"{"a":[1,-2.5,3e2,0,-0.0,1E-2,true,false,null],"b":{"c":"d"},"e":[],"f":{}}"#,
        #"  "text with \"quotes\", \\ backslash, \/ slash, \b\f\n\r\t and \u00e9\u3042"  "#,
        #"["😀 \ud83d\ude00", "日本語", "tab\tinside"]"#,
        #"{"dup":1,"dup":2}"#,
        #"123456789012345678901234567890"#,
        #"-9007199254740993"#,
        "\u{FEFF}{\"bom\":true}",
    ])
    func validDocumentsMatchFoundation(_ text: String) throws {
        let data = Data(text.utf8)
        #expect(try JSONValue.parse(data) == (try Self.foundationValue(data)))
    }

    @Test func duplicateKeysKeepTheLastValue() throws {
        #expect(try JSONValue.parse(Data(#"{"k":1,"k":2}"#.utf8))["k"] == .number(2))
    }

    /// Strings are scanned eight bytes at a time until a word holds a quote, a backslash or
    /// a control character: each of those, and a byte that is not UTF-8, is found at every
    /// position of a word, in long strings and short ones.
    @Test func stringScanningFindsEverySpecialByteAtEveryPosition() throws {
        for length in [1, 7, 8, 9, 16, 23, 40] {
            for at in 0..<length {
                func document(_ middle: [UInt8]) -> Data {
                    var bytes = Array(repeating: UInt8(ascii: "a"), count: length)
                    bytes.replaceSubrange(at..<(at + 1), with: middle)
                    return Data([UInt8(ascii: "[")] + [UInt8(ascii: "\"")] + bytes + [UInt8(ascii: "\"")] + [UInt8(ascii: "]")])
                }
                func expected(_ middle: String) -> JSONValue {
                    .array([.string(String(repeating: "a", count: at) + middle + String(repeating: "a", count: length - at - 1))])
                }
                #expect(try JSONValue.parse(document([0x5C, 0x22])) == expected("\""), "quote at \(at) of \(length)")
                #expect(try JSONValue.parse(document([0x5C, 0x5C])) == expected("\\"), "backslash at \(at) of \(length)")
                #expect(try JSONValue.parse(document([0xC3, 0xA9])) == expected("é"), "é at \(at) of \(length)")
                #expect(try JSONValue.parse(document([0x7F])) == expected("\u{7F}"), "DEL at \(at) of \(length)")
                for (byte, reason) in [(UInt8(0x01), "control character"), (0x1F, "control character"),
                                       (0xFF, "invalid UTF-8"), (0xC3, "invalid UTF-8")] {
                    #expect(throws: JSONValue.ParseError.self, "\(byte) at \(at) of \(length)") {
                        try JSONValue.parse(document([byte]))
                    }
                    do { _ = try JSONValue.parse(document([byte])) } catch {
                        #expect(error.reason.contains(reason), "\(byte) at \(at) of \(length): \(error.reason)")
                    }
                }
                // A string ending at this position (the closing quote found inside a word).
                #expect(try JSONValue.parse(Data(("[\"" + String(repeating: "b", count: at) + "\",1]").utf8))
                        == .array([.string(String(repeating: "b", count: at)), .number(JSONNumber(1))]))
            }
        }
    }

    /// The writer skips eight bytes at a time while none needs an escape: each byte that
    /// does, at every position, is escaped exactly as a byte-by-byte writer would, and the
    /// result reads back as the same string.
    @Test func writtenStringsEscapeEverySpecialByteAtEveryPosition() throws {
        func reference(_ text: String) -> String {
            var out: [UInt8] = [UInt8(ascii: "\"")]
            for byte in text.utf8 {
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), byte]
                case 0x0A: out += Array("\\n".utf8)
                case 0x0D: out += Array("\\r".utf8)
                case 0x09: out += Array("\\t".utf8)
                case 0..<0x20: out += Array(String(format: "\\u%04x", byte).utf8)
                default: out.append(byte)
                }
            }
            return String(decoding: out + [UInt8(ascii: "\"")], as: UTF8.self)
        }
        for length in [1, 7, 8, 9, 16, 23, 40] {
            for at in 0..<length {
                for special in ["\"", "\\", "\n", "\r", "\t", "\u{01}", "\u{1F}", "é", "山", "\u{7F}"] {
                    let text = String(repeating: "a", count: at) + special + String(repeating: "b", count: length - at - 1)
                    var out: [UInt8] = []
                    JSONValue.writeString(text, to: &out)
                    let written = String(decoding: out, as: UTF8.self)
                    #expect(written == reference(text), "\(special.debugDescription) at \(at) of \(length)")
                    #expect(try JSONValue.parse(Data(out)) == .string(text))
                }
            }
        }
    }

    @Test(arguments: [
        ("", "unexpected end"), ("{", "expected a string key"), (#"{"a" 1}"#, "expected ':'"),
        ("[1,]", "unexpected character ']'"), (#"{"a":1,}"#, "expected a string key"), ("[1 2]", "expected ',' or ']'"),
        ("01", "leading zero"), ("1.", "digit after '.'"), ("-", "expected a digit"), ("1e", "exponent"),
        ("tru", "invalid literal"), ("nul", "invalid literal"), (#""abc"#, "unterminated string"),
        ("\"a\u{01}b\"", "control character"), (#""\x""#, "invalid escape"), (#""\u12""#, "\\u escape"),
        (#""\ud800""#, "unpaired surrogate"), (#""\udc00x""#, "unpaired surrogate"), ("{} {}", "after the JSON value"),
        ("1e999", "out of range"), ("// comment\n{}", "unexpected character '/'"),
    ])
    func invalidDocumentsAreRejectedWithAReason(_ text: String, _ reason: String) {
        #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse(Data(text.utf8)) }
        do {
            _ = try JSONValue.parse(Data(text.utf8))
        } catch {
            #expect(error.reason.contains(reason), "\(text): \(error.reason)")
            #expect(error.reason.hasPrefix("invalid JSON: "))
        }
        // Foundation agrees that these are not JSON, except that on Linux it tolerates trailing
        // commas (RFC 8259 does not) and reads 1e999 as infinity.
        if !["[1,]", #"{"a":1,}"#, "1e999"].contains(text) {
            #expect((try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) == nil)
        }
    }

    @Test(arguments: [
        [0x22, 0xFF, 0x22], [0x22, 0xC0, 0xAF, 0x22], [0x22, 0xE0, 0x80, 0xAF, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22],
        [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], [0x22, 0xE3, 0x81, 0x22], [0x22, 0xF0, 0x9F, 0x98, 0x22],
    ] as [[UInt8]])
    func invalidUTF8IsRejected(_ bytes: [UInt8]) {
        #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse(bytes) }
    }

    @Test func validMultibyteUTF8IsKept() throws {
        let text = "\"é あ 😀 \u{10FFFF}\""
        #expect(try JSONValue.parse(Data(text.utf8)) == .string("é あ 😀 \u{10FFFF}"))
    }

    @Test func deepNestingIsRefusedNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse(Data(deep.utf8)) }
        let fine = String(repeating: "[", count: 500) + String(repeating: "]", count: 500)
        #expect((try? JSONValue.parse(Data(fine.utf8))) != nil)
    }

    @Test func writtenJSONReadsBackTheSame() throws {
        for name in Fixtures.eventNames {
            let value = try JSONValue.parse(try Fixtures.eventBody(name))
            var out: [UInt8] = []
            value.write(to: &out)
            #expect(!out.contains(0x0A), "one line")
            #expect(try JSONValue.parse(out) == value, "\(name)")
            #expect(try Self.foundationValue(Data(out)) == value, "\(name)")
        }
        let tricky = JSONValue.object(["s": .string("\"\\\n\r\t\u{01}\u{1F}/é"), "n": .number(1.5), "i": .number(-42),
                                       "big": .number(1e300), "a": .array([.null, .bool(false)])])
        #expect(try JSONValue.parse(Array(tricky.jsonText.utf8)) == tricky)
        #expect(JSONValue.string("a/b").jsonText == #""a/b""#)
        #expect(JSONValue.number(3).jsonText == "3")
        // Escapes at the start, between runs of plain bytes and at the end, byte for byte.
        #expect(JSONValue.string("\"ab\"cd\\e\nf\u{01}g山\t").jsonText == #""\"ab\"cd\\e\nf\u0001g山\t""#)
        #expect(JSONValue.string("").jsonText == #""""#)
        #expect(JSONValue.string("\r\u{1F}\u{0B}x\u{1A}").jsonText == #""\r\u001f\u000bx\u001a""#)
        #expect(JSONValue.string("山田 太郎").jsonText == "\"山田 太郎\"")
    }
}
