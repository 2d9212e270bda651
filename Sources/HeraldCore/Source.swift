import Foundation

/// Reads a verified webhook body into an ``Event``, per the endpoint's `source:`.
public enum EventSource: String, Sendable, CaseIterable {
    /// Jicoo booking events: `{event, createdAt, object: {…booking…}}`.
    case jicoo
    /// Any JSON object; the event name is read from `eventField` (default `event`, then `type`).
    case generic

    /// The signature scheme a source uses unless the endpoint says otherwise.
    public var defaultScheme: SignatureSchemeName {
        switch self {
        case .jicoo: .jicoo
        case .generic: .hmacSHA256
        }
    }

    /// Decodes a body. Malformed JSON, or JSON that is not an object, is an error; missing
    /// or odd fields are warnings on the event.
    public func decode(
        body: Data, endpoint: String, eventField: String? = nil, id: String? = nil, receivedAt: Date = Date()
    ) throws(DecodeError) -> Event {
        let payload: JSONValue
        do { payload = try JSONValue.parse(body) } catch { throw DecodeError(reason: error.reason) }
        guard case .object = payload else { throw DecodeError(reason: "the body is JSON but not an object") }
        var warnings: [String] = []
        let name: String
        var booking: Booking?
        var occurredAt: Date?
        switch self {
        case .jicoo:
            guard let event = payload["event"]?.stringValue, !event.isEmpty else {
                throw DecodeError(reason: "missing string field \"event\"")
            }
            name = event
            if let created = payload["createdAt"]?.stringValue {
                occurredAt = ISO8601.parse(created)
                if occurredAt == nil { warnings.append("createdAt: \"\(created.prefix(40))\" is not an ISO 8601 date; ignored") }
            }
            if let object = payload["object"], case .object = object {
                booking = Booking(json: object, warnings: &warnings)
            } else {
                warnings.append("object: missing or not an object; no booking details")
            }
        case .generic:
            let keys = eventField.map { [$0] } ?? ["event", "type"]
            name = keys.lazy.compactMap { payload[$0]?.stringValue }.first ?? "webhook"
        }
        return Event(
            id: id ?? Event.makeID(at: receivedAt), endpoint: endpoint, source: rawValue, name: name,
            receivedAt: receivedAt, occurredAt: occurredAt, booking: booking, payload: payload,
            body: body, warnings: warnings)
    }

    /// The key that identifies a redelivery of the same webhook at one endpoint.
    ///
    /// Jicoo: `event + object.uid + object.updatedAt` when all three are present, so a resent
    /// webhook is recognised even if its `createdAt` changed; otherwise SHA-256 of the body.
    public func dedupeKey(for event: Event) -> String {
        if self == .jicoo, let uid = event.booking?.uid, let updated = event.booking?.updatedAtText {
            return "\(event.name)|\(uid)|\(updated)"
        }
        return "sha256:" + HMAC.hex(HMAC.sha256(event.body))
    }
}

/// A body that is not a JSON object, or lacks what its source needs (HTTP 400).
public struct DecodeError: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public var description: String { reason }
}
