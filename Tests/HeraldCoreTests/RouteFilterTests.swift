import Foundation
import HeraldCore
import HeraldTesting
import Testing

/// Route conditions as a user writes them, loaded by the real configuration loader and
/// applied to the shared sample events (guest 山田 太郎 <taro.yamada@example.jp>, event type
/// `et_consult60`, answers "ご相談内容" → "料金プランについて" and "How did you find out?" →
/// SNS, Friend; `utm_source: twitter`).
@Suite struct RouteFilterTests {
    static let header = """
        endpoints: [{ path: /hooks/jicoo, secrets: [x] }, { path: /hooks/gh, source: github, secrets: [y] }]
        notifiers:
          a: { kind: recording, label: a }
          b: { kind: recording, label: b }
          c: { kind: recording, label: c }
        templates:
          short: { title: "{{event}}", text: "{{uid}}" }
        routes:

        """

    func table(_ routes: String) throws -> RouteTable {
        RouteTable(routes: try ConfigLoader.testing().load(yaml: Self.header + routes, file: "h.yaml").routes)
    }

    /// Whether one route with `condition` (one YAML line, indented under the route) sends
    /// `event` anywhere.
    func matches(_ condition: String, _ event: String = "guest_booked") throws -> Bool {
        let table = try table("  - events: [\"*\"]\n    notify: [a]\n    \(condition)\n")
        let sample = event == "generic" ? try SampleEvents.genericEvent() : try SampleEvents.event(event)
        return !table.targets(for: sample).isEmpty
    }

    func error(_ routes: String) throws -> ConfigError? {
        guard case .failure(let errors) = try ConfigLoader.testing().check(yaml: Self.header + routes, file: "h.yaml") else { return nil }
        return errors.errors.first
    }

    /// Each notifier gets an event once, in first-named order, with few notifiers (looked
    /// for in the targets chosen so far) and with many (a set past 16).
    @Test(arguments: [3, 16, 17, 40])
    func aNotifierNamedByTwoMatchingRoutesGetsTheEventOnce(_ count: Int) throws {
        let names = (0..<count).map { "n\($0)" }
        var yaml = """
            endpoints: [{ path: /hooks/jicoo, secrets: [x] }]
            notifiers:

            """
        for name in names { yaml += "  \(name): { kind: recording, label: \(name) }\n" }
        // The first route names every other notifier, the second all of them in reverse
        // order, twice.
        let evens = names.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
        yaml += "routes:\n"
        yaml += "  - { events: [\"*\"], notify: [\(evens.joined(separator: ", "))], continue: true }\n"
        yaml += "  - { events: [\"*\"], notify: [\((names.reversed() + names).joined(separator: ", "))] }\n"
        let table = RouteTable(routes: try ConfigLoader.testing().load(yaml: yaml, file: "h.yaml").routes)
        let targets = table.targets(for: try SampleEvents.event("guest_booked"))
        let odds = names.enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
        #expect(targets.map(\.notifier) == evens + odds.reversed())
        #expect(targets.map(\.route) == Array(repeating: 0, count: evens.count) + Array(repeating: 1, count: odds.count))
    }

    @Test func eventTypeAndStatusAreLists() throws {
        #expect(try matches("eventType: [et_other, et_consult60]"))
        #expect(try !matches("eventType: et_other"))
        #expect(try matches("status: open"))
        #expect(try !matches("status: [cancel]"))
        #expect(try matches("status: cancel", "guest_cancelled"))
    }

    @Test func guestEmailIsAGlobThatIgnoresCase() throws {
        #expect(try matches("guestEmail: \"*@example.jp\""))
        #expect(try matches("guestEmail: \"*@EXAMPLE.JP\""))
        #expect(try matches("guestEmail: taro.yamada@example.jp"))
        #expect(try !matches("guestEmail: \"*@example.co.jp\""))
        #expect(try matches("guestEmail: [\"*@example.co.jp\", \"taro.*\"]"))
    }

    @Test func answersContainEqualOrMatchARegex() throws {
        #expect(try matches("answers: [{ question: ご相談内容, contains: 料金 }]"))
        #expect(try !matches("answers: [{ question: ご相談内容, contains: 解約 }]"))
        #expect(try matches("answers: [{ question: \"How did*\", equals: Friend }]"))
        #expect(try !matches("answers: [{ question: \"How did*\", equals: Fri }]"))
        #expect(try matches("answers: { question: \"*\", regex: \"^SN.$\" }"))
        #expect(try !matches("answers: [{ question: ご相談, contains: 料金 }]"))
        // Every condition in the list must hold.
        #expect(try !matches("answers: [{ question: ご相談内容, contains: 料金 }, { question: \"How*\", equals: Ad }]"))
        #expect(try !matches("answers: [{ question: \"*\", contains: a }]", "generic"))
    }

    @Test func trackingEqualsOrGlob() throws {
        #expect(try matches("tracking: { utm_source: twitter }"))
        #expect(try matches("tracking: { utm_source: \"tw*\", utm_campaign: \"winter_*\" }"))
        #expect(try !matches("tracking: { utm_source: twitter, utm_medium: paid }"))
        #expect(try !matches("tracking: { utm_id: x }"))
    }

    @Test func whereReadsAnyPathOfTheBody() throws {
        #expect(try matches("where: [{ path: object.contact.name, equals: 山田 太郎 }]"))
        #expect(try matches("where: [{ path: \"object.answers[1].content\", in: [Friend, Ad] }]"))
        #expect(try matches("where: [{ path: object.timeZone, glob: \"Asia/*\" }]"))
        #expect(try matches("where: [{ path: object.uid, regex: \"^bk_[A-Za-z0-9]+$\" }]"))
        #expect(try matches("where: [{ path: object.cancelReason, exists: false }]"))
        #expect(try !matches("where: [{ path: object.cancelReason, exists: true }]"))
        #expect(try matches("where: [{ path: object.cancelReason, exists: true }]", "guest_cancelled"))
        #expect(try !matches("where: [{ path: \"object.answers[5].content\", exists: true }]"))
        // Numbers compare as written; a generic body has no booking but has paths.
        #expect(try matches("where: [{ path: data.amount, equals: \"12000\" }]", "generic"))
        #expect(try matches("where: [{ path: data.customer.email, glob: \"*@example.jp\" }]", "generic"))
        #expect(try !matches("where: [{ path: data.customer, equals: x }]", "generic"))
    }

    @Test func everyConditionOfARouteMustHold() throws {
        let both = "eventType: et_consult60\n    guestEmail: \"*@example.co.jp\""
        #expect(try !matches(both))
        #expect(try matches("eventType: et_consult60\n    guestEmail: \"*@example.jp\""))
    }

    @Test func firstMatchingRouteStopsRoutingUnlessItContinues() throws {
        let routes = """
              - { events: [guest_booked], notify: [a, b], template: short }
              - { events: ["*"], notify: [b, c] }

            """
        let booked = try SampleEvents.event("guest_booked")
        #expect(try table(routes).targets(for: booked).map(\.notifier) == ["a", "b"])
        #expect(try table(routes).targets(for: SampleEvents.event("guest_cancelled")).map(\.notifier) == ["b", "c"])

        let continuing = """
              - { events: [guest_booked], notify: [a, b], template: short, continue: true }
              - { events: ["*"], notify: [b, c] }

            """
        let targets = try table(continuing).targets(for: booked)
        // b is named by both routes and gets the event once, as the first route says.
        #expect(targets.map(\.notifier) == ["a", "b", "c"])
        #expect(targets.map(\.template) == ["short", "short", nil])
        #expect(targets.map(\.route) == [0, 0, 1])
    }

    /// One notifier's target is the one the whole walk gives it, for every mix of stopping,
    /// continuing and failing routes.
    @Test func aNotifiersTargetIsTheOneAmongAllTargets() throws {
        let tables = try [
            "  - { events: [guest_booked], notify: [a, b], template: short }\n  - { events: [\"*\"], notify: [b, c] }\n",
            "  - { events: [guest_booked], notify: [a, b], template: short, continue: true }\n  - { events: [\"*\"], notify: [b, c] }\n",
            "  - { events: [guest_booked], guestEmail: \"*@vip.example\", notify: [a], template: short }\n"
                + "  - { events: [guest_booked], notify: [a, b] }\n",
            "  - { events: [guest_booked], notify: [a], continue: true }\n  - { events: [guest_booked], notify: [a] }\n"
                + "  - { events: [\"guest_*\"], notify: [c] }\n",
        ].map { try table($0) }
        let events = [try SampleEvents.event("guest_booked"), try SampleEvents.event("guest_cancelled"), try SampleEvents.genericEvent()]
        var found = 0, missing = 0
        for table in tables {
            for event in events {
                let all = table.targets(for: event)
                for name in ["a", "b", "c", "missing"] {
                    #expect(table.target(for: event, notifier: name) == all.first { $0.notifier == name })
                    if all.contains(where: { $0.notifier == name }) { found += 1 } else { missing += 1 }
                }
            }
        }
        #expect(found > 0 && missing > 0, "the cases cover targets found and not found")
    }

    @Test func aRouteWhoseConditionFailsLetsLaterRoutesMatch() throws {
        let routes = """
              - { events: [guest_booked], guestEmail: "*@vip.example", notify: [a], template: short }
              - { events: [guest_booked], notify: [a, b] }

            """
        let (steps, targets) = try table(routes).explain(SampleEvents.event("guest_booked"))
        #expect(steps == [.conditionFailed("guestEmail \"*@vip.example\""), .matched(added: ["a", "b"], continues: false)])
        #expect(targets.map(\.template) == [nil, nil])
        let cancelled = try table(routes).explain(SampleEvents.event("guest_cancelled"))
        #expect(cancelled.steps == [.nameDiffers, .nameDiffers])
        #expect(cancelled.targets.isEmpty)
    }

    @Test func explainSaysWhichRoutesWereNotTried() throws {
        let routes = """
              - { events: [guest_booked], notify: [a], continue: true }
              - { events: [guest_booked], notify: [a] }
              - { events: ["guest_*"], notify: [c] }

            """
        let (steps, targets) = try table(routes).explain(SampleEvents.event("guest_booked"))
        #expect(steps == [.matched(added: ["a"], continues: true), .matched(added: [], continues: false), .notTried(after: 1)])
        #expect(targets.map(\.notifier) == ["a"])
    }

    @Test func badRegexBadPathAndUnknownKeysAreLocated() throws {
        let regex = try #require(try error("  - events: [\"*\"]\n    notify: [a]\n    where: [{ path: object.uid, regex: \"bk_(\" }]\n"))
        #expect(regex.description.hasPrefix("h.yaml:11:40: routes[0].where[0].regex: not a valid regular expression"))

        let path = try #require(try error("  - events: [\"*\"]\n    notify: [a]\n    where: [{ path: \"object..uid\", exists: true }]\n"))
        #expect(path.description.hasPrefix("h.yaml:11:21: routes[0].where[0].path: expected a key at character 8"))
        for (bad, message) in [("a[x]", "is not an array index"), ("a[1", "is not closed"), ("a.", "expected a key"),
                               ("a[99999999999999999999]", "larger than"), ("a]b", "unexpected \"]\"")] {
            let e = try #require(try error("  - events: [\"*\"]\n    notify: [a]\n    where: { path: \"\(bad)\", exists: true }\n"))
            #expect(e.keyPath == "routes[0].where.path")
            #expect(e.message.contains(message), "\(bad): \(e.message)")
        }

        let unknown = try #require(try error("  - events: [\"*\"]\n    notify: [a]\n    guestMail: \"*@x\"\n"))
        #expect(unknown.description.hasPrefix("h.yaml:11:5: routes[0].guestMail: unknown key; did you mean \"guestEmail\"?"))
        let inWhere = try #require(try error("  - events: [\"*\"]\n    notify: [a]\n    where: [{ path: a, equal: x }]\n"))
        #expect(inWhere.keyPath == "routes[0].where[0].equal")
        #expect(inWhere.message.contains("did you mean \"equals\""))
        let answer = try #require(try error("  - events: [\"*\"]\n    notify: [a]\n    answers: [{ question: q, contains: a, equals: b }]\n"))
        #expect(answer.keyPath == "routes[0].answers[0].equals")
        let utm = try #require(try error("  - events: [\"*\"]\n    notify: [a]\n    tracking: { source: x }\n"))
        #expect(utm.keyPath == "routes[0].tracking.source")
    }

    @Test func checkReportsEveryBadFilter() throws {
        let routes = """
              - events: ["*"]
                notify: [a]
                where: [{ path: "a..b", exists: true }]
                answers: [{ question: q, regex: "(" }]
              - { events: ["*"], notfy: [a] }

            """
        let result = try ConfigLoader.testing().check(yaml: Self.header + routes, file: "h.yaml")
        guard case .failure(let errors) = result else {
            Issue.record("the configuration loaded")
            return
        }
        #expect(errors.errors.map(\.keyPath) == ["routes[0].where[0].path", "routes[0].answers[0].regex", "routes[1].notfy"])
    }

    @Test func aRouteAfterACatchAllThatStopsIsAnError() throws {
        let e = try #require(try error("""
              - { events: ["*"], notify: [a] }
              - { events: [guest_booked], notify: [b] }

            """))
        #expect(e.keyPath == "routes[1]")
        #expect(e.line == 10)
        #expect(e.message.contains("routes[0]"))
        #expect(e.message.contains("continue: true"))
        let covered = try #require(try error("""
              - { events: ["guest_*"], notify: [a] }
              - { events: [guest_booked, guest_cancelled], notify: [b] }

            """))
        #expect(covered.keyPath == "routes[1]")
        // A condition or continue: true lets later routes be reached.
        #expect(try error("  - { events: [\"*\"], notify: [a], continue: true }\n  - { events: [guest_booked], notify: [b] }\n") == nil)
        #expect(try error("  - { events: [\"*\"], notify: [a], status: open }\n  - { events: [guest_booked], notify: [b] }\n") == nil)
        #expect(try error("  - { events: [\"guest_*\"], notify: [a] }\n  - { events: [\"host_*\"], notify: [b] }\n") == nil)
    }

    @Test func filtersTakePartInReloadComparison() throws {
        let one = try ConfigLoader.testing().load(yaml: Self.header + "  - { events: [\"*\"], notify: [a], status: open }\n")
        let same = try ConfigLoader.testing().load(yaml: Self.header + "  - { events: [\"*\"], notify: [a], status: open }\n")
        let other = try ConfigLoader.testing().load(yaml: Self.header + "  - { events: [\"*\"], notify: [a], status: cancel }\n")
        #expect(one.routes == same.routes)
        #expect(one.routes != other.routes)
    }
}
