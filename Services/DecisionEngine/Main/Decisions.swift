import ArgumentParser
import DecisionApp
import DecisionCore
import Foundation
import Logging
import SpotCLI
import SpotMarket
import SpotRuntime
import SpotStore

/// `spotguard-decisions`: interruption risk, switch decisions and savings.
@main
struct Decisions: AsyncParsableCommand {
    static let configuration = CommandConfiguration.spotguard(
        "spotguard-decisions", abstract: "The decision engine: interruption risk per pool, switch decisions, savings.",
        subcommands: [Serve.self, Migrate.self, DeadLettersCommand<Queue>.self, Pass.self, Savings.self, Train.self, Backtest.self],
        defaultSubcommand: Serve.self)

    enum Queue: ConsumingService { static let queue = "spotguard.decisions" }

    /// The Advisor bands the configuration names, or none.
    static func advisorBands(_ configuration: DecisionConfiguration) throws -> [String: [String: AdvisorBand]] {
        guard let path = configuration.advisorFile else { return [:] }
        return try AdvisorBand.table(json: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// A price-history file, or one sentence saying what is wrong with it.
    static func priceHistory(_ path: String) throws -> PriceHistory {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        do {
            return try PriceHistory.parse(csv: text)
        } catch let error as PriceHistory.ParseError {
            throw UsageProblem("cannot read \(path) as a price history (\(error)); it needs a CSV header with timestamp, az, instance_type and spot_price")
        }
    }

    struct Serve: ServiceSubcommand {
        static let configuration = CommandConfiguration.serve
        func run(env: EnvironmentReader, logger: Logger) async throws {
            let configuration = try DecisionConfiguration(env: env)
            let amqp = try env.amqp()
            let bands = try advisorBands(configuration)
            try await ServiceCommand.serve(env: env, applicationName: "spotguard-decisions", poolSize: 3, logger: logger) { store in
                let service = DecisionService(configuration: configuration, store: store, amqp: amqp, bands: bands, logger: logger)
                return [service.application(configuration: configuration, store: store, logger: logger)]
            }
        }
    }

    struct Pass: ServiceSubcommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the decision pass now (risk per pool, a decision per auto-switch agent); commands go out when a service runs.")
        func run(env: EnvironmentReader, logger: Logger) async throws {
            let configuration = try DecisionConfiguration(env: env)
            let bands = try advisorBands(configuration)
            try await ServiceCommand.withStore(env: env, applicationName: "spotguard-decisions-pass", logger: logger) { store in
                try ServiceCommand.printJSON(try await DecisionPass(store: store, configuration: configuration, bands: bands).run(force: true))
            }
        }
    }

    struct Savings: ServiceSubcommand {
        static let configuration = CommandConfiguration(
            abstract: "Account replica costs and daily savings now.",
            discussion: "With --from, recompute every day since then (after a price correction, for example).")
        @Option(help: ArgumentHelp("Recompute from this day on.", valueName: "YYYY-MM-DD"))
        var from: String?

        var day: Date? { from.flatMap { try? Date($0, strategy: Date.ISO8601FormatStyle().year().month().day()) } }

        func validate() throws {
            if from != nil, day == nil { throw ValidationError("--from must be a date like 2026-01-31") }
        }

        func run(env: EnvironmentReader, logger: Logger) async throws {
            let configuration = try DecisionConfiguration(env: env)
            let day = self.day
            try await ServiceCommand.withStore(env: env, applicationName: "spotguard-decisions-savings", logger: logger) { store in
                let accounting = SavingsAccounting(store: store, interval: configuration.savingsInterval, workerName: configuration.workerName)
                try ServiceCommand.printJSON(try await accounting.run(force: true, from: day))
            }
        }
    }

    struct Train: ServiceSubcommand {
        static let configuration = CommandConfiguration(
            abstract: "Fit the learned engine and save it; the next pass uses it.",
            discussion: "On the last --days of pricing_snapshots_ml (default), or on a price-history file (--csv).")
        @Option(help: "Days of the ML dataset to fit on (2 to 365).")
        var days = 30
        @Option(help: ArgumentHelp("A price-history file to fit on instead.", valueName: "file"))
        var csv: String?
        @Option(name: .customLong("on-demand"), help: ArgumentHelp("On-demand prices for --csv.", valueName: "file"))
        var onDemand = "../shared/data/on_demand_prices.csv"

        func validate() throws {
            guard (2...365).contains(days) else { throw ValidationError("--days must be 2 to 365") }
        }

        func run(env: EnvironmentReader, logger: Logger) async throws {
            let history = try csv.map(Decisions.priceHistory)
            let onDemandPrices = try history.map { h -> [String: Double] in
                guard let region = h.region else { throw UsageProblem("\(csv ?? "") holds no price rows") }
                return try OnDemandPrices.read(onDemand, region: region)
            }
            let (window, file) = (days, csv)
            try await ServiceCommand.withStore(env: env, applicationName: "spotguard-decisions-train", logger: logger) { store in
                let trained: ModelStore.Trained
                if let history, let onDemandPrices, let file {
                    let source = "file \(URL(fileURLWithPath: file).lastPathComponent)"
                    trained = try await store.transaction { try ModelStore.train(history: history, onDemand: onDemandPrices, source: source, on: $0) }
                } else {
                    trained = try await store.transaction { try ModelStore.train(days: window, on: $0) }
                }
                try ServiceCommand.printJSON(trained)
            }
        }
    }

    struct Backtest: ServiceSubcommand {
        static let configuration = CommandConfiguration(
            abstract: "Replay price histories, region by region, under every strategy and print the comparison (no stack needed).")
        @Option(help: "Where the market files are.")
        var data = "../shared/data"
        @Option(
            help: ArgumentHelp(
                "A price history; repeat for several (default: every <data>/spot_price_*.csv). Files with several regions are split.",
                valueName: "file"))
        var csv: [String] = []
        @Option(name: .customLong("on-demand"), help: ArgumentHelp("On-demand prices (default: <data>/on_demand_prices.csv).", valueName: "file"))
        var onDemand: String?
        @Option(help: ArgumentHelp("Spot Advisor bands (default: <data>/spot-advisor-data_2025-06.json).", valueName: "file"))
        var advisor: String?
        @Option(help: "Simulated workloads per region.")
        var workloads = 200
        @Option(help: "Interruption seeds: each strategy runs once per seed, 1…N.")
        var seeds = 3
        @Option(name: .customLong("train-hours"), help: "Hours before the evaluation window (a warm-up; the learned engine's training with one region).")
        var trainHours = 240

        func validate() throws {
            guard workloads >= 1 else { throw ValidationError("--workloads must be at least 1") }
            guard (1...50).contains(seeds) else { throw ValidationError("--seeds must be 1 to 50") }
            guard trainHours >= 1 else { throw ValidationError("--train-hours must be at least 1") }
        }

        func run(env: EnvironmentReader, logger: Logger) async throws {
            var files = csv
            if files.isEmpty {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: data)) ?? []
                files = names.filter { $0.hasPrefix("spot_price_") && $0.hasSuffix(".csv") }.sorted().map { "\(data)/\($0)" }
                guard !files.isEmpty else { throw UsageProblem("no spot_price_*.csv in \(data); name a file with --csv") }
            }
            try BacktestCommand.run(
                .init(
                    files: files, onDemandFile: onDemand ?? "\(data)/on_demand_prices.csv", advisorFile: advisor ?? "\(data)/spot-advisor-data_2025-06.json",
                    workloads: workloads, seeds: (1...seeds).map(UInt64.init), trainHours: trainHours),
                histories: try files.map { ($0, try Decisions.priceHistory($0)) })
        }
    }
}
