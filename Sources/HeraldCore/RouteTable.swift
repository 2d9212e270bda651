/// Which notifiers get an event, with which template: the `routes:` of the configuration.
///
/// Routes are tried in order. A route matches an event when one of its `events` patterns
/// matches the event's name and every condition of its filter holds. A matching route sends
/// the event to each notifier it lists that no earlier matching route has named, rendered as
/// that route says: a notifier gets an event once. Routing stops at the first matching route
/// unless that route has `continue: true`, in which case later routes are tried too.
public struct RouteTable: Sendable {
    /// One notifier that gets the event, and how it is rendered.
    public struct Target: Sendable, Equatable {
        public var notifier: String
        public var template: String?
        public var locale: HeraldLocale?
        public var options: [String: String]
        /// The index of the route that chose this notifier.
        public var route: Int
        /// The route's reminders before a booking's start, their template and grace.
        public var remind: [Duration] = []
        public var reminderTemplate: String?
        public var remindGrace: Duration = .seconds(600)
    }

    /// What one route did with an event (``explain(_:)``, for `herald routes test`).
    public enum Step: Sendable, Equatable {
        /// It matched; `added` are the notifiers it listed that no earlier route had named.
        case matched(added: [String], continues: Bool)
        /// None of its `events` patterns matches the event's name.
        case nameDiffers
        /// Its name matched but this condition (as written) does not hold.
        case conditionFailed(String)
        /// An earlier route (this index) matched without `continue: true`.
        case notTried(after: Int)
    }

    public let routes: [HeraldConfig.Route]

    public init(routes: [HeraldConfig.Route]) { self.routes = routes }

    /// The notifiers that get `event`, in route order.
    public func targets(for event: Event) -> [Target] { walk(event, record: nil) }

    /// How `notifier` renders `event`, or nil if no route sends it there: the target
    /// ``targets(for:)`` gives it, found by the same walk stopped at the first matching route
    /// that names it, without the targets of the others (the dispatcher asks this once per
    /// delivery).
    public func target(for event: Event, notifier: String) -> Target? {
        for (index, route) in routes.enumerated() where Self.refusal(of: route, for: event) == nil {
            if route.notify.contains(notifier) { return Target(route: route, index: index, notifier: notifier) }
            if !route.continues { return nil }
        }
        return nil
    }

    /// The target route `index` would make for `notifier` if it matched; nil if the route
    /// does not list it.
    public func target(route index: Int, notifier: String) -> Target? {
        guard routes.indices.contains(index), routes[index].notify.contains(notifier) else { return nil }
        return Target(route: routes[index], index: index, notifier: notifier)
    }

    /// What every route did with `event`, and the resulting targets.
    public func explain(_ event: Event) -> (steps: [Step], targets: [Target]) {
        var steps: [Step] = []
        let targets = walk(event) { steps.append($0) }
        return (steps, targets)
    }

    /// Why a route does not take an event: the rule both walks apply.
    private enum Refusal { case name, condition(RouteFilter.Condition) }

    /// Why `route` does not take `event`, or nil when it does: its name matches one of its
    /// patterns and every condition holds.
    private static func refusal(of route: HeraldConfig.Route, for event: Event) -> Refusal? {
        guard route.matches(event.name) else { return .name }
        if !route.filter.isEmpty, let failed = route.filter.firstFailure(for: event) { return .condition(failed) }
        return nil
    }

    /// The one routing loop; `record` hears each route's step in order.
    private func walk(_ event: Event, record: ((Step) -> Void)?) -> [Target] {
        // Notifiers already chosen are looked for in `out` itself while there are few (a set
        // cost an allocation and a hash per notifier on every routing), in a set past 16.
        var out: [Target] = []
        var seen: Set<String>?
        func isNew(_ name: String) -> Bool {
            if seen == nil, out.count < 16 { return !out.contains { $0.notifier == name } }
            if seen == nil { seen = Set(out.map(\.notifier)) }
            return seen!.insert(name).inserted
        }
        for (index, route) in routes.enumerated() {
            switch Self.refusal(of: route, for: event) {
            case .name?:
                record?(.nameDiffers)
                continue
            case .condition(let failed)?:
                record?(.conditionFailed(failed.description))
                continue
            case nil: break
            }
            let before = out.count
            for name in route.notify where isNew(name) {
                out.append(Target(route: route, index: index, notifier: name))
            }
            record?(.matched(added: out[before...].map(\.notifier), continues: route.continues))
            if !route.continues {
                if let record { for _ in (index + 1)..<routes.count { record(.notTried(after: index)) } }
                break
            }
        }
        return out
    }
}

extension RouteTable.Target {
    init(route: HeraldConfig.Route, index: Int, notifier: String) {
        self.init(notifier: notifier, template: route.template, locale: route.locale, options: route.options, route: index,
                  remind: route.remind, reminderTemplate: route.reminderTemplate, remindGrace: route.remindGrace)
    }
}
