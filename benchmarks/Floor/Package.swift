// swift-tools-version:6.2
// The floor receiver for benchmarks/run.sh: a bare Hummingbird 2 server doing only what the
// Python aiohttp receiver does (read the body, verify Jicoo's signature with OpenSSL, optionally
// append the body as one line, answer 202). It measures what Herald's HTTP stack costs on this
// machine for that work, in every run. Built on its own (run.sh: --scratch-path .build-floor),
// never part of Herald's package or its tests. `--nio` serves the same work from a plain SwiftNIO
// channel handler instead (NIOFloor.swift): what the HTTP work costs without Hummingbird's
// router and its async request and response streams.
import PackageDescription

let package = Package(
    name: "herald-floor",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .systemLibrary(name: "CLibCrypto", path: "Sources/CLibCrypto", pkgConfig: "openssl"),
        .executableTarget(
            name: "herald-floor",
            dependencies: [
                "CLibCrypto",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Sources/herald-floor"
        ),
    ],
    swiftLanguageModes: [.v6]
)
