import Foundation
import SpotMarket

/// What a back-test simulates: workloads of the file's instance types, each starting in a
/// random pool of its type, moved by a strategy hour by hour.
///
/// Every strategy lives by the same physics: a switch costs `costs.switchCost` (both instances
/// run meanwhile, the traffic moves); an interruption costs `costs.perInterruption` (a recovery
/// without a ready replica, a failover with one) and relaunches the workload. Interruptions
/// strike with common random numbers (every strategy faces the same draw per workload and
/// hour) at each pool's true rate: its Advisor band's, times a factor drawn per pool between
/// 1/`poolRateSpread` and `poolRateSpread` — pools of one type differ, and the fleet's own
/// record (the shared `InterruptionModel`) has something to learn.
public struct BacktestSetup: Sendable {
    public var history: PriceHistory
    public var onDemand: [String: Double]
    public var bands: [String: AdvisorBand]
    public var workloads: Int
    /// Share of workloads in manual mode: never switched, always with a replica in the
    /// cheapest other pool, failing over to it when interrupted.
    public var manualShare: Double
    public var seed: UInt64
    /// Hours of prices a recent mean spans.
    public var meanWindow = 6
    /// The first hour that counts: earlier hours only warm the strategies up (and train a
    /// learned engine, which must not be judged on the hours it learned from).
    public var evaluateFrom = 0
    public var risk = PoolRiskModel()
    public var costs = WorkloadCosts()
    public var poolRateSpread = 3.0

    public init(history: PriceHistory, onDemand: [String: Double], bands: [String: AdvisorBand], workloads: Int, manualShare: Double = 0, seed: UInt64) {
        self.history = history
        self.onDemand = onDemand
        self.bands = bands
        self.workloads = workloads
        self.manualShare = manualShare
        self.seed = seed
    }

    /// Each pool's true chance of an interruption per instance-hour.
    public func trueRates() -> [String: Double] {
        var out: [String: Double] = [:]
        for (pool, type) in history.types {
            let u = Backtest.draw(seed, Backtest.stableHash(pool), -3)
            out[pool] = risk.interruptions.priorHourly(bands[type]) * exp(log(max(1, poolRateSpread)) * (2 * u - 1))
        }
        return out
    }
}

public enum Strategy: Sendable {
    case alwaysOnDemand
    case stayInFirstPool
    case greedyCheapest
    case oracle
    case engine(any DecisionEngine)

    public var name: String {
        switch self {
        case .alwaysOnDemand: "always on-demand"
        case .stayInFirstPool: "stay in first spot pool"
        case .greedyCheapest: "greedy cheapest-now"
        case .oracle: "hindsight oracle"
        case .engine(let e): "engine: \(e.name)"
        }
    }
}

public struct BacktestResult: Sendable, Equatable {
    public var strategy: String
    public var cost: Double
    public var onDemandCost: Double
    public var switches: Int
    public var interruptionsWithReplica: Int
    public var interruptionsWithoutReplica: Int
    /// What the interruptions cost (recoveries and failovers), part of `cost`.
    public var interruptionCost: Double
    public var replicaHours: Double
    public var replicaCost: Double
    public var onDemandHours: Double
    public var workloadDays: Double
    /// Cost per hour of the run, for comparing windows (spikes).
    public var hourlyCost: [Double]
    /// Per Advisor band (index, -1 without one): spot hours, the interruptions the model
    /// predicted over them (sum of its hourly chances) and those that happened.
    public var calibration: [Int: Calibration]

    public struct Calibration: Sendable, Equatable {
        public var hours = 0.0
        public var predicted = 0.0
        public var observed = 0

        public init() {}
    }

    public var savingsShare: Double { onDemandCost > 0 ? 1 - cost / onDemandCost : 0 }
    public var switchesPerWorkloadDay: Double { workloadDays > 0 ? Double(switches) / workloadDays : 0 }
    public func share(of oracle: BacktestResult) -> Double {
        let best = oracle.onDemandCost - oracle.cost
        return best > 0 ? (onDemandCost - cost) / best : 0
    }
}

public enum Backtest {
    struct Workload {
        var type: String
        var manual: Bool
        var placement: Placement
        var lastSwitch = 0
        var qualifyingOnDemand = 0.0
        var replica: String?
    }

    /// Runs one strategy over the setup.
    public static func run(_ strategy: Strategy, _ s: BacktestSetup) -> BacktestResult {
        let h = s.history
        let types = h.instanceTypes.filter { s.onDemand[$0] != nil && !h.pools(of: $0).isEmpty }
        var result = BacktestResult(
            strategy: strategy.name, cost: 0, onDemandCost: 0, switches: 0, interruptionsWithReplica: 0, interruptionsWithoutReplica: 0,
            interruptionCost: 0, replicaHours: 0, replicaCost: 0, onDemandHours: 0, workloadDays: 0, hourlyCost: Array(repeating: 0, count: h.hours),
            calibration: [:])
        guard !types.isEmpty else { return result }
        let truth = s.trueRates()
        let model = s.risk.interruptions
        // the fleet's own decayed record, feeding the risk model as it would in production
        var evidence: [String: InterruptionModel.Evidence] = [:]
        var byHour: [String: [Int]] = [:]
        var workloads: [Workload] = (0..<s.workloads).map { w in
            let type = types[w % types.count]
            let pools = h.pools(of: type).filter { h.prices[$0]![0] != nil }
            let first = pools.isEmpty ? nil : pools[Int(draw(s.seed, w, -1) * Double(pools.count)) % pools.count]
            let manual = draw(s.seed, w, -2) < s.manualShare
            return Workload(type: type, manual: manual, placement: first.map(Placement.spot) ?? .onDemand)
        }
        let plans: [[Placement]]? = { if case .oracle = strategy { return oraclePlans(s, workloads: workloads, truth: truth) } else { return nil } }()
        let calendar = Calendar(identifier: .gregorian)
        let utc = TimeZone(identifier: "UTC")!

        for t in 0..<h.hours {
            let hourOfDay = calendar.dateComponents(in: utc, from: h.start.addingTimeInterval(Double(t) * 3600)).hour ?? 0
            let counted = t >= s.evaluateFrom
            // what an engine sees this hour, per instance type (the same for every workload)
            var states: [String: [PoolState]] = [:]
            if case .engine = strategy {
                for type in types {
                    states[type] = h.pools(of: type).filter { h.prices[$0]![t] != nil }.map { pool in
                        let window = h.prices[pool]![max(0, t - s.meanWindow + 1)...t].compactMap { $0 }
                        let day = h.prices[pool]![max(0, t - 23)...t].compactMap { $0 }
                        let score = s.risk.score(
                            .init(
                                band: s.bands[type], evidence: evidence[pool] ?? .init(), priceVolatility: PoolRiskModel.robustVolatility(day),
                                interruptionsByHour: byHour[pool] ?? [], hourOfDay: hourOfDay))
                        return PoolState(
                            pool: pool, price: h.prices[pool]![t]!, recentMean: window.reduce(0, +) / Double(window.count), risk: score.total,
                            interruptionRate: score.hourlyRate, hourly: day)
                    }
                }
            }
            var exposed: [String: Double] = [:]
            var struck: [String: Double] = [:]
            for w in workloads.indices {
                var wl = workloads[w]
                let od = s.onDemand[wl.type]!
                let pools = h.pools(of: wl.type).filter { h.prices[$0]![t] != nil }
                func price(_ p: Placement) -> Double { p.pool.flatMap { h.prices[$0]?[t] ?? nil } ?? od }
                func cheapest(excluding: String? = nil) -> String? {
                    pools.filter { $0 != excluding }.min { (h.prices[$0]![t]!, $0) < (h.prices[$1]![t]!, $1) }
                }
                func charge(_ c: Double) {
                    guard counted else { return }
                    result.cost += c
                    result.hourlyCost[t] += c
                }
                var next = wl.placement
                if wl.manual {
                    if wl.placement == .onDemand, let c = cheapest() { next = .spot(c) }
                } else {
                    switch strategy {
                    case .alwaysOnDemand: next = .onDemand
                    case .stayInFirstPool: break
                    case .greedyCheapest:
                        if let c = cheapest(), h.prices[c]![t]! < od { next = .spot(c) } else { next = .onDemand }
                    case .oracle: next = plans![w][t]
                    case .engine(let e):
                        let input = DecisionInput(
                            current: wl.placement, onDemandPrice: od, pools: states[wl.type] ?? [], hoursSinceSwitch: Double(t - wl.lastSwitch),
                            qualifyingHoursOnDemand: wl.qualifyingOnDemand, hourOfDay: hourOfDay, costs: s.costs)
                        next = e.decide(input).target
                        if wl.placement == .onDemand, next == .onDemand, let r = e as? RulesEngine {
                            let qualifies = input.pools.contains { r.qualifies($0, onDemand: od, margin: r.returnMargin) }
                            wl.qualifyingOnDemand = qualifies ? wl.qualifyingOnDemand + 1 : 0
                        }
                    }
                }
                if next != wl.placement {
                    if t > 0, counted {
                        result.switches += 1
                        charge(s.costs.switchCost(from: price(wl.placement)))
                    }
                    wl.placement = next
                    wl.lastSwitch = t
                    wl.qualifyingOnDemand = 0
                }
                if let pool = wl.placement.pool {
                    exposed[pool, default: 0] += 1
                    if counted {
                        let band = s.bands[wl.type]?.index ?? -1
                        result.calibration[band, default: .init()].hours += 1
                        result.calibration[band, default: .init()].predicted += model.hourly(band: s.bands[wl.type], evidence: evidence[pool] ?? .init())
                    }
                    if draw(s.seed, w, t) < truth[pool] ?? 0 {
                        struck[pool, default: 0] += 1
                        byHour[pool, default: Array(repeating: 0, count: 24)][hourOfDay] += 1
                        if counted { result.calibration[s.bands[wl.type]?.index ?? -1, default: .init()].observed += 1 }
                        if wl.manual, let replica = wl.replica {
                            if counted { result.interruptionsWithReplica += 1 }
                            result.interruptionCost += counted ? s.costs.disruption : 0
                            charge(s.costs.disruption)
                            wl.placement = .spot(replica)
                            wl.replica = nil
                        } else {
                            if counted { result.interruptionsWithoutReplica += 1 }
                            result.interruptionCost += counted ? s.costs.interruptionCost : 0
                            charge(s.costs.interruptionCost)
                            // relaunched: in the same pool where the strategy keeps its place, else the cheapest other
                            switch strategy {
                            case .stayInFirstPool, .oracle: break
                            default: wl.placement = cheapest(excluding: pool).map(Placement.spot) ?? .onDemand
                            }
                        }
                        wl.lastSwitch = t
                    }
                }
                if wl.manual, let primary = wl.placement.pool {
                    if wl.replica == nil || wl.replica == primary { wl.replica = cheapest(excluding: primary) }
                    if let replica = wl.replica {
                        exposed[replica, default: 0] += 1
                        if counted {
                            let c = h.prices[replica]![t]!
                            result.replicaHours += 1
                            result.replicaCost += c
                            charge(c)
                        }
                    }
                }
                charge(price(wl.placement))
                if counted {
                    result.onDemandCost += od
                    if wl.placement == .onDemand { result.onDemandHours += 1 }
                }
                workloads[w] = wl
            }
            // the hour's record joins the evidence, and all of it ages an hour
            for pool in Set(evidence.keys).union(exposed.keys) {
                var e = model.aged(evidence[pool] ?? .init())
                e.exposureHours += exposed[pool] ?? 0
                e.interruptions += struck[pool] ?? 0
                evidence[pool] = e
            }
        }
        result.workloadDays = Double(s.workloads) * Double(max(0, h.hours - s.evaluateFrom)) / 24
        return result
    }

    /// A uniform draw in [0, 1) for (seed, workload, hour): every strategy sees the same luck.
    static func draw(_ seed: UInt64, _ workload: Int, _ hour: Int) -> Double {
        var z = seed &+ UInt64(bitPattern: Int64(workload)) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(bitPattern: Int64(hour)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z = z ^ (z >> 31)
        return Double(z >> 11) / Double(1 << 53)
    }

    /// FNV-1a of a pool id: the same on every run (Swift's `hashValue` is seeded per process).
    static func stableHash(_ s: String) -> Int {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return Int(truncatingIfNeeded: h >> 1)
    }
}
