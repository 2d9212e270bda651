import HeraldApp

/// The `herald` binary: Herald with its built-in notifier plugins.
@main
struct HeraldMain {
    static func main() async {
        await Herald.main(plugins: Herald.builtInPlugins)
    }
}
