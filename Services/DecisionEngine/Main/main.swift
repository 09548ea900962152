import DecisionApp
import DecisionCore
import Foundation
import SpotMarket
import SpotModels
import SpotRuntime
import SpotStore

/// The Advisor bands the configuration names, or none.
func advisorBands(_ configuration: DecisionConfiguration) throws -> [String: [String: AdvisorBand]] {
    guard let path = configuration.advisorFile else { return [:] }
    return try AdvisorBand.table(json: Data(contentsOf: URL(fileURLWithPath: path)))
}

await ServiceCommand.main(
    executable: "spotguard-decisions", consumes: "spotguard.decisions",
    serve: { _, env, logger in
        let configuration = try DecisionConfiguration(env: env)
        let amqp = try env.amqp()
        let bands = try advisorBands(configuration)
        try await ServiceCommand.serve(env: env, applicationName: "spotguard-decisions", poolSize: 3, logger: logger) { store in
            let service = DecisionService(configuration: configuration, store: store, amqp: amqp, bands: bands, logger: logger)
            return [service.application(configuration: configuration, store: store, logger: logger)]
        }
    },
    extra: [
        "pass": (
            usage: "run the decision pass now (risk per pool, a decision per auto-switch agent); commands go out when a service runs",
            run: { _, env, logger in
                let configuration = try DecisionConfiguration(env: env)
                let bands = try advisorBands(configuration)
                try await ServiceCommand.withStore(env: env, applicationName: "spotguard-decisions-pass", logger: logger) { store in
                    let summary = try await DecisionPass(store: store, configuration: configuration, bands: bands).run(force: true)
                    print(String(decoding: try WireJSON.encoder().encode(summary), as: UTF8.self))
                }
            }
        ),
        "savings": (
            usage: "[--from YYYY-MM-DD]: account replica costs and daily savings now (from a day: recompute since then, e.g. after a price correction)",
            run: { args, env, logger in
                let configuration = try DecisionConfiguration(env: env)
                var from: Date?
                if let raw = ServiceCommand.option("--from", in: args) {
                    guard let day = try? Date(raw, strategy: Date.ISO8601FormatStyle().year().month().day()) else {
                        throw ConfigurationError(variable: "--from", problem: "must be a date like 2026-01-31")
                    }
                    from = day
                }
                try await ServiceCommand.withStore(env: env, applicationName: "spotguard-decisions-savings", logger: logger) { store in
                    let summary = try await SavingsAccounting(store: store, interval: configuration.savingsInterval, workerName: configuration.workerName)
                        .run(force: true, from: from)
                    print(String(decoding: try WireJSON.encoder().encode(summary), as: UTF8.self))
                }
            }
        ),
        "train": (
            usage: "[--days N] | --csv FILE [--on-demand FILE]: fit the learned engine on the last N days (default 30) of pricing_snapshots_ml, or on a price-history file, and save it; the next pass uses it",
            run: { args, env, logger in
                func option(_ name: String) -> String? { ServiceCommand.option(name, in: args) }
                var days = 30
                if let raw = option("--days") {
                    guard let n = Int(raw), (2...365).contains(n) else { throw ConfigurationError(variable: "--days", problem: "must be 2 to 365") }
                    days = n
                }
                try await ServiceCommand.withStore(env: env, applicationName: "spotguard-decisions-train", logger: logger) { store in
                    let trained: ModelStore.Trained
                    if let csv = option("--csv") {
                        let history = try PriceHistory.parse(csv: try String(contentsOfFile: csv, encoding: .utf8))
                        let region = String(history.types.keys.sorted().first!.split(separator: ".").last!.dropLast())
                        let onDemand = try OnDemandPrices.read(option("--on-demand") ?? "../shared/data/on_demand_prices.csv", region: region)
                        let source = "file \(URL(fileURLWithPath: csv).lastPathComponent)"
                        trained = try await store.transaction { try ModelStore.train(history: history, onDemand: onDemand, source: source, on: $0) }
                    } else {
                        let window = days
                        trained = try await store.transaction { try ModelStore.train(days: window, on: $0) }
                    }
                    print(String(decoding: try WireJSON.encoder().encode(trained), as: UTF8.self))
                }
            }
        ),
        "backtest": (
            usage: "[--csv FILE] [--workloads N] [--seed S] [--train-hours H] [--data DIR]: replay a price history under every strategy (default: ../shared/data)",
            run: { args, _, _ in
                func option(_ name: String) -> String? { ServiceCommand.option(name, in: args) }
                let data = option("--data") ?? "../shared/data"
                try BacktestCommand.run(
                    csv: option("--csv") ?? "\(data)/spot_price_history_us-east-1_2024-01_hourly.csv",
                    onDemandFile: option("--on-demand") ?? "\(data)/on_demand_prices.csv",
                    advisorFile: option("--advisor") ?? "\(data)/spot-advisor-data_2025-06.json",
                    workloads: option("--workloads").flatMap(Int.init) ?? 100, seed: option("--seed").flatMap(UInt64.init) ?? 1,
                    trainHours: option("--train-hours").flatMap(Int.init) ?? 240)
            }
        ),
    ])
