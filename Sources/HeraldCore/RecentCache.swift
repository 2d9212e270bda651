import Synchronization

/// Values worked out once per key and kept, the last key asked for compared first: a
/// deployment mostly asks for one (a time zone, an endpoint's request counter), which is then
/// found without hashing. Bounded: past `capacity` keys, values are worked out each time and
/// not kept (a sender can name any zone). Thread-safe; two threads that miss the same key at
/// once may both work its value out, and the last one made is kept.
final class RecentCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct State {
        var last: (key: Key, value: Value)?
        var all: [Key: Value] = [:]
    }
    private let state = Mutex(State())
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    /// The value kept for `key`, else `make(key)`, kept while there is room.
    func value(for key: Key, make: (Key) -> Value) -> Value {
        let kept = state.withLock { state -> Value? in
            if let last = state.last, last.key == key { return last.value }
            guard let value = state.all[key] else { return nil }
            state.last = (key, value)
            return value
        }
        if let kept { return kept }
        let made = make(key)
        state.withLock { state in
            if state.all.count < capacity { state.all[key] = made }
            state.last = (key, made)
        }
        return made
    }
}
