import DecisionApp
import DecisionCore
import Foundation
import SpotModels
import SpotRuntime

/// The Advisor bands the configuration names, or none.
func advisorBands(_ configuration: DecisionConfiguration) throws -> [String: [String: AdvisorBand]] {
    guard let path = configuration.advisorFile else { return [:] }
    return try AdvisorBand.table(json: Data(contentsOf: URL(fileURLWithPath: path)))
}

await ServiceCommand.main(
    executable: "spotguard-decisions",
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
        "backtest": (
            usage: "[--csv FILE] [--workloads N] [--seed S] [--data DIR]: replay a price history under every strategy (default: ../shared/data)",
            run: { args, _, _ in
                func option(_ name: String) -> String? { ServiceCommand.option(name, in: args) }
                let data = option("--data") ?? "../shared/data"
                try BacktestCommand.run(
                    csv: option("--csv") ?? "\(data)/spot_price_history_us-east-1_2024-01_hourly.csv",
                    onDemandFile: option("--on-demand") ?? "\(data)/on_demand_prices.csv",
                    advisorFile: option("--advisor") ?? "\(data)/spot-advisor-data_2025-06.json",
                    workloads: option("--workloads").flatMap(Int.init) ?? 100, seed: option("--seed").flatMap(UInt64.init) ?? 1)
            }
        ),
    ])
