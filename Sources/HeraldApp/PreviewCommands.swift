import ArgumentParser
import Foundation
import HeraldCore
import HeraldTesting

/// The event a preview command looks at: one of HeraldTesting's sample events by name, or a
/// body file, decoded as the configured endpoint would decode it.
struct PreviewEventOptions: ParsableArguments {
    @Argument(help: "A sample event: \(PreviewEventOptions.sampleNames.joined(separator: ", ")).")
    var event: String?

    @Option(help: "Read the webhook body from this file instead of a sample.")
    var body: String?

    @Option(help: "Decode as the endpoint at this path does (default: the first jicoo endpoint for a Jicoo sample, the first other one for generic, the first endpoint for --body).")
    var endpoint: String?

    @Option(name: .customLong("header"), help: "A request header, NAME:VALUE (repeatable), e.g. X-GitHub-Event:pull_request.")
    var headers: [String] = []

    /// The eight Jicoo samples (the team's shared vectors) and `generic`, an `invoice.paid`
    /// webhook without a booking.
    static let sampleNames = HeraldTesting.SampleEvents.jicooNames + ["generic"]

    func validate() throws {
        switch (event, body) {
        case (nil, nil): throw ValidationError("give a sample event (\(Self.sampleNames.joined(separator: ", "))) or --body FILE")
        case (.some, .some): throw ValidationError("give a sample event or --body FILE, not both")
        case (let name?, nil) where !Self.sampleNames.contains(name):
            throw ValidationError("no sample event \"\(name)\"; samples: \(Self.sampleNames.joined(separator: ", ")) (or --body FILE)")
        default: break
        }
        for header in headers where !header.contains(":") {
            throw ValidationError("--header \(header): expected NAME:VALUE")
        }
    }

    /// The event, decoded by the chosen endpoint of `config`, and that endpoint.
    func load(in config: HeraldConfig) throws -> (Event, HeraldConfig.Endpoint) {
        let data: Data
        var id: String?
        var receivedAt = Date()
        if let body {
            guard let read = FileManager.default.contents(atPath: body) else { throw ValidationError("cannot read \(body)") }
            data = read
        } else {
            let name = event ?? ""
            data = name == "generic" ? try HeraldTesting.SampleEvents.genericEvent().body
                : HeraldTesting.SampleEvents.jicooBody(name) ?? Data()
            id = name == "generic" ? "evt_0000sample0002" : "evt_0000sample0001"
            receivedAt = HeraldTesting.SampleEvents.receivedAt
        }
        let chosen: HeraldConfig.Endpoint?
        if let endpoint {
            chosen = config.endpoints.first { $0.path == endpoint }
            guard chosen != nil else {
                throw ValidationError("no endpoint \(endpoint); configured: \(config.endpoints.map(\.path).joined(separator: ", "))")
            }
        } else if body != nil {
            chosen = config.endpoints.first
        } else if event == "generic" {
            chosen = config.endpoints.first { $0.source != .jicoo } ?? config.endpoints.first
        } else {
            chosen = config.endpoints.first { $0.source == .jicoo } ?? config.endpoints.first
        }
        guard let chosen else { throw ValidationError("\(config.file) has no endpoint") }
        let fields = headers.compactMap { header -> (String, String)? in
            guard let colon = header.firstIndex(of: ":") else { return nil }
            return (String(header[..<colon]).trimmingCharacters(in: .whitespaces),
                    String(header[header.index(after: colon)...]).trimmingCharacters(in: .whitespaces))
        }
        do {
            let event = try chosen.decode(body: data, header: { name in fields.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1 },
                                          receivedAt: receivedAt, id: id)
            return (event, chosen)
        } catch {
            throw ValidationError("\(chosen.path) (source \(chosen.source.rawValue)) would answer 400: \(error.reason)")
        }
    }
}

/// `herald render`: what one notifier would send for an event, without sending anything.
struct RenderCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render", abstract: "Print what a notifier would send for an event, without sending it.",
        discussion: """
        Shows the title, text and HTML the templates make, and the notifier's own payload (a chat \
        service's JSON request, the email with its calendar invitation, the file notifier's line). \
        Secrets are shown as <redacted>; nothing is sent and no connection is made.
        Example: herald render guest_cancelled --notifier front-desk -c herald.yaml
        """)

    @OptionGroup var options: ConfigOption
    @OptionGroup var input: PreviewEventOptions
    @Option(help: "The notifier (a name under notifiers:).") var notifier: String
    @Option(help: "Render as routes[K] says (its template, locale and options), whether or not it matches.") var route: Int?
    @Option(help: "text or json.") var format: OutputFormat = .text

    enum OutputFormat: String, ExpressibleByArgument { case text, json }

    func run() async throws {
        let config = try options.load()
        guard let notifier = config.notifiers.first(where: { $0.name == self.notifier }) else {
            throw ValidationError("no notifier \"\(self.notifier)\"; defined: \(config.notifiers.map(\.name).sorted().joined(separator: ", "))")
        }
        let (event, endpoint) = try input.load(in: config)
        let live = try LiveConfig(config: config)
        let target: RouteTable.Target
        if let index = route {
            guard config.routes.indices.contains(index) else {
                throw ValidationError("no routes[\(index)]; the configuration has \(config.routes.count) route\(config.routes.count == 1 ? "" : "s")")
            }
            guard let chosen = live.router.target(route: index, notifier: notifier.name) else {
                throw ValidationError("routes[\(index)] does not notify \(notifier.name)")
            }
            target = chosen
        } else {
            guard let routed = live.router.target(for: event, notifier: notifier.name) else {
                FileHandle.standardError.write(Data("herald: no route sends \(event.name) to \(notifier.name) (see herald routes test); --route K renders it as routes[K] would\n".utf8))
                throw ExitCode(1)
            }
            target = routed
        }
        let plugin = notifier.plugin
        var notification = live.renderer.render(event, template: target.template, locale: target.locale,
                                                options: target.options, html: type(of: plugin).usesHTML)
        notification.deliveryKey = HeraldNotification.deliveryKey(eventID: event.id, notifier: notifier.name)
        let preview: DeliveryPreview?
        do { preview = try plugin.preview(notification) } catch {
            FileHandle.standardError.write(Data("herald: \(notifier.name) would fail: \(notifier.redact(String(describing: DeliveryError(treating: error))))\n".utf8))
            throw ExitCode(1)
        }
        let shown = Shown(notifier: notifier, event: event, endpoint: endpoint, target: target, notification: notification,
                          preview: preview)
        print(format == .json ? shown.json : shown.text)
    }

    /// Everything printed, secrets removed.
    struct Shown {
        let notifier: HeraldConfig.Notifier
        let event: Event
        let endpoint: HeraldConfig.Endpoint
        let target: RouteTable.Target
        let notification: HeraldNotification
        let preview: DeliveryPreview?

        var template: String { target.template ?? "built-in" }

        var text: String {
            let r = notifier.redact
            var out = """
            notifier  \(notifier.name) (\(notifier.kind))
            event     \(event.name) \(event.id) on \(endpoint.path)
            route     routes[\(target.route)], template \(template), locale \(notification.locale.rawValue)
            title     \(r(notification.title))

            """
            out += "── text\n\(r(notification.text))\n"
            let noHTML = type(of: notifier.plugin).usesHTML ? "(none: template \(template) has no html)" : "(not rendered: \(notifier.kind) does not use HTML)"
            out += "── html\n\(notification.html.map(r.callAsFunction) ?? noHTML)\n"
            guard let preview else {
                return out + "── payload\n(the \(notifier.kind) plugin does not show its payload: it implements no preview)"
            }
            out += "── \(r(preview.destination))\n"
            for header in preview.headers { out += "\(header.name): \(r(header.value))\n" }
            for part in preview.parts {
                out += "── \(part.name) (\(part.contentType))\n\(r(part.content))\n"
            }
            return String(out.dropLast())
        }

        var json: String {
            let r = notifier.redact
            var object: [String: JSONValue] = [
                "notifier": .string(notifier.name), "kind": .string(notifier.kind),
                "event": .object(["id": .string(event.id), "name": .string(event.name), "endpoint": .string(endpoint.path)]),
                "route": .number(JSONNumber(Double(target.route))), "template": .string(template),
                "locale": .string(notification.locale.rawValue),
                "title": .string(r(notification.title)), "text": .string(r(notification.text)),
                "html": notification.html.map { .string(r($0)) } ?? .null,
                "payload": .null,
            ]
            if let preview {
                object["payload"] = .object([
                    "destination": .string(r(preview.destination)),
                    "headers": .array(preview.headers.map { .object(["name": .string($0.name), "value": .string(r($0.value))]) }),
                    "parts": .array(preview.parts.map {
                        .object(["name": .string($0.name), "contentType": .string($0.contentType), "content": .string(r($0.content))])
                    }),
                ])
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            return (try? String(decoding: encoder.encode(JSONValue.object(object)), as: UTF8.self)) ?? "{}"
        }
    }
}

/// `herald routes test`: which routes match an event and which notifiers get it.
struct RoutesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "routes", abstract: "Look at the configured routes.", subcommands: [Test.self])

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "test", abstract: "Print which routes match an event, and which notifiers get it with which template.",
            discussion: "Example: herald routes test guest_booked -c herald.yaml")

        @OptionGroup var options: ConfigOption
        @OptionGroup var input: PreviewEventOptions

        func run() async throws {
            let config = try options.load()
            let (event, endpoint) = try input.load(in: config)
            let router = RouteTable(routes: config.routes)
            let (steps, targets) = router.explain(event)
            print("event      \(event.name) \(event.id) on \(endpoint.path) (source \(endpoint.source.rawValue))")
            for (index, step) in steps.enumerated() {
                let label = "routes[\(index)]".padding(toLength: 10, withPad: " ", startingAt: 0)
                switch step {
                case .matched(let added, let continues):
                    let to = added.isEmpty ? "no notifier it lists is new" : "→ " + added.joined(separator: ", ")
                    print("\(label) match \(to)\(continues ? "; continue: true" : "; routing stops here")")
                case .nameDiffers:
                    let events = config.routes[index].events.map(\.debugDescription)
                    print("\(label) no match: events \(events.count == 1 ? events[0] : "[\(events.joined(separator: ", "))]") do not name \(event.name)")
                case .conditionFailed(let condition):
                    print("\(label) no match: \(condition) does not hold")
                case .notTried(let after):
                    print("\(label) not tried: routes[\(after)] matched without continue: true")
                }
            }
            guard !targets.isEmpty else {
                print("no notifier gets this event: Herald would store it and send it nowhere")
                return
            }
            let width = (targets.map(\.notifier.count).max() ?? 0) + 2
            for target in targets {
                let name = target.notifier.padding(toLength: width, withPad: " ", startingAt: 0)
                let template = target.template.map { "template \($0)" } ?? "built-in template"
                let locale = (target.locale ?? config.locale).rawValue
                let options = target.options.isEmpty ? "" : ", options " + target.options.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
                print("notify     \(name)\(template), locale \(locale)\(options) (routes[\(target.route)])")
            }
            printSchedule(event, targets: targets, config: config)
        }

        /// The reminders the event would schedule (or cancel) now, and the agendas that would list it.
        func printSchedule(_ event: Event, targets: [RouteTable.Target], config: HeraldConfig) {
            let plan = Reminders.plan(for: event, targets: targets, now: Date())
            if plan.cancels, let uid = plan.bookingKey {
                print("reminders  cancels the pending reminders of booking \(uid)")
            }
            for r in plan.reminders {
                let offset = TimeText.shortDuration(.seconds(r.offset))
                let skipped = r.skipReason.map { "; skipped: \($0)" } ?? ""
                print("remind     \(r.notifier) \(offset) before the start, at \(ISO8601.format(r.remindAt))\(skipped)")
            }
            guard let booking = BookingSnapshot(event), !booking.isCancelled else { return }
            for notifier in config.notifiers {
                guard let agenda = notifier.policy.agenda,
                      agenda.eventTypes.isEmpty || agenda.eventTypes.contains(booking.eventTypeUid ?? "") else { continue }
                // The agenda that lists the booking's local day goes out that day, or the day before.
                let sentOn = agenda.day == .today ? booking.startedAt
                    : agenda.calendar.date(byAdding: .day, value: -1, to: booking.startedAt) ?? booking.startedAt
                guard let at = agenda.occurrence(onDayOf: sentOn), let day = agenda.listedDay(for: at) else { continue }
                print("agenda     \(notifier.name) lists it in the agenda for \(day.date), sent at \(ISO8601.format(at))")
            }
        }
    }
}
