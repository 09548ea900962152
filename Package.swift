// swift-tools-version:6.2
import PackageDescription

// Computed, so every target gets its own copy (swiftlang/swift-package-manager#6597).
var swiftSettings: [SwiftSetting] {
    [
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("MemberImportVisibility"),
    ]
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
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
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
        .target(
            name: "SpotModels", dependencies: [.product(name: "Crypto", package: "swift-crypto")], path: "Shared/SpotModels",
            swiftSettings: swiftSettings),
        // Every executable's command line: swift-argument-parser, one-sentence errors, and
        // `--version` from the git revision the Revision plugin writes before each build.
        .plugin(name: "Revision", capability: .buildTool(), path: "Plugins/Revision"),
        .target(
            name: "SpotCLI", dependencies: [.product(name: "ArgumentParser", package: "swift-argument-parser")], path: "Shared/SpotCLI",
            swiftSettings: swiftSettings, plugins: ["Revision"]),
        // Spot market data files: price history, Spot Advisor bands, on-demand prices (pure).
        .target(name: "SpotMarket", path: "Shared/SpotMarket", swiftSettings: swiftSettings),
        .target(
            name: "SpotBus",
            dependencies: [
                "SpotModels", "CRabbitMQ", "CRabbitMQShims",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Shared/SpotBus", swiftSettings: swiftSettings),
        .target(
            name: "SpotStore",
            dependencies: [
                "CLibPQ", "SpotModels",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            path: "Shared/SpotStore",
            resources: [.copy("Migrations")],
            swiftSettings: swiftSettings),
        .target(
            name: "SpotRuntime",
            dependencies: [
                "SpotModels", "SpotBus", "SpotStore", "SpotCLI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ],
            path: "Shared/SpotRuntime", swiftSettings: swiftSettings),

        // The fleet's tables (clients and agents, instances, switches, commands, system events):
        // the one module that writes them, with each rule written once.
        .target(
            name: "SpotFleet",
            dependencies: [
                "SpotModels", "SpotBus", "SpotStore", "SpotRuntime",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ],
            path: "Shared/SpotFleet", swiftSettings: swiftSettings),

        // Services: a library with the logic (tested) and a thin executable.
        .target(
            name: "IngestApp",
            dependencies: [
                "SpotFleet", "SpotModels", "SpotBus", "SpotStore", "SpotRuntime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Services/Ingest/App", resources: [.copy("openapi.yaml")], swiftSettings: swiftSettings),
        .executableTarget(
            name: "Ingest",
            dependencies: [
                "IngestApp", "SpotFleet", "SpotRuntime", "SpotCLI", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ], path: "Services/Ingest/Main",
            swiftSettings: swiftSettings),
        .target(
            name: "SEFCore",
            dependencies: ["SpotModels", .product(name: "Crypto", package: "swift-crypto")],
            path: "Services/SEF/Core", swiftSettings: swiftSettings),
        .target(
            name: "SEFApp",
            dependencies: [
                "SpotFleet", "SEFCore", "SpotModels", "SpotBus", "SpotStore", "SpotRuntime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/SEF/App", swiftSettings: swiftSettings),
        .executableTarget(
            name: "SEF",
            dependencies: [
                "SEFApp", "SpotRuntime", "SpotCLI", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ], path: "Services/SEF/Main",
            swiftSettings: swiftSettings),
        .target(name: "ReplicaCore", dependencies: ["SpotModels"], path: "Services/ReplicaCoordinator/Core", swiftSettings: swiftSettings),
        .target(
            name: "ReplicaApp",
            dependencies: [
                "SpotFleet", "ReplicaCore", "SpotModels", "SpotBus", "SpotStore", "SpotRuntime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/ReplicaCoordinator/App", swiftSettings: swiftSettings),
        .executableTarget(
            name: "ReplicaCoordinator",
            dependencies: [
                "ReplicaApp", "SpotModels", "SpotRuntime", "SpotCLI", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ], path: "Services/ReplicaCoordinator/Main",
            swiftSettings: swiftSettings),
        .target(name: "DecisionCore", dependencies: ["SpotMarket"], path: "Services/DecisionEngine/Core", swiftSettings: swiftSettings),
        .target(
            name: "DecisionApp",
            dependencies: [
                "SpotFleet", "DecisionCore", "SpotMarket", "SpotModels", "SpotBus", "SpotStore", "SpotRuntime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/DecisionEngine/App", swiftSettings: swiftSettings),
        .executableTarget(
            name: "DecisionEngine",
            dependencies: [
                "DecisionApp", "DecisionCore", "SpotMarket", "SpotModels", "SpotRuntime", "SpotCLI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Logging", package: "swift-log"),
            ],
            path: "Services/DecisionEngine/Main", swiftSettings: swiftSettings),
        // What the tools and the tests share and the services do not: child processes.
        .target(name: "ToolSupport", path: "Tools/Support", swiftSettings: swiftSettings),
        .executableTarget(
            name: "Bench",
            dependencies: [
                "DecisionApp", "SpotFleet", "SpotMarket", "ToolSupport", "SEFApp", "SEFCore", "SpotModels", "SpotBus", "SpotStore", "SpotRuntime", "IMDSMock",
                "SpotCLI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"), .product(name: "Logging", package: "swift-log"),
            ], path: "Tools/Bench",
            swiftSettings: swiftSettings),

        // The EC2 and IMDS clients: Foundation (URLSession, XMLParser) and swift-crypto only, so
        // the agent that runs on customers' instances carries nothing more.
        .target(name: "SpotCloud", dependencies: [.product(name: "Crypto", package: "swift-crypto")], path: "Shared/SpotCloud", swiftSettings: swiftSettings),
        // The agent on customers' instances: SpotCloud, logging, lifecycle and the command line only.
        .target(
            name: "AgentApp",
            dependencies: ["SpotCloud", .product(name: "Logging", package: "swift-log")],
            path: "Services/Agent/App", swiftSettings: swiftSettings),
        .executableTarget(
            name: "Agent",
            dependencies: [
                "AgentApp", "SpotCloud", "SpotCLI", .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            path: "Services/Agent/Main", swiftSettings: swiftSettings),
        // The local cloud: market, faults and the EC2 wire format (pure), then the region with
        // its instances running real agents.
        .target(name: "SimulatorCore", dependencies: ["SpotMarket"], path: "Services/Simulator/Core", swiftSettings: swiftSettings),
        .target(
            name: "SimulatorApp",
            dependencies: [
                "SimulatorCore", "SpotMarket", "SpotCloud", "IMDSMock",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Services/Simulator/App", swiftSettings: swiftSettings),
        .executableTarget(
            name: "Simulator",
            dependencies: [
                "SimulatorApp", "SpotCLI", .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ], path: "Services/Simulator/Main",
            swiftSettings: swiftSettings),
        .target(
            name: "NotifierCore", dependencies: ["SpotModels", .product(name: "Crypto", package: "swift-crypto")],
            path: "Services/Notifier/Core", swiftSettings: swiftSettings),
        .target(
            name: "NotifierApp",
            dependencies: [
                "SpotFleet", "NotifierCore", "SpotModels", "SpotBus", "SpotStore", "SpotRuntime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                // webhooks to customers' URLs: TLS, one deadline, and the connection made to the address checked
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Services/Notifier/App", swiftSettings: swiftSettings),
        .executableTarget(
            name: "Notifier",
            dependencies: [
                "NotifierApp", "SpotRuntime", "SpotCLI", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ], path: "Services/Notifier/Main", swiftSettings: swiftSettings),
        .target(
            name: "ConsoleApp",
            dependencies: [
                "SpotFleet", "SpotModels", "SpotBus", "SpotStore", "SpotRuntime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Services/Console/App", resources: [.copy("Templates"), .copy("openapi.yaml")], swiftSettings: swiftSettings),
        .executableTarget(
            name: "Console",
            dependencies: [
                "ConsoleApp", "SpotRuntime", "SpotCLI", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ], path: "Services/Console/Main", swiftSettings: swiftSettings),
        // One instance's metadata service for the tests and the simulator.
        .target(
            name: "IMDSMock",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ], path: "Shared/IMDSMock",
            swiftSettings: swiftSettings),
        .testTarget(
            name: "SpotCloudTests",
            dependencies: ["SpotCloud", "IMDSMock"],
            swiftSettings: swiftSettings),
        .testTarget(name: "SpotModelsTests", dependencies: ["SpotModels"], swiftSettings: swiftSettings),
        .testTarget(name: "SEFCoreTests", dependencies: ["SEFCore", "SpotModels", "SpotMarket"], swiftSettings: swiftSettings),
        .testTarget(name: "NotifierCoreTests", dependencies: ["NotifierCore", "SpotModels"], swiftSettings: swiftSettings),
        .testTarget(name: "SimulatorCoreTests", dependencies: ["SimulatorCore", "SpotMarket"], swiftSettings: swiftSettings),
        .testTarget(name: "DecisionCoreTests", dependencies: ["DecisionCore", "SpotMarket"], swiftSettings: swiftSettings),
        .testTarget(name: "ReplicaCoreTests", dependencies: ["ReplicaCore", "SpotModels"], swiftSettings: swiftSettings),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "SpotModels", "SpotMarket", "SpotBus", "SpotStore", "SpotRuntime", "SpotFleet", "ToolSupport", "SEFApp", "SpotCloud", "IMDSMock", "AgentApp",
                "NotifierCore", "NotifierApp",
                "ReplicaApp",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings),
    ]
)
