// swift-tools-version:6.2
import PackageDescription

// fuzz/run.sh sets HERALD_FUZZ_BUILD=1: Herald's own Swift targets then get libFuzzer's coverage
// and AddressSanitizer, and its dependencies keep the flags of the normal debug build. The fuzz
// build so reuses the dependencies already in `.build` and recompiles only Herald's modules,
// where `swift build --sanitize` would build the whole graph a second time.
let fuzzing = Context.environment["HERALD_FUZZ_BUILD"] == "1"
let fuzzSanitizers = ["-sanitize=fuzzer,address"]

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
] + (fuzzing ? [.unsafeFlags(fuzzSanitizers), .define("HERALD_FUZZING")] : [])

// The commit `herald --version` names. scripts/release-build.sh sets HERALD_BUILD_COMMIT from
// git; other builds leave it unset and the binary says "unknown commit" instead of guessing.
// Only hex digits and "-dirty" are accepted, so the value is safe inside a C string literal.
let buildCommit = Context.environment["HERALD_BUILD_COMMIT"].flatMap { commit in
    commit.allSatisfy { $0.isHexDigit || "-dirty".contains($0) } && !commit.isEmpty ? commit : nil
}

let package = Package(
    name: "herald",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "herald", targets: ["herald"]),
        .library(name: "HeraldPlugin", targets: ["HeraldPlugin"]),
        .library(name: "HeraldTesting", targets: ["HeraldTesting"]),
        .library(name: "HeraldCore", targets: ["HeraldCore"]),
        .library(name: "HeraldApp", targets: ["HeraldApp"]),
        .library(name: "HeraldPostgres", targets: ["HeraldPostgres"]),
        .library(name: "FileNotifier", targets: ["FileNotifier"]),
        .library(name: "EmailNotifier", targets: ["EmailNotifier"]),
        .library(name: "ChatNotifiers", targets: ["ChatNotifiers"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        // HMAC and SHA-256 for plugins, which must not link OpenSSL (already built for NIO's TLS stack).
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        // `swift package generate-documentation` for HeraldPlugin's DocC catalog.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // OpenSSL's libcrypto, for HMAC-SHA256 and constant-time comparison.
        .systemLibrary(
            name: "COpenSSL",
            path: "Sources/COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // A SQLite VFS shim: a commit's WAL frames written with one write(2) instead of two each.
        .target(
            name: "CSQLiteWAL",
            path: "Sources/CSQLiteWAL",
            linkerSettings: [.linkedLibrary("sqlite3")]
        ),
        // What a notifier plugin imports: the plugin protocol, notification, event and booking types,
        // JSON, delivery and configuration errors, durations and settings helpers. No storage,
        // YAML or OpenSSL.
        .target(
            name: "HeraldPlugin",
            dependencies: [.product(name: "Logging", package: "swift-log")],
            path: "Sources/HeraldPlugin",
            swiftSettings: strict
        ),
        // Signatures, events, configuration, routing, rendering, the bus, the journal and the plugin protocol.
        .target(
            name: "HeraldCore",
            dependencies: [
                "COpenSSL", "CSQLiteWAL", "HeraldPlugin",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ],
            path: "Sources/HeraldCore",
            swiftSettings: strict
        ),
        // The PostgreSQL journal, so several Herald instances can share one database.
        .target(
            name: "HeraldPostgres",
            dependencies: [
                "HeraldCore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/HeraldPostgres",
            swiftSettings: strict
        ),
        // Notifier plugins: one library target per integration (not SwiftPM package plugins).
        .target(
            name: "FileNotifier",
            dependencies: ["HeraldPlugin"],
            path: "Plugins/FileNotifier",
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        .target(
            name: "EmailNotifier",
            dependencies: [
                "HeraldPlugin",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "Plugins/EmailNotifier",
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        .target(
            name: "ChatNotifiers",
            dependencies: [
                "HeraldPlugin",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Plugins/ChatNotifiers",
            exclude: ["README.md"],
            swiftSettings: strict
        ),
        // The commit the binary was built from, for `herald --version`.
        .target(
            name: "HeraldBuildInfo",
            path: "Sources/HeraldBuildInfo",
            cSettings: buildCommit.map { [.define("HERALD_BUILD_COMMIT", to: "\"\($0)\"")] } ?? []
        ),
        // The server, CLI and service group, as a library so a custom build can add its own plugins.
        .target(
            name: "HeraldApp",
            dependencies: [
                "HeraldCore", "HeraldPostgres", "HeraldTesting", "FileNotifier", "EmailNotifier", "ChatNotifiers", "HeraldBuildInfo",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            path: "Sources/HeraldApp",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "herald",
            dependencies: ["HeraldApp"],
            path: "Sources/herald",
            swiftSettings: strict
        ),
        // The test kit for plugin authors and Herald's own tests: sample events, rendering as
        // Herald does, a plugin context, a local HTTP recorder, error assertions.
        .target(
            name: "HeraldTesting",
            dependencies: [
                "HeraldPlugin", "HeraldCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            path: "Sources/HeraldTesting",
            swiftSettings: strict
        ),
        // A custom notifier written as a user would: the plugin depends only on HeraldPlugin, its
        // tests only on it and HeraldTesting, and only `main` on HeraldApp.
        .target(
            name: "CSVNotifier",
            dependencies: ["HeraldPlugin"],
            path: "examples/CustomNotifier/Sources/CSVNotifier",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "custom-herald",
            dependencies: ["HeraldApp", "CSVNotifier"],
            path: "examples/CustomNotifier/Sources/custom-herald",
            swiftSettings: strict
        ),
        .testTarget(
            name: "CSVNotifierTests",
            dependencies: ["CSVNotifier", "HeraldTesting"],
            path: "examples/CustomNotifier/Tests/CSVNotifierTests",
            swiftSettings: strict
        ),
        // libFuzzer targets for every parser of outside input (fuzz/run.sh; replayed by the tests).
        .target(
            name: "HeraldFuzzTargets",
            dependencies: [
                "HeraldCore", "ChatNotifiers", "EmailNotifier",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            path: "fuzz/Targets",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "herald-fuzz",
            dependencies: ["HeraldFuzzTargets"],
            path: "fuzz/Runner",
            swiftSettings: strict,
            linkerSettings: fuzzing ? [.unsafeFlags(fuzzSanitizers)] : []
        ),
        // Microbenchmarks for benchmarks/run.sh (never run as tests).
        .executableTarget(
            name: "herald-bench",
            dependencies: ["HeraldCore", "EmailNotifier", "FileNotifier", .product(name: "Logging", package: "swift-log")],
            path: "benchmarks/Micro",
            swiftSettings: strict
        ),
        .testTarget(
            name: "HeraldCoreTests",
            dependencies: [
                "CSQLiteWAL", "HeraldCore", "HeraldPlugin", "HeraldTesting", "HeraldPostgres",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            path: "Tests/HeraldCoreTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "FileNotifierTests",
            dependencies: ["FileNotifier", "HeraldCore", "HeraldTesting"],
            path: "Tests/FileNotifierTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "EmailNotifierTests",
            dependencies: ["EmailNotifier", "HeraldCore", "HeraldTesting", .product(name: "Logging", package: "swift-log")],
            path: "Tests/EmailNotifierTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "ChatNotifiersTests",
            dependencies: [
                "ChatNotifiers", "HeraldCore", "HeraldTesting",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            path: "Tests/ChatNotifiersTests",
            swiftSettings: strict
        ),
        .testTarget(
            name: "HeraldAppTests",
            dependencies: [
                "HeraldApp", "HeraldCore", "HeraldTesting", "HeraldPostgres", "herald", "custom-herald", "HeraldFuzzTargets",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Tests/HeraldAppTests",
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
