import Foundation

/// A journal in memory: the same answers as ``SQLiteJournal`` to the same calls, but nothing
/// survives the process. For tests and dry runs (`storage: { memory: true }`).
public actor MemoryJournal: Journal {
    private var events: [String: StoredEvent] = [:]
    private var records: [Int64: DeliveryRecord] = [:]
    private var dedupe: [String: (eventID: String, at: Date)] = [:]
    private var nextID: Int64 = 1
    private var bookingStates: [String: BookingSnapshot] = [:]
    private let dedupeTTL: TimeInterval
    private let clock: @Sendable () -> Date

    public init(dedupeTTL: Duration = .seconds(7 * 86400), clock: @escaping @Sendable () -> Date = { Date() }) {
        self.dedupeTTL = dedupeTTL.seconds
        self.clock = clock
    }

    public func append(_ entry: consuming JournalEntry) throws -> AppendResult {
        let now = clock()
        guard events[entry.eventID] == nil else {
            throw JournalError(.duplicateEventID, path: "memory", "an event with the id \(entry.eventID) is already stored")
        }
        if let key = entry.dedupeKey.map({ entry.endpoint + "\u{0}" + $0 }) {
            if let seen = dedupe[key], now.timeIntervalSince(seen.at) < dedupeTTL { return .duplicate(of: seen.eventID) }
            dedupe[key] = (entry.eventID, now)
        }
        events[entry.eventID] = StoredEvent(id: entry.eventID, endpoint: entry.endpoint, name: entry.eventName,
                                            receivedAt: entry.receivedAt, body: entry.body)
        var ids: [String: Int64] = [:]
        for notifier in entry.notifiers where ids[notifier] == nil {
            let id = nextID
            nextID += 1
            var record = DeliveryRecord(id: id, eventID: entry.eventID, eventName: entry.eventName, notifier: notifier,
                                        state: .pending, attempts: 0, dueAt: entry.receivedAt, lastError: nil,
                                        receivedAt: entry.receivedAt, updatedAt: now)
            if entry.isLeased(notifier), let lease = entry.lease {
                record.state = .leased
                record.attempts = 1
                record.owner = lease.owner
                record.leaseUntil = lease.until
            }
            records[id] = record
            ids[notifier] = id
        }
        if let snapshot = entry.booking { bookingStates[snapshot.uid] = snapshot }
        if let booking = entry.bookingKey {
            if entry.cancelsReminders {
                for (id, r) in records where r.bookingKey == booking && r.reminderOffset != nil && r.state == .pending {
                    records[id]?.state = .skipped
                    records[id]?.dueAt = nil
                    records[id]?.lastError = ScheduledReminder.cancelledReason
                    records[id]?.updatedAt = now
                }
            }
            for reminder in entry.reminders { schedule(reminder, booking: booking, entry: entry, now: now) }
        }
        return .accepted(deliveries: ids)
    }

    /// One reminder kept per booking, notifier and offset (see ``ScheduledReminder``).
    private func schedule(_ reminder: ScheduledReminder, booking: String, entry: JournalEntry, now: Date) {
        let same = records.values.filter {
            $0.bookingKey == booking && $0.notifier == reminder.notifier && $0.reminderOffset == reminder.offset
        }
        if same.contains(where: { $0.remindAt == reminder.remindAt }) { return }
        if let pending = same.first(where: { $0.state == .pending }) {
            var r = pending
            r.eventID = entry.eventID
            r.eventName = entry.eventName
            r.receivedAt = entry.receivedAt
            r.remindAt = reminder.remindAt
            r.dueAt = reminder.skipReason == nil ? reminder.remindAt : nil
            r.state = reminder.skipReason == nil ? .pending : .skipped
            r.lastError = reminder.skipReason
            r.updatedAt = now
            records[r.id] = r
            return
        }
        let id = nextID
        nextID += 1
        records[id] = DeliveryRecord(
            id: id, eventID: entry.eventID, eventName: entry.eventName, notifier: reminder.notifier,
            state: reminder.skipReason == nil ? .pending : .skipped, attempts: 0,
            dueAt: reminder.skipReason == nil ? reminder.remindAt : nil, lastError: reminder.skipReason,
            bookingKey: booking, reminderOffset: reminder.offset, remindAt: reminder.remindAt,
            receivedAt: entry.receivedAt, updatedAt: now)
    }

    public func lease(_ request: LeaseRequest) -> LeaseResult {
        let due = records.values.filter { r in
            guard r.notifier == request.notifier else { return false }
            switch r.state {
            case .pending: return (r.dueAt ?? .distantPast) <= request.now
            case .leased: return (r.leaseUntil ?? .distantPast) <= request.now
            default: return false
            }
        }.sorted { ($0.dueAt ?? .distantPast, $0.id) < ($1.dueAt ?? .distantPast, $1.id) }
        var result = LeaseResult()
        let now = clock()
        for var r in due where result.deliveries.count < request.limit {
            if r.state == .leased {
                r.interruptions += 1
                if r.interruptions >= request.deadAfter {
                    r.state = .dead
                    r.dueAt = nil
                    r.owner = nil
                    r.leaseUntil = nil
                    r.lastError = Interruptions.reason(r.interruptions)
                    r.updatedAt = now
                    records[r.id] = r
                    result.setAside.append(r)
                    continue
                }
                result.takenOver += 1
            }
            r.state = .leased
            r.attempts += 1
            r.owner = request.owner
            r.leaseUntil = request.until
            r.updatedAt = now
            records[r.id] = r
            result.deliveries.append(DueDelivery(record: r, event: events[r.eventID]))
        }
        result.nextDue = records.values.reduce(Date.distantFuture) { next, r in
            guard r.notifier == request.notifier else { return next }
            switch r.state {
            case .pending: return min(next, r.dueAt ?? .distantPast)
            case .leased: return min(next, r.leaseUntil ?? .distantPast)
            default: return next
            }
        }
        return result
    }

    public func renew(_ ids: [Int64], owner: String, until: Date) -> [Int64] {
        var lost: [Int64] = []
        for id in ids {
            guard var r = records[id], r.state == .leased, r.owner == owner else {
                lost.append(id)
                continue
            }
            r.leaseUntil = until
            records[id] = r
        }
        return lost
    }

    public func record(_ outcomes: [DeliveryOutcome], owner: String) -> [Int64] {
        let now = clock()
        var lost: [Int64] = []
        for outcome in outcomes {
            guard var r = records[outcome.id], r.state == .leased, r.owner == owner else {
                lost.append(outcome.id)
                continue
            }
            switch outcome {
            case .delivered:
                r.state = .delivered
                r.dueAt = nil
            case .retry(_, let at, let error):
                r.state = .pending
                r.dueAt = at
                r.lastError = error
            case .dead(_, let error):
                r.state = .dead
                r.dueAt = nil
                r.lastError = error
            case .skipped(_, let reason):
                r.state = .skipped
                r.dueAt = nil
                r.lastError = reason
            case .released:
                r.state = .pending
                r.dueAt = now
                r.attempts -= 1
            case .postponed(_, let until, let reason):
                r.state = .pending
                r.dueAt = until
                r.attempts -= 1
                r.lastError = reason
            }
            r.owner = nil
            r.leaseUntil = nil
            r.updatedAt = now
            records[r.id] = r
        }
        return lost
    }

    public func instanceStarted(owner: String) -> Int {
        var expired = 0
        for (id, r) in records where r.state == .leased && r.owner != owner {
            records[id]?.leaseUntil = .distantPast
            expired += 1
        }
        return expired
    }

    public func event(id: String) -> StoredEvent? { events[id] }

    public func deliveries(_ query: DeliveryQuery) -> [DeliveryRecord] {
        let list = records.values.filter {
            (query.id == nil || $0.id == query.id) && (query.state == nil || $0.state == query.state)
                && (query.notifier == nil || $0.notifier == query.notifier)
        }
        return Array(list.sorted { $0.id > $1.id }.prefix(max(0, query.limit)))
    }

    public func counts() -> [DeliveryCount] {
        var table: [String: [DeliveryState: Int]] = [:]
        for r in records.values { table[r.notifier, default: [:]][r.state, default: 0] += 1 }
        return table.flatMap { n, states in states.map { DeliveryCount(notifier: n, state: $0.key, count: $0.value) } }
            .inJournalOrder()
    }

    public func retry(_ selection: RetrySelection) -> Int {
        let now = clock()
        let targets: [Int64]
        switch selection {
        case .allDead: targets = records.values.filter { $0.state == .dead }.map(\.id)
        case .ids(let ids): targets = ids
        }
        var changed = 0
        for id in targets {
            guard var r = records[id], r.state == .dead || r.state == .skipped || r.state == .pending else { continue }
            r.state = .pending
            r.dueAt = now
            r.updatedAt = now
            records[id] = r
            changed += 1
        }
        return changed
    }

    public func bookings(startingFrom from: Date, before: Date) -> [BookingSnapshot] {
        bookingStates.values.filter { $0.startedAt >= from && $0.startedAt < before }
            .sorted { ($0.startedAt, $0.uid) < ($1.startedAt, $1.uid) }
    }

    public func prune(before cutoff: Date) -> Int {
        let now = clock()
        dedupe = dedupe.filter { now.timeIntervalSince($0.value.at) < dedupeTTL }
        let horizon = BookingSnapshot.pruneHorizon(cutoff: cutoff, now: now)
        bookingStates = bookingStates.filter { $0.value.startedAt >= horizon || ($0.value.endedAt ?? $0.value.startedAt) >= horizon }
        var removed = 0
        for (id, event) in events where event.receivedAt < cutoff {
            let mine = records.values.filter { $0.eventID == id }
            guard mine.allSatisfy(\.state.isFinal) else { continue }
            for r in mine { records[r.id] = nil }
            events[id] = nil
            removed += 1
        }
        return removed
    }
}
