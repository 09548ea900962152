// swift-tools-version:6.2
import PackageDescription

// Computed, so every target gets its own copy (swiftlang/swift-package-manager#6597).
var swiftSettings: [SwiftSetting] {
    [
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("MemberImportVisibility"),
    ]
}

// The outside products the targets use, by the names the code imports.
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
let asyncHTTPClient = Target.Dependency.product(name: "AsyncHTTPClient", package: "async-http-client")
let asn1 = Target.Dependency.product(name: "SwiftASN1", package: "swift-asn1")
let crypto = Target.Dependency.product(name: "Crypto", package: "swift-crypto")
let cryptoExtras = Target.Dependency.product(name: "_CryptoExtras", package: "swift-crypto")
let hummingbird = Target.Dependency.product(name: "Hummingbird", package: "hummingbird")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let metrics = Target.Dependency.product(name: "Metrics", package: "swift-metrics")
let mustache = Target.Dependency.product(name: "Mustache", package: "swift-mustache")
let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioHTTP1 = Target.Dependency.product(name: "NIOHTTP1", package: "swift-nio")
let nioSSL = Target.Dependency.product(name: "NIOSSL", package: "swift-nio-ssl")
let nioHTTPTypes = Target.Dependency.product(name: "NIOHTTPTypes", package: "swift-nio-extras")
let prometheus = Target.Dependency.product(name: "Prometheus", package: "swift-prometheus")
let serviceLifecycle = Target.Dependency.product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let unixSignals = Target.Dependency.product(name: "UnixSignals", package: "swift-service-lifecycle")

/// A library target in `path` with the package's Swift settings.
@MainActor func library(
    _ name: String, _ path: String, _ dependencies: [Target.Dependency] = [], resources: [Resource]? = nil,
    plugins: [Target.PluginUsage]? = nil
) -> Target {
    .target(name: name, dependencies: dependencies, path: path, resources: resources, swiftSettings: swiftSettings, plugins: plugins)
}

/// An executable's thin `Main`: its command line (SpotCLI) over the library that does the work.
@MainActor func executable(_ name: String, _ path: String, _ dependencies: [Target.Dependency]) -> Target {
    .executableTarget(name: name, dependencies: dependencies + ["SpotCLI", argumentParser, logging], path: path, swiftSettings: swiftSettings)
}

@MainActor func tests(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
    .testTarget(name: name, dependencies: dependencies, swiftSettings: swiftSettings)
}

let package = Package(
    name: "SpotGuard",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "spotguard-ingest", targets: ["Ingest"]),
        .executable(name: "spotguard-sef", targets: ["SEF"]),
        .executable(name: "spotguard-replicas", targets: ["ReplicaCoordinator"]),
        .executable(name: "spotguard-decisions", targets: ["DecisionEngine"]),
        .executable(name: "spotguard-bench", targets: ["Bench"]),
        .executable(name: "spotguard-agent", targets: ["Agent"]),
        .executable(name: "spotguard-sim", targets: ["Simulator"]),
        .executable(name: "spotguard-notifier", targets: ["Notifier"]),
        .executable(name: "spotguard-console", targets: ["Console"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        // C libraries and the shims Swift needs to call them.
        .systemLibrary(
            name: "CRabbitMQ", path: "Shared/CRabbitMQ", pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"]), .brew(["rabbitmq-c"])]),
        .target(name: "CRabbitMQShims", dependencies: ["CRabbitMQ"], path: "Shared/CRabbitMQShims"),
        .systemLibrary(
            name: "CLibPQ", path: "Shared/CLibPQ", pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"]), .brew(["libpq"])]),

        // Shared modules: every arrow points down, services never import each other.
        library("SpotModels", "Shared/SpotModels", [crypto]),
        // Every executable's command line: swift-argument-parser, one-sentence errors, and
        // `--version` from the git revision the Revision plugin writes before each build.
        .plugin(name: "Revision", capability: .buildTool(), path: "Plugins/Revision"),
        library("SpotCLI", "Shared/SpotCLI", [argumentParser, logging], plugins: ["Revision"]),
        // Spot market data files: price history, Spot Advisor bands, on-demand prices (pure).
        library("SpotMarket", "Shared/SpotMarket"),
        library("SpotBus", "Shared/SpotBus", ["SpotModels", "CRabbitMQ", "CRabbitMQShims", logging, metrics, serviceLifecycle]),
        library("SpotStore", "Shared/SpotStore", ["CLibPQ", "SpotModels", logging, metrics], resources: [.copy("Migrations")]),
        library(
            "SpotRuntime", "Shared/SpotRuntime",
            [
                "SpotModels", "SpotBus", "SpotStore", "SpotCLI", argumentParser, hummingbird, logging, metrics, prometheus, serviceLifecycle,
                unixSignals, crypto, nioCore, nioHTTPTypes,
            ]),
        // The fleet's tables (clients and agents, instances, switches, commands, system events):
        // the one module that writes them, with each rule written once.
        library("SpotFleet", "Shared/SpotFleet", ["SpotModels", "SpotMarket", "SpotBus", "SpotStore", "SpotRuntime", logging, serviceLifecycle, hummingbird]),
        // The EC2, IMDS and HTTP clients: AsyncHTTPClient (not URLSession, which spins a core per
        // open long-poll on Linux), Foundation's XMLParser and swift-crypto, so the agent that runs
        // on customers' instances carries nothing more.
        library("SpotCloud", "Shared/SpotCloud", [crypto, asyncHTTPClient, nioCore, nioHTTP1, nioSSL]),
        // Instance identity documents: their PKCS7 signature checked (ingest's enrollment) and
        // made (the metadata mocks); swift-asn1 reads the DER, swift-crypto checks the RSA.
        library("SpotIdentity", "Shared/SpotIdentity", [asn1, crypto, cryptoExtras]),
        // One instance's metadata service for the tests and the simulator.
        library("IMDSMock", "Shared/IMDSMock", ["SpotIdentity", hummingbird, serviceLifecycle, logging]),

        // Services: pure cores that decide, a library with the shell (tested), a thin executable.
        library(
            "IngestApp", "Services/Ingest/App",
            ["SpotFleet", "SpotIdentity", "SpotModels", "SpotBus", "SpotStore", "SpotRuntime", hummingbird, metrics, nioCore, crypto],
            resources: [.copy("openapi.yaml")]),
        executable("Ingest", "Services/Ingest/Main", ["IngestApp", "SpotFleet", "SpotRuntime"]),

        library("SEFCore", "Services/SEF/Core", ["SpotModels", crypto]),
        library(
            "SEFApp", "Services/SEF/App",
            ["SpotFleet", "SEFCore", "SpotModels", "SpotBus", "SpotStore", "SpotRuntime", hummingbird, logging, metrics, serviceLifecycle],
            resources: [.copy("openapi.yaml")]),
        executable("SEF", "Services/SEF/Main", ["SEFApp", "SpotRuntime"]),

        library("ReplicaCore", "Services/ReplicaCoordinator/Core", ["SpotModels"]),
        library(
            "ReplicaApp", "Services/ReplicaCoordinator/App",
            ["SpotFleet", "ReplicaCore", "SpotMarket", "SpotModels", "SpotBus", "SpotStore", "SpotRuntime", hummingbird, logging, metrics, serviceLifecycle]),
        executable("ReplicaCoordinator", "Services/ReplicaCoordinator/Main", ["ReplicaApp", "SpotModels", "SpotRuntime"]),

        library("DecisionCore", "Services/DecisionEngine/Core", ["SpotMarket"]),
        library(
            "DecisionApp", "Services/DecisionEngine/App",
            ["SpotFleet", "DecisionCore", "SpotMarket", "SpotModels", "SpotBus", "SpotStore", "SpotRuntime", hummingbird, logging, serviceLifecycle]),
        executable("DecisionEngine", "Services/DecisionEngine/Main", ["DecisionApp", "DecisionCore", "SpotMarket", "SpotModels", "SpotRuntime"]),

        library("NotifierCore", "Services/Notifier/Core", ["SpotModels", crypto]),
        library(
            "NotifierApp", "Services/Notifier/App",
            [
                "SpotFleet", "NotifierCore", "SpotModels", "SpotBus", "SpotStore", "SpotRuntime", hummingbird, logging, serviceLifecycle,
                // webhooks to customers' URLs: TLS, one deadline, and the connection made to the address checked
                asyncHTTPClient, nioCore, nioHTTP1,
            ]),
        executable("Notifier", "Services/Notifier/Main", ["NotifierApp", "SpotRuntime"]),

        library(
            "ConsoleApp", "Services/Console/App", ["SpotFleet", "SpotModels", "SpotBus", "SpotStore", "SpotRuntime", hummingbird, mustache, logging, crypto],
            resources: [.copy("Templates"), .copy("openapi.yaml"), .copy("asyncapi.yaml")]),
        executable("Console", "Services/Console/Main", ["ConsoleApp", "SpotRuntime"]),

        // The agent on customers' instances: SpotCloud, logging, lifecycle and the command line only.
        library("AgentApp", "Services/Agent/App", ["SpotCloud", "SpotModels", crypto, logging]),
        executable("Agent", "Services/Agent/Main", ["AgentApp", "SpotCloud", serviceLifecycle, unixSignals]),

        // The local cloud: market, faults and the EC2 wire format (pure), then the region with
        // its instances running real agents.
        library("SimulatorCore", "Services/Simulator/Core", ["SpotMarket"]),
        library(
            "SimulatorApp", "Services/Simulator/App",
            ["SimulatorCore", "SpotMarket", "SpotCloud", "IMDSMock", "SpotIdentity", hummingbird, logging, serviceLifecycle, unixSignals, nioCore]),
        executable("Simulator", "Services/Simulator/Main", ["SimulatorApp", "SimulatorCore"]),

        // What the tools and the tests share and the services do not: child processes.
        library("ToolSupport", "Tools/Support"),
        executable(
            "Bench", "Tools/Bench",
            [
                "DecisionApp", "SpotFleet", "SpotMarket", "ToolSupport", "SEFApp", "SEFCore", "SpotModels", "SpotBus", "SpotStore", "SpotRuntime",
                "IMDSMock", "SpotCloud",
            ]),

        tests("SpotCloudTests", ["SpotCloud", "IMDSMock"]),
        tests("SpotModelsTests", ["SpotModels"]),
        tests("SpotIdentityTests", ["SpotIdentity", crypto, cryptoExtras]),
        tests("SEFCoreTests", ["SEFCore", "SpotModels", "SpotMarket"]),
        tests("NotifierCoreTests", ["NotifierCore", "SpotModels"]),
        tests("SimulatorCoreTests", ["SimulatorCore", "SpotMarket"]),
        tests("DecisionCoreTests", ["DecisionCore", "SpotMarket"]),
        tests("ReplicaCoreTests", ["ReplicaCore", "SpotModels"]),
        tests(
            "IntegrationTests",
            [
                "SpotModels", "SpotMarket", "SpotBus", "SpotStore", "SpotRuntime", "SpotFleet", "ToolSupport", "SEFApp", "SpotCloud", "IMDSMock",
                "SpotIdentity", "AgentApp", "NotifierCore", "NotifierApp", "ReplicaApp", "DecisionApp", "IngestApp", logging, serviceLifecycle,
            ]),
    ]
)
