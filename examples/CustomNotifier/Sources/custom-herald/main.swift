import CSVNotifier
import HeraldApp

// A Herald binary with one extra notifier, registered next to the built-in ones. It has every
// command of `herald` (serve, check, sign, send-test, …); configurations may use `kind: csv`.
await Herald.main(plugins: Herald.builtInPlugins + [CSVNotifier.self])
