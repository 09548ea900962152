import ArgumentParser
import Logging
import SEFApp
import SpotCLI
import SpotRuntime

/// `spotguard-sef`: the spot-price engine (clean buckets, gaps, the ML dataset).
@main
struct SEF: AsyncParsableCommand {
    static let configuration = CommandConfiguration.spotguard(
        "spotguard-sef", abstract: "The spot-price engine: clean price buckets, gap filling, the ML dataset.",
        subcommands: [Serve.self, Migrate.self, DeadLettersCommand<Queue>.self, GapScan.self, RefreshML.self, CheckQuality.self, Review.self],
        defaultSubcommand: Serve.self)

    enum Queue: ConsumingService { static let queue = "spotguard.sef" }

    struct Serve: ServiceSubcommand {
        static let configuration = CommandConfiguration.serve
        func run(env: EnvironmentReader, logger: Logger) async throws {
            let configuration = try SEFConfiguration(env: env)
            let amqp = try env.amqp()
            try await ServiceCommand.serve(env: env, applicationName: "spotguard-sef", poolSize: configuration.concurrency + 2, logger: logger) { store in
                let sef = SEFService(configuration: configuration, store: store, amqp: amqp, logger: logger)
                return [sef.application(configuration: configuration, store: store, logger: logger)]
            }
        }
    }

    struct GapScan: ServiceSubcommand {
        static let configuration = CommandConfiguration(abstract: "Scan every pool for gaps now and fill them (claims pools like the service does).")
        func run(env: EnvironmentReader, logger: Logger) async throws {
            try await SEFCommand.run(env: env, logger: logger) { m in try ServiceCommand.printJSON(try await m.scanDuePools(force: true)) }
        }
    }

    struct RefreshML: ServiceSubcommand {
        static let configuration = CommandConfiguration(commandName: "refresh-ml", abstract: "Rebuild the ML dataset now.")
        func run(env: EnvironmentReader, logger: Logger) async throws {
            try await SEFCommand.run(env: env, logger: logger) { m in try ServiceCommand.printJSON(try await m.refreshMLDataset(force: true)) }
        }
    }

    struct CheckQuality: ServiceSubcommand {
        static let configuration = CommandConfiguration(abstract: "Run the data-quality check now (interpolated share per agent).")
        func run(env: EnvironmentReader, logger: Logger) async throws {
            try await SEFCommand.run(env: env, logger: logger) { m in try ServiceCommand.printJSON(try await m.checkQuality(force: true)) }
        }
    }

    struct Review: ServiceSubcommand {
        static let configuration = CommandConfiguration(
            abstract: "List what needs review, one JSON object per line: averaged dual-source prices, unfilled and open gaps.")
        func run(env: EnvironmentReader, logger: Logger) async throws {
            try await ServiceCommand.withStore(env: env, applicationName: "spotguard-sef-review", logger: logger) { store in
                for item in try await SEFCommand.review(store) { try ServiceCommand.printJSON(item) }
            }
        }
    }
}
