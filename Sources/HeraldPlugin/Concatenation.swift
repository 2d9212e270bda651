extension String {
    /// `pieces` end to end, copied into one allocation of the exact size.
    ///
    /// For text built on every request (a notification's body, a delivery key): `+`, `+=`
    /// and interpolation grow the string piece by piece, about 300 instructions a piece,
    /// where this costs one size pass and one copy per piece.
    package init(concatenating pieces: [String]) {
        var size = 0
        for piece in pieces { size += piece.utf8.count }
        self.init(unsafeUninitializedCapacity: size) { out in
            var written = 0
            for var piece in pieces {
                piece.withUTF8 { bytes in
                    guard let source = bytes.baseAddress, bytes.count > 0 else { return }
                    (out.baseAddress! + written).initialize(from: source, count: bytes.count)
                    written += bytes.count
                }
            }
            return written
        }
    }
}

extension UInt8 {
    /// The lowercase hex digit of `nibble` (0-15), for text written byte by byte (a JSON
    /// `\u00XX` escape, an event id).
    @inline(__always)
    static func lowercaseHexDigit(_ nibble: UInt8) -> UInt8 { nibble < 10 ? 48 + nibble : 87 + nibble }
}
