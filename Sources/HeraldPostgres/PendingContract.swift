import Foundation
import HeraldCore

// TEMPORARY: the lease-model Journal contract as announced for main, so PostgresJournal can be
// built and tested before the merge. Deleted when main's Journal.swift arrives.

public protocol Journal: Sendable {
    func append(_ entry: JournalEntry) async throws -> AppendResult
    func lease(_ request: LeaseRequest) async throws -> LeaseResult
    func renew(_ ids: [Int64], owner: String, until: Date) async throws -> [Int64]
    func record(_ outcomes: [DeliveryOutcome], owner: String) async throws -> [Int64]
    func instanceStarted(owner: String) async throws -> Int
    func event(id: String) async throws -> StoredEvent?
    func deliveries(_ query: DeliveryQuery) async throws -> [DeliveryRecord]
    func counts() async throws -> [DeliveryCount]
    func retry(_ selection: RetrySelection) async throws -> Int
    func prune(before cutoff: Date) async throws -> Int
}

public enum DeliveryState: String, Sendable, CaseIterable, Codable {
    case pending, leased, delivered, dead, skipped
}

public struct Lease: Sendable, Equatable {
    public var owner: String; public var until: Date
    public init(owner: String, until: Date) { self.owner = owner; self.until = until }
}

public struct JournalEntry: Sendable {
    public var eventID: String
    public var endpoint: String
    public var eventName: String
    public var receivedAt: Date
    public var body: Data
    public var dedupeKey: String?
    public var notifiers: [String]
    public var lease: Lease?
    public var leased: Set<String>
    public init(eventID: String, endpoint: String, eventName: String, receivedAt: Date, body: Data, dedupeKey: String?,
                notifiers: [String], lease: Lease? = nil, leased: Set<String> = []) {
        self.eventID = eventID; self.endpoint = endpoint; self.eventName = eventName; self.receivedAt = receivedAt
        self.body = body; self.dedupeKey = dedupeKey; self.notifiers = notifiers; self.lease = lease; self.leased = leased
    }
}

public enum AppendResult: Sendable, Equatable {
    case accepted(deliveries: [String: Int64])
    case duplicate(of: String)
}

public struct LeaseRequest: Sendable {
    public var notifier: String; public var owner: String
    public var now: Date; public var until: Date
    public var limit: Int; public var deadAfter: Int
    public init(notifier: String, owner: String, now: Date, until: Date, limit: Int, deadAfter: Int) {
        self.notifier = notifier; self.owner = owner; self.now = now; self.until = until; self.limit = limit; self.deadAfter = deadAfter
    }
}

public struct LeaseResult: Sendable {
    public var deliveries: [DueDelivery]
    public var takenOver: Int
    public var setAside: [DeliveryRecord]
    public init(deliveries: [DueDelivery], takenOver: Int, setAside: [DeliveryRecord]) {
        self.deliveries = deliveries; self.takenOver = takenOver; self.setAside = setAside
    }
}

public enum DeliveryOutcome: Sendable, Equatable {
    case delivered(Int64)
    case retry(Int64, at: Date, error: String)
    case dead(Int64, error: String)
    case skipped(Int64, reason: String)
    case released(Int64)
}

public struct DeliveryQuery: Sendable {
    public var id: Int64?; public var state: DeliveryState?; public var notifier: String?; public var limit: Int
    public init(id: Int64? = nil, state: DeliveryState? = nil, notifier: String? = nil, limit: Int = 50) {
        self.id = id; self.state = state; self.notifier = notifier; self.limit = limit
    }
}

public enum RetrySelection: Sendable { case ids([Int64]); case allDead }

public struct DeliveryRecord: Sendable, Equatable {
    public var id: Int64
    public var eventID: String
    public var eventName: String
    public var notifier: String
    public var state: DeliveryState
    public var attempts: Int
    public var dueAt: Date?
    public var lastError: String?
    public var owner: String?
    public var leaseUntil: Date?
    public var interruptions: Int
    public var receivedAt: Date
    public var updatedAt: Date
    public init(id: Int64, eventID: String, eventName: String, notifier: String, state: DeliveryState, attempts: Int,
                dueAt: Date?, lastError: String?, owner: String?, leaseUntil: Date?, interruptions: Int,
                receivedAt: Date, updatedAt: Date) {
        self.id = id; self.eventID = eventID; self.eventName = eventName; self.notifier = notifier; self.state = state
        self.attempts = attempts; self.dueAt = dueAt; self.lastError = lastError; self.owner = owner
        self.leaseUntil = leaseUntil; self.interruptions = interruptions; self.receivedAt = receivedAt; self.updatedAt = updatedAt
    }
}

public struct DueDelivery: Sendable {
    public var record: DeliveryRecord
    public var event: StoredEvent?
    public init(record: DeliveryRecord, event: StoredEvent?) { self.record = record; self.event = event }
}

public struct DeliveryCount: Sendable, Equatable {
    public var notifier: String; public var state: DeliveryState; public var count: Int
    public init(notifier: String, state: DeliveryState, count: Int) { self.notifier = notifier; self.state = state; self.count = count }
}
