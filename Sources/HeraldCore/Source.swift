import Foundation

/// Reads a verified webhook body into an ``Event``, per the endpoint's `source:`.
public enum EventSource: String, Sendable, CaseIterable {
    /// Jicoo booking events: `{event, createdAt, object: {…booking…}}`.
    case jicoo
    /// Any JSON object; the event name is read from the `eventHeader` header if set, else
    /// from the `eventField` field (default `event`, then `type`), else `webhook`.
    case generic
    /// GitHub webhooks: `X-Hub-Signature-256: sha256=<hex>`, the event name from
    /// `X-GitHub-Event`, redeliveries recognised by `X-GitHub-Delivery`.
    case github

    /// The signature scheme a source uses unless the endpoint says otherwise.
    public var defaultScheme: SignatureSchemeName {
        switch self {
        case .jicoo: .jicoo
        case .generic, .github: .hmacSHA256
        }
    }

    /// The header that names the event unless the endpoint says otherwise (`eventHeader:`).
    public var defaultEventHeader: String? { self == .github ? "X-GitHub-Event" : nil }

    /// Decodes a body. Malformed JSON, or JSON that is not an object, is an error; missing
    /// or odd fields are warnings on the event.
    ///
    /// - Parameter eventName: the name when it came from outside the body (a header, or the
    ///   journal for an event read back); nil reads it from the body.
    public func decode(
        body: Data, endpoint: String, eventField: String? = nil, eventName: String? = nil, id: String? = nil,
        receivedAt: Date = Date()
    ) throws(DecodeError) -> Event {
        if self == .jicoo { return try decodeJicoo(body: body, endpoint: endpoint, id: id, receivedAt: receivedAt) }
        let payload: JSONValue
        do { payload = try JSONValue.parse(body) } catch { throw DecodeError(reason: error.reason) }
        guard case .object = payload else { throw DecodeError(reason: "the body is JSON but not an object") }
        let keys = eventField.map { [$0] } ?? ["event", "type"]
        let name = eventName ?? keys.lazy.compactMap { payload[$0]?.stringValue }.first ?? "webhook"
        return Event(
            id: id ?? Event.makeID(at: receivedAt), endpoint: endpoint, source: rawValue, name: name,
            receivedAt: receivedAt, occurredAt: nil, booking: nil, payload: payload, body: body, warnings: [])
    }

    /// A Jicoo body: `{event, createdAt, object: {…booking…}}`. Only those members are built
    /// (see ``JicooBody``); the event's payload is parsed if something asks for it.
    private func decodeJicoo(body: Data, endpoint: String, id: String?, receivedAt: Date) throws(DecodeError) -> Event {
        let parsed: JicooBody?
        do { parsed = try JicooBody.read(body) } catch { throw DecodeError(reason: error.reason) }
        guard var read = consume parsed else { throw DecodeError(reason: "the body is JSON but not an object") }
        var warnings: [String] = []
        guard let name = read.event?.stringValue, !name.isEmpty else {
            throw DecodeError(reason: "missing string field \"event\"")
        }
        var occurredAt: Date?
        if let created = read.createdAt?.stringValue {
            occurredAt = ISO8601.parse(created)
            if occurredAt == nil { warnings.append("createdAt: \"\(created.prefix(40))\" is not an ISO 8601 date; ignored") }
        }
        var booking: Booking?
        if let fields = read.object.take() {
            booking = Booking(fields: fields, warnings: &warnings)
        } else {
            warnings.append("object: missing or not an object; no booking details")
        }
        return Event(
            id: id ?? Event.makeID(at: receivedAt), endpoint: endpoint, source: rawValue, name: name,
            receivedAt: receivedAt, occurredAt: occurredAt, booking: booking, objectBody: body, warnings: warnings)
    }

    /// The key that identifies a redelivery of the same webhook at one endpoint.
    ///
    /// Jicoo: `event + object.uid + object.updatedAt` when all three are present, so a resent
    /// webhook is recognised even if its `createdAt` changed; otherwise SHA-256 of the body.
    public func dedupeKey(for event: Event) -> String {
        if self == .jicoo, let uid = event.booking?.uid, let updated = event.booking?.updatedAtText {
            return String(concatenating: [event.name, "|", uid, "|", updated])
        }
        return "sha256:" + HMAC.hex(HMAC.sha256(event.body))
    }
}

extension HeraldConfig.Endpoint {
    /// The header that names the event: `eventHeader:`, else the source's (GitHub's
    /// `X-GitHub-Event`); nil reads the name from the body.
    public var eventNameHeader: String? { eventHeader ?? source.defaultEventHeader }

    /// The header whose value identifies one webhook across redeliveries: GitHub's
    /// `X-GitHub-Delivery`, Standard Webhooks' `webhook-id`; nil for other senders.
    public var deliveryIDHeader: String? {
        if source == .github { return "X-GitHub-Delivery" }
        if schemeName == .standardWebhooks { return "webhook-id" }
        return nil
    }

    /// Decodes a verified request's body, taking the event name from its header if the
    /// endpoint names one and the request carries it. `id` nil makes a new event id.
    public func decode(body: Data, header: (String) -> String?, receivedAt: Date, id: String? = nil) throws(DecodeError) -> Event {
        let name = eventNameHeader.flatMap(header).map { $0.trimmingCharacters(in: .whitespaces) }
        return try source.decode(body: body, endpoint: path, eventField: eventField,
                                 eventName: name?.isEmpty == false ? name : nil, id: id, receivedAt: receivedAt)
    }

    /// The key that tells a redelivery of this webhook: the sender's delivery id when it
    /// sends one (``deliveryIDHeader``), else the source's rule (``EventSource/dedupeKey(for:)``).
    func dedupeKey(for event: Event, header: (String) -> String?) -> String {
        if let name = deliveryIDHeader, let id = header(name), !id.isEmpty {
            // Bounded: the key is stored for every event; a long id is kept as its digest.
            return id.utf8.count <= 128 ? "\(name.lowercased()):\(id)" : "\(name.lowercased()):sha256:" + HMAC.hex(HMAC.sha256(Array(id.utf8)))
        }
        return source.dedupeKey(for: event)
    }
}

/// A body that is not a JSON object, or lacks what its source needs (HTTP 400).
public struct DecodeError: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public var description: String { reason }
}
