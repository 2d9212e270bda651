import Foundation
import HeraldCore
import HeraldPlugin
import Logging

extension PluginContext {
    /// A context for creating a plugin in a test, as Herald would create it for a notifier
    /// called `name` whose configuration file sits in `baseDirectory`.
    ///
    /// - Parameters:
    ///   - shared: the process-wide objects; pass one instance to several plugins to share
    ///     them, and shut down what your plugin put there (an HTTP client) after the test.
    ///   - logger: by default discards everything, so secrets in test settings never print.
    public static func testing(
        name: String = "test", baseDirectory: String = FileManager.default.temporaryDirectory.path,
        shared: SharedResources = SharedResources(), logger: Logger? = nil
    ) -> PluginContext {
        PluginContext(name: name, logger: logger ?? Logger(label: "herald.notifier.\(name)") { _ in SwiftLogNoOpLogHandler() },
                      baseDirectory: baseDirectory, shared: shared)
    }
}

extension NotifierPlugin {
    /// Creates the plugin from settings written as in a configuration file, exactly as
    /// Herald's loader does: `${VAR}` from `environment`, `<key>File` for ``secretKeys``, the
    /// settings decoded, unknown keys refused, then ``init(settings:context:)``.
    ///
    /// ```swift
    /// let plugin = try CSVNotifier.configured("path: out.csv\ncolumns: [event, guest]")
    /// ```
    ///
    /// - Parameter yaml: the notifier's settings, without `kind:`; lines start at column 1.
    /// - Throws: the ``ConfigError`` `herald check` would print, with its line and column
    ///   counted in `yaml` and its key path relative to the settings (`columns[2]`).
    public static func configured(
        _ yaml: String, context: PluginContext = .testing(), environment: [String: String] = [:]
    ) throws(ConfigError) -> Self {
        let header = ["endpoints: [{path: /hooks/test, secrets: [test-secret]}]", "notifiers:", "  \(context.name):",
                      "    kind: \(kind)"]
        let indented = yaml.split(separator: "\n", omittingEmptySubsequences: false).map { "    " + $0 }
        let file = "settings"
        let loader = ConfigLoader(registry: try PluginRegistry([Self.self]), environment: environment,
                                  shared: context.shared, logger: context.logger)
        let config: HeraldConfig
        do {
            config = try loader.load(yaml: (header + indented).joined(separator: "\n"), file: file,
                                     baseDirectory: context.baseDirectory)
        } catch {
            var relative = error
            let prefix = "notifiers.\(context.name)"
            if relative.keyPath.hasPrefix(prefix + ".") { relative.keyPath.removeFirst(prefix.count + 1) }
            else if relative.keyPath == prefix { relative.keyPath = "" }
            relative.line = relative.line.map { max(1, $0 - header.count) }
            relative.column = relative.column.map { max(1, $0 - 4) }
            throw relative
        }
        guard let plugin = config.notifiers.first?.plugin as? Self else {
            throw ConfigError(file: file, keyPath: "", message: "the loader did not create a \(Self.self)")
        }
        return plugin
    }
}

extension HeraldNotification {
    /// What Herald would hand `plugin` for `event`: rendered with the built-in templates (or
    /// `template`), in `locale`, with the route's `options`, the delivery key Herald uses for
    /// a notifier called `notifier`, and no HTML if the plugin does not use it. `template` is
    /// a user template as under `templates:` in the configuration.
    ///
    /// ```swift
    /// let notification = try HeraldNotification.rendered(SampleEvents.event("guest_booked"), for: CSVNotifier.self)
    /// ```
    public static func rendered<P: NotifierPlugin>(
        _ event: Event, for plugin: P.Type, locale: HeraldLocale = .en, template: HeraldConfig.TemplateSource? = nil,
        options: [String: String] = [:], notifier: String = "test", attempt: Int = 1
    ) throws -> HeraldNotification {
        let renderer = try Renderer(templates: template.map { ["test": $0] } ?? [:], defaultLocale: locale)
        var notification = renderer.render(event, template: template == nil ? nil : "test", locale: locale,
                                           options: options, html: P.usesHTML)
        notification.deliveryKey = HeraldNotification.deliveryKey(eventID: event.id, notifier: notifier)
        notification.attempt = attempt
        return notification
    }
}

extension DeliveryError {
    /// Runs one delivery attempt and returns the ``DeliveryError`` Herald's dispatcher would
    /// act on, or nil if the attempt succeeded.
    ///
    /// An error that is not a ``DeliveryError`` comes back as Herald treats it: retryable,
    /// with the error's description as the message. Check what will happen with
    /// ``disposition``:
    ///
    /// ```swift
    /// let error = await DeliveryError.thrown { try await plugin.deliver(notification) }
    /// #expect(error?.disposition == .permanent)      // dead at once, never retried
    /// ```
    public static func thrown(by attempt: () async throws -> Void) async -> DeliveryError? {
        do {
            try await attempt()
            return nil
        } catch {
            return DeliveryError(treating: error)
        }
    }
}
