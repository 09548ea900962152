import DecisionCore
import Foundation
import SpotMarket
import SpotRuntime

/// `spotguard-decisions backtest`: replays a price-history file for N workloads under every
/// strategy and prints the table docs/decisions.md shows.
public enum BacktestCommand {
    public static func run(history: PriceHistory, file: String, onDemandFile: String, advisorFile: String, workloads: Int, seed: UInt64, trainHours: Int) throws
    {
        guard let region = history.region else { throw ConfigurationError(variable: "--csv", problem: "names no price rows") }
        let onDemand = try OnDemandPrices.read(onDemandFile, region: region)
        let bands = try AdvisorBand.table(json: Data(contentsOf: URL(fileURLWithPath: advisorFile)))[region] ?? [:]
        let types = history.instanceTypes.filter { onDemand[$0] != nil }
        FileHandle.standardError.write(
            Data(
                "backtest: \(history.types.count) pools of \(types.joined(separator: ", ")) in \(region), \(history.hours) hours, \(workloads) workloads, seed \(seed)\n"
                    .utf8))
        var base = BacktestSetup(history: history, onDemand: onDemand, bands: bands, workloads: workloads, seed: seed)
        base.evaluateFrom = min(trainHours, history.hours / 2)
        // the learned engine is fitted on the hours before the evaluation window only
        let training = history.prices.mapValues { Array($0.prefix(base.evaluateFrom)) }
        let poolOnDemand = history.types.compactMapValues { onDemand[$0] }
        let model = RiseModel.fit(
            RiseModel.samples(
                prices: training, markets: types.map { history.pools(of: $0) }, onDemand: poolOnDemand, startHour: history.start))
        var strategies: [Strategy] = [.alwaysOnDemand, .stayInFirstPool, .greedyCheapest, .engine(RulesEngine())]
        if let model {
            strategies.append(.engine(LearnedEngine(model: model)))
            FileHandle.standardError.write(
                Data(
                    String(
                        format: "backtest: learned model fitted on hours 0-%d: %d samples, %d rises; hold-out AUC %.3f, log loss %.4f (base rate %.4f)\n",
                        base.evaluateFrom - 1, model.samples, model.positives, model.holdoutAuc, model.holdoutLogLoss, model.holdoutBaseLogLoss
                    ).utf8))
        }
        strategies.append(.oracle)

        func table(_ title: String, _ setup: BacktestSetup) -> [BacktestResult] {
            var results: [BacktestResult] = []
            for (i, s) in strategies.enumerated() {
                FileHandle.standardError.write(Data("  [\(i + 1)/\(strategies.count)] \(title): \(s.name)\n".utf8))
                results.append(Backtest.run(s, setup))
            }
            let oracle = results.last!
            print("\n\(title)\n")
            print(
                "| strategy | cost $ | savings vs on-demand | of oracle savings | switches / workload / day | interruptions (with / without ready replica) | replica hours | on-demand hours |"
            )
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            for r in results {
                print(
                    String(
                        format: "| %@ | %.2f | %.2f %% | %.1f %% | %.3f | %d / %d | %.0f | %.0f |", r.strategy, r.cost, r.savingsShare * 100,
                        r.share(of: oracle) * 100, r.switchesPerWorkloadDay, r.interruptionsWithReplica, r.interruptionsWithoutReplica,
                        r.replicaHours, r.onDemandHours))
            }
            return results
        }
        _ = table(
            "Real prices (\(URL(fileURLWithPath: file).lastPathComponent)), hours \(base.evaluateFrom)-\(history.hours - 1); the learned engine trained on the hours before",
            base)
        if let model {
            print(
                String(
                    format:
                        "\nLearned model (P of a ≥ %.1f %% rise within %d h): %d samples, %d rises; on the last fifth of its training hours AUC %.3f, log loss %.4f vs %.4f for the base rate",
                    model.riseThreshold * 100, model.horizonHours, model.samples, model.positives, model.holdoutAuc, model.holdoutLogLoss,
                    model.holdoutBaseLogLoss))
        }

        // spikes: every pool of every type at 1.5 × on-demand for 6 h (hour 300) and for 12 h
        // (hour 450), and the first pool of each type at 3 × for 12 h (hour 600)
        let spikeWindows = [(300, 6), (450, 12), (600, 12)]
        var spiked = history
        for type in types {
            let pools = history.pools(of: type)
            spiked = spiked.withSpike(pools: pools, from: 300, length: 6, price: 1.5 * onDemand[type]!)
            spiked = spiked.withSpike(pools: pools, from: 450, length: 12, price: 1.5 * onDemand[type]!)
            spiked = spiked.withSpike(pools: [pools[0]], from: 600, length: 12, price: 3 * onDemand[type]!)
        }
        var spikeSetup = base
        spikeSetup.history = spiked
        let spikes = table(
            "With price spikes (all pools of a type at 1.5 × on-demand for 6 h and for 12 h; one pool per type at 3 × for 12 h)", spikeSetup)
        let oracle = spikes.last!
        print("")
        for (start, length) in spikeWindows {
            func extra(_ r: BacktestResult, _ hours: Int) -> Double {
                let range = start..<min(spiked.hours, start + hours)
                return (range.map { r.hourlyCost[$0] }.reduce(0, +) / range.map { oracle.hourlyCost[$0] }.reduce(0, +) - 1) * 100
            }
            for r in spikes.dropLast() where r.strategy.hasPrefix("engine") || r.strategy.hasPrefix("greedy") {
                print(
                    String(
                        format: "- %d h spike from hour %d: %@ paid %.2f %% more than the oracle during the spike, %.2f %% including the 3 h after",
                        length, start, r.strategy, extra(r, length), extra(r, length + 3)))
            }
        }

        var manual = base
        manual.manualShare = 1
        let m = Backtest.run(.engine(RulesEngine()), manual)
        print(
            String(
                format:
                    "\nManual mode (every workload with a hot replica in the cheapest other pool): cost %.2f $ (replicas %.2f $, %.0f replica hours), savings vs on-demand %.2f %%, interruptions %d with a ready replica / %d without\n",
                m.cost, m.replicaCost, m.replicaHours, m.savingsShare * 100, m.interruptionsWithReplica, m.interruptionsWithoutReplica))
    }
}
