import DecisionCore
import Foundation
import SpotMarket
import SpotRuntime

/// `spotguard-decisions backtest`: replays price-history files, region by region, for N
/// workloads under every strategy and several interruption seeds, and prints the tables
/// docs/decisions.md shows: per region, the spikes, calibration, the learned model judged on
/// regions it never saw, and the spread across regions.
public enum BacktestCommand {
    public struct Options: Sendable {
        public var files: [String]
        public var onDemandFile: String
        public var advisorFile: String
        public var workloads: Int
        public var seeds: [UInt64]
        public var trainHours: Int

        public init(files: [String], onDemandFile: String, advisorFile: String, workloads: Int, seeds: [UInt64], trainHours: Int) {
            self.files = files
            self.onDemandFile = onDemandFile
            self.advisorFile = advisorFile
            self.workloads = workloads
            self.seeds = seeds
            self.trainHours = trainHours
        }
    }

    struct Region {
        var name: String
        var file: String
        var history: PriceHistory
        var onDemand: [String: Double]
        var bands: [String: AdvisorBand]
        var types: [String]
    }

    /// One region's figures for the summary.
    struct Figures {
        var region: String
        var shares: [String: Double]
        var switchesPerDay: [String: Double]
        var spikeExtra: [String: Double]
        var spikeExtraAfter: [String: Double]
    }

    static let defaultEngine = "engine: cost"

    public static func run(_ o: Options, histories: [(file: String, history: PriceHistory)]) throws {
        let onDemandCSV = try String(contentsOfFile: o.onDemandFile, encoding: .utf8)
        let bandTable = try AdvisorBand.table(json: Data(contentsOf: URL(fileURLWithPath: o.advisorFile)))
        var regions: [Region] = []
        for (file, history) in histories {
            for (name, h) in history.byRegion.sorted(by: { $0.key < $1.key }) where !regions.contains(where: { $0.name == name }) {
                let onDemand = OnDemandPrices.parse(csv: onDemandCSV, region: name)
                let types = h.instanceTypes.filter { onDemand[$0] != nil }
                guard !types.isEmpty else {
                    note("backtest: \(name) in \(file) skipped: no on-demand prices for its types")
                    continue
                }
                regions.append(Region(name: name, file: file, history: h, onDemand: onDemand, bands: bandTable[name] ?? [:], types: types))
            }
        }
        guard !regions.isEmpty else { throw ConfigurationError(variable: "--csv", problem: "names no price rows with on-demand prices") }
        let samples = Dictionary(uniqueKeysWithValues: regions.map { r in (r.name, riseSamples(r, hours: r.history.hours)) })
        print(
            "Back-test: \(o.workloads) workloads per region, interruption seeds \(o.seeds.map(String.init).joined(separator: ", ")); every strategy pays the same switch and interruption costs (defaults of `WorkloadCosts`: \(String(format: "%.2f", WorkloadCosts().interruptionCost)) $ per interruption without a ready replica, 1/60 of it with one or per switch, 5 minutes of overlap)."
        )
        var figures: [Figures] = []
        var learnedRows: [String] = []
        for (k, region) in regions.enumerated() {
            note(
                "backtest: [\(k + 1)/\(regions.count)] \(region.name): \(region.history.types.count) pools of \(region.types.joined(separator: ", ")), \(region.history.hours) hours"
            )
            // the learned engine never sees the region it is judged on (with one region: the hours before the window)
            let others = regions.filter { $0.name != region.name }.flatMap { samples[$0.name] ?? [] }
            let from = min(o.trainHours, region.history.hours / 2)
            let model =
                others.isEmpty
                ? RiseModel.fit(riseSamples(region, hours: from)) : RiseModel.fit(others)
            if let model {
                let judged = model.evaluate(samples[region.name] ?? [])
                learnedRows.append(
                    String(
                        format: "| %@ | %d | %d | %.3f | %.4f | %.4f |", region.name, judged.samples, judged.positives, judged.auc, judged.logLoss,
                        judged.baseLogLoss))
            }
            var strategies: [Strategy] = [.alwaysOnDemand, .stayInFirstPool, .greedyCheapest, .engine(CostEngine()), .engine(RulesEngine())]
            if let model { strategies.append(.engine(LearnedEngine(model: model))) }
            strategies.append(.oracle)
            let setups = o.seeds.map { seed -> BacktestSetup in
                var s = BacktestSetup(history: region.history, onDemand: region.onDemand, bands: region.bands, workloads: o.workloads, seed: seed)
                s.evaluateFrom = from
                return s
            }
            let bands = region.types.map { "\($0) \(region.bands[$0].map { ["< 5", "5–10", "10–15", "15–20", "> 20"][$0.index] } ?? "no band") %" }
            print("\n### \(region.name)\n")
            print(
                "\(URL(fileURLWithPath: region.file).lastPathComponent), hours \(from)–\(region.history.hours - 1) judged; Advisor bands: \(bands.joined(separator: ", "))\n"
            )
            let real = table(strategies, setups, title: "real prices")
            let spiked = setups.map { s -> BacktestSetup in
                var copy = s
                copy.history = spikes(region)
                return copy
            }
            let plan = spikePlan(hours: region.history.hours)
            print(
                "\nWith price spikes (all pools of a type at 1.5 × on-demand for 6 h from hour \(plan[0].start) and for 12 h from hour \(plan[1].start); "
                    + "one pool per type at 3 × for 12 h from hour \(plan[2].start)):\n")
            let spikedResults = table(strategies, spiked, title: "spikes")
            var extra: [String: Double] = [:]
            var after: [String: Double] = [:]
            var perSpike: [String] = []
            for (name, runs) in spikedResults where name != "hindsight oracle" {
                let oracle = spikedResults["hindsight oracle"]!
                for (start, length, _, _) in plan where start + length <= region.history.hours {
                    func over(_ range: Range<Int>) -> Double {
                        let range = max(0, range.lowerBound)..<min(region.history.hours, range.upperBound)
                        let paid = runs.map { r in range.map { r.hourlyCost[$0] }.reduce(0, +) }.reduce(0, +)
                        let bound = oracle.map { r in range.map { r.hourlyCost[$0] }.reduce(0, +) }.reduce(0, +)
                        return bound > 0 ? (paid / bound - 1) * 100 : 0
                    }
                    // during: the spike's hours; the episode: from the hour before it (where foresight
                    // leaves) to 3 h after it (where the return is paid)
                    let (during, episode) = (over(start..<(start + length)), over((start - 1)..<(start + length + 3)))
                    extra[name] = max(extra[name] ?? -.infinity, during)
                    after[name] = max(after[name] ?? -.infinity, episode)
                    if name == defaultEngine {
                        perSpike.append(String(format: "%d h from hour %d: %.2f %% (%.2f %%)", length, start, during, episode))
                    }
                }
            }
            print("")
            for name in strategies.map(\.name) where extra[name] != nil && (name.hasPrefix("engine") || name.hasPrefix("greedy")) {
                print(
                    String(
                        format: "- %@: at most %.2f %% above the oracle during a spike, %.2f %% over its episode (the hour before to 3 h after)", name,
                        extra[name]!, after[name]!))
            }
            print("- \(defaultEngine) per spike, above the oracle during it (over its episode): \(perSpike.joined(separator: "; "))")
            calibration(real[defaultEngine] ?? [])
            var manual = setups[0]
            manual.manualShare = 1
            let m = DecisionCore.Backtest.run(.engine(CostEngine()), manual)
            print(
                String(
                    format:
                        "\nManual mode (every workload with a hot replica in the cheapest other pool, seed %d): savings vs on-demand %.2f %% (replicas %.2f $ of %.2f $), interruptions %d with a ready replica / %d without",
                    setups[0].seed, m.savingsShare * 100, m.replicaCost, m.cost, m.interruptionsWithReplica, m.interruptionsWithoutReplica))
            let oracle = real["hindsight oracle"]!
            figures.append(
                Figures(
                    region: region.name,
                    shares: real.mapValues { runs in zip(runs, oracle).map { $0.share(of: $1) }.reduce(0, +) / Double(runs.count) },
                    switchesPerDay: real.mapValues { $0.map(\.switchesPerWorkloadDay).reduce(0, +) / Double($0.count) }, spikeExtra: extra,
                    spikeExtraAfter: after))
        }
        summary(figures, names: [Strategy.stayInFirstPool.name, Strategy.greedyCheapest.name, defaultEngine, "engine: conservative", "engine: learned"])
        if !learnedRows.isEmpty {
            print("\nThe learned model judged on a region it was not fitted on (fitted on the others; with one region, on the hours before the window):\n")
            print("| region | samples | rises | AUC | log loss | base-rate log loss |")
            print("| --- | ---: | ---: | ---: | ---: | ---: |")
            learnedRows.forEach { print($0) }
        }
    }

    static func note(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }

    static func riseSamples(_ r: Region, hours: Int) -> [RiseModel.Sample] {
        RiseModel.samples(
            prices: r.history.prices.mapValues { Array($0.prefix(hours)) }, markets: r.types.map { r.history.pools(of: $0) },
            onDemand: r.history.types.compactMapValues { r.onDemand[$0] }, startHour: r.history.start)
    }

    /// The spikes the backtest adds: at hours 300, 450 and 600 of a month (744 hours), and at
    /// the same fractions of a shorter or longer history (fixed hours crashed a two-week one).
    static func spikePlan(hours: Int) -> [(start: Int, length: Int, factor: Double, onePool: Bool)] {
        [(300, 6, 1.5, false), (450, 12, 1.5, false), (600, 12, 3, true)].map { ($0.0 * hours / 744, $0.1, $0.2, $0.3) }
    }

    static func spikes(_ r: Region) -> PriceHistory {
        var spiked = r.history
        for type in r.types {
            let pools = r.history.pools(of: type)
            for spike in spikePlan(hours: r.history.hours) {
                spiked = spiked.withSpike(
                    pools: spike.onePool ? [pools[0]] : pools, from: spike.start, length: spike.length, price: spike.factor * r.onDemand[type]!)
            }
        }
        return spiked
    }

    /// Runs every strategy on every seed's setup and prints one row per strategy (means over
    /// the seeds; the share of the oracle's savings with its lowest and highest seed).
    static func table(_ strategies: [Strategy], _ setups: [BacktestSetup], title: String) -> [String: [BacktestResult]] {
        var results: [String: [BacktestResult]] = [:]
        for (i, s) in strategies.enumerated() {
            note("  [\(i + 1)/\(strategies.count)] \(title): \(s.name)")
            results[s.name] = setups.map { DecisionCore.Backtest.run(s, $0) }
        }
        let oracle = results["hindsight oracle"]!
        print(
            "| strategy | savings vs on-demand | of oracle savings (seeds: lowest–highest) | switches / workload / day | interruptions with / without ready replica | interruption cost $ | on-demand hours |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for s in strategies {
            let runs = results[s.name]!
            func mean(_ f: (BacktestResult) -> Double) -> Double { runs.map(f).reduce(0, +) / Double(runs.count) }
            let shares = zip(runs, oracle).map { $0.share(of: $1) * 100 }
            print(
                String(
                    format: "| %@ | %.2f %% | %.1f %% (%.1f–%.1f) | %.3f | %.1f / %.1f | %.2f | %.0f |", s.name, mean(\.savingsShare) * 100,
                    shares.reduce(0, +) / Double(shares.count), shares.min()!, shares.max()!, mean(\.switchesPerWorkloadDay),
                    mean { Double($0.interruptionsWithReplica) }, mean { Double($0.interruptionsWithoutReplica) }, mean(\.interruptionCost),
                    mean(\.onDemandHours)))
        }
        return results
    }

    /// Predicted against observed interruptions per Advisor band, over the default engine's spot hours.
    static func calibration(_ runs: [BacktestResult]) {
        var sum: [Int: BacktestResult.Calibration] = [:]
        for r in runs {
            for (band, c) in r.calibration {
                sum[band, default: .init()].hours += c.hours
                sum[band, default: .init()].predicted += c.predicted
                sum[band, default: .init()].observed += c.observed
            }
        }
        guard !sum.isEmpty else { return }
        let rows = sum.keys.sorted().map { band -> String in
            let c = sum[band]!
            let label = band < 0 ? "no band" : ["< 5 %", "5–10 %", "10–15 %", "15–20 %", "> 20 %"][band]
            return String(
                format: "%@: %.0f spot hours, predicted %.1f, observed %d (%.1f %% vs %.1f %% a month)", label, c.hours, c.predicted, c.observed,
                c.predicted / max(1, c.hours) * 730 * 100, Double(c.observed) / max(1, c.hours) * 730 * 100)
        }
        print("\nCalibration of the interruption model (\(defaultEngine), all seeds): " + rows.joined(separator: "; "))
    }

    static func summary(_ figures: [Figures], names: [String]) {
        guard figures.count > 1 else { return }
        print("\n### Across \(figures.count) regions\n")
        print("| strategy | median of oracle savings | lowest (region) | switches / workload / day (highest) | worst spike: during (episode) |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name in names {
            let shares = figures.compactMap { f in f.shares[name].map { (f.region, $0 * 100) } }.sorted { $0.1 < $1.1 }
            guard !shares.isEmpty else { continue }
            let median =
                shares.count % 2 == 1 ? shares[shares.count / 2].1 : (shares[shares.count / 2 - 1].1 + shares[shares.count / 2].1) / 2
            let switches = figures.compactMap { $0.switchesPerDay[name] }.max() ?? 0
            let spike = figures.compactMap { $0.spikeExtra[name] }.max()
            let spikeAfter = figures.compactMap { $0.spikeExtraAfter[name] }.max()
            print(
                String(
                    format: "| %@ | %.1f %% | %.1f %% (%@) | %.3f | %@ |", name, median, shares[0].1, shares[0].0, switches,
                    spike.map { String(format: "%.2f %% (%.2f %%)", $0, spikeAfter ?? 0) } ?? "–"))
        }
    }
}
