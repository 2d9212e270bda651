import ArgumentParser
import ChatNotifiers
import EmailNotifier
import FileNotifier
import Foundation
import HeraldBuildInfo
import HeraldCore
import Synchronization

/// Herald's entry point. A binary registers its notifier plugins here, statically:
///
/// ```swift
/// @main struct MyHerald {
///     static func main() async {
///         await Herald.main(plugins: Herald.builtInPlugins + [MyNotifier.self])
///     }
/// }
/// ```
public enum Herald {
    /// This version of Herald; `CHANGELOG.md` says what each version changed.
    public static let version = "0.3.0-dev"

    /// The commit the binary was built from, when the build said (release builds do:
    /// `scripts/release-build.sh`); nil otherwise.
    public static var commit: String? { herald_build_commit().map { String(cString: $0) } }

    /// What `herald --version` prints: `0.3.0-dev (commit 1a2b3c4d5e6f)` or `(unknown commit)`.
    public static var versionText: String { "\(version) (\(commit.map { "commit \($0)" } ?? "unknown commit"))" }

    /// The notifiers that ship with Herald.
    public static let builtInPlugins: [any NotifierPlugin.Type] =
        [FileNotifier.self, EmailNotifier.self] + ChatNotifierKinds.all

    /// Runs the command line (`serve`, `check`, `sign`, `send-test`, …) with these plugins.
    public static func main(plugins: [any NotifierPlugin.Type]) async {
        registered.withLock { $0 = plugins }
        await HeraldCommand.main()
    }

    static let registered = Mutex<[any NotifierPlugin.Type]>([])

    /// The registry of the plugins passed to ``main(plugins:)``.
    static func registry() throws(ConfigError) -> PluginRegistry {
        try PluginRegistry(registered.withLock { $0 })
    }
}

struct HeraldCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "herald",
        abstract: "Turns signed webhooks (Jicoo bookings first) into email, chat and file notifications.",
        discussion: "Start with: herald serve --config examples/herald.yaml",
        version: Herald.versionText,
        subcommands: [ServeCommand.self, CheckCommand.self, RenderCommand.self, RoutesCommand.self, SignCommand.self, SendTestCommand.self,
                      DeliveriesCommand.self, JournalCommand.self, StatusCommand.self],
        defaultSubcommand: nil
    )
}

/// `--config`, shared by the commands that read the configuration.
struct ConfigOption: ParsableArguments {
    @Option(name: .shortAndLong, help: "The configuration file (default: $HERALD_CONFIG, else herald.yaml).")
    var config: String?

    var path: String {
        config ?? ProcessInfo.processInfo.environment["HERALD_CONFIG"] ?? "herald.yaml"
    }

    /// ``path`` if a file is there; otherwise a usage error that says how to give one.
    func existingPath() throws -> String {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("no configuration file at \(path); pass --config (try examples/herald.yaml)")
        }
        return path
    }

    /// Loads and validates the configuration, or prints the error and exits 1.
    func load(shared: SharedResources = SharedResources()) throws -> HeraldConfig {
        let path = try existingPath()
        do {
            return try Self.loadChecked(file: path, shared: shared)
        } catch {
            FileHandle.standardError.write(Data("herald: configuration error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

extension ConfigOption {
    /// Loads and validates the configuration file, creating every notifier with `shared`;
    /// the error names the file, the key path and the line. Startup and reloads both use it.
    static func loadChecked(file: String, shared: SharedResources) throws(ConfigError) -> HeraldConfig {
        try ConfigLoader(registry: try Herald.registry(), shared: shared).load(file: file)
    }
}
