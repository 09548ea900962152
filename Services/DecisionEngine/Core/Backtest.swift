import Foundation
import SpotMarket

/// What a back-test simulates: workloads of the file's instance types, each starting in a
/// random pool of its type, moved by a strategy hour by hour, interrupted at the Advisor band's
/// rate (common random numbers: every strategy faces the same draws).
public struct BacktestSetup: Sendable {
    public var history: PriceHistory
    public var onDemand: [String: Double]
    public var bands: [String: AdvisorBand]
    public var workloads: Int
    /// Share of workloads in manual mode: never switched, always with a replica in the
    /// cheapest other pool, failing over to it when interrupted.
    public var manualShare: Double
    public var seed: UInt64
    /// Hours of prices a move is judged on.
    public var meanWindow = 6
    /// The first hour that counts: earlier hours only warm the strategies up (and train a
    /// learned engine, which must not be judged on the hours it learned from).
    public var evaluateFrom = 0
    public var risk = PoolRiskModel()

    public init(history: PriceHistory, onDemand: [String: Double], bands: [String: AdvisorBand], workloads: Int, manualShare: Double = 0, seed: UInt64) {
        self.history = history
        self.onDemand = onDemand
        self.bands = bands
        self.workloads = workloads
        self.manualShare = manualShare
        self.seed = seed
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
    public var replicaHours: Double
    public var replicaCost: Double
    public var onDemandHours: Double
    public var workloadDays: Double
    /// Cost per hour of the run, for comparing windows (spikes).
    public var hourlyCost: [Double]

    public var savingsShare: Double { onDemandCost > 0 ? 1 - cost / onDemandCost : 0 }
    public var switchesPerWorkloadDay: Double { workloadDays > 0 ? Double(switches) / workloadDays : 0 }
    public func share(of oracle: BacktestResult) -> Double {
        let best = oracle.onDemandCost - oracle.cost
        return best > 0 ? (onDemandCost - cost) / best : 0
    }
}

public enum Backtest {
    /// Runs one strategy over the setup.
    public static func run(_ strategy: Strategy, _ s: BacktestSetup) -> BacktestResult {
        let h = s.history
        let types = h.instanceTypes.filter { s.onDemand[$0] != nil && !h.pools(of: $0).isEmpty }
        var result = BacktestResult(
            strategy: strategy.name, cost: 0, onDemandCost: 0, switches: 0, interruptionsWithReplica: 0, interruptionsWithoutReplica: 0,
            replicaHours: 0, replicaCost: 0, onDemandHours: 0, workloadDays: 0, hourlyCost: Array(repeating: 0, count: h.hours))
        guard !types.isEmpty else { return result }

        struct Workload {
            var type: String
            var manual: Bool
            var placement: Placement
            var lastSwitch = 0
            var qualifyingOnDemand = 0.0
            var replica: String?
        }
        // the fleet's own interruption record, feeding the risk model as it would in production
        var interruptions: [String: Int] = [:]
        var exposure: [String: Double] = [:]
        var byHour: [String: [Int]] = [:]

        var workloads: [Workload] = (0..<s.workloads).map { w in
            let type = types[w % types.count]
            let pools = h.pools(of: type).filter { h.prices[$0]![0] != nil }
            let first = pools.isEmpty ? nil : pools[Int(draw(s.seed, w, -1) * Double(pools.count)) % pools.count]
            let manual = draw(s.seed, w, -2) < s.manualShare
            return Workload(type: type, manual: manual, placement: first.map(Placement.spot) ?? .onDemand)
        }
        let engine: (any DecisionEngine)? = { if case .engine(let e) = strategy { return e } else { return nil } }()
        let overlap = (engine as? RulesEngine ?? (engine as? LearnedEngine)?.rules)?.switchOverlapHours ?? RulesEngine().switchOverlapHours

        for t in 0..<h.hours {
            let hourOfDay =
                Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: h.start.addingTimeInterval(Double(t) * 3600)).hour ?? 0
            for w in workloads.indices {
                var wl = workloads[w]
                let od = s.onDemand[wl.type]!
                let pools = h.pools(of: wl.type).filter { h.prices[$0]![t] != nil }
                func price(_ p: Placement) -> Double { p.pool.flatMap { h.prices[$0]?[t] ?? nil } ?? od }
                func cheapest(excluding: String? = nil) -> String? {
                    pools.filter { $0 != excluding }.min { (h.prices[$0]![t]!, $0) < (h.prices[$1]![t]!, $1) }
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
                    case .oracle:
                        if let c = cheapest(), h.prices[c]![t]! < od { next = .spot(c) } else { next = .onDemand }
                    case .engine(let e):
                        let states = pools.map { pool -> PoolState in
                            let window = h.prices[pool]![max(0, t - s.meanWindow + 1)...t].compactMap { $0 }
                            let day = h.prices[pool]![max(0, t - 23)...t].compactMap { $0 }
                            let score = s.risk.score(
                                .init(
                                    band: s.bands[wl.type], interruptions: interruptions[pool, default: 0], instanceHours: exposure[pool, default: 0],
                                    priceVolatility: PoolRiskModel.robustVolatility(day), instanceAgeHours: 0,
                                    interruptionsByHour: byHour[pool] ?? [], hourOfDay: hourOfDay))
                            return PoolState(
                                pool: pool, price: h.prices[pool]![t]!, recentMean: window.reduce(0, +) / Double(window.count), risk: score.total,
                                hourly: day)
                        }
                        let input = DecisionInput(
                            current: wl.placement, onDemandPrice: od, pools: states, hoursSinceSwitch: Double(t - wl.lastSwitch),
                            qualifyingHoursOnDemand: wl.qualifyingOnDemand, hourOfDay: hourOfDay)
                        next = e.decide(input).target
                        if wl.placement == .onDemand, next == .onDemand {
                            let r = (e as? RulesEngine) ?? (e as? LearnedEngine)?.rules ?? RulesEngine()
                            let qualifies = states.contains { r.qualifies($0, onDemand: od, margin: r.returnMargin) }
                            wl.qualifyingOnDemand = qualifies ? wl.qualifyingOnDemand + 1 : 0
                        }
                    }
                }
                let counted = t >= s.evaluateFrom
                if next != wl.placement {
                    if t > 0, counted, !strategyIsFree(strategy) {
                        result.switches += 1
                        let c = overlap * price(wl.placement)
                        result.cost += c
                        result.hourlyCost[t] += c
                    }
                    wl.placement = next
                    wl.lastSwitch = t
                    wl.qualifyingOnDemand = 0
                }
                // interruption, at the Advisor band's monthly rate
                if let pool = wl.placement.pool, !strategyIsFree(strategy) {
                    exposure[pool, default: 0] += 1
                    let hazard = (s.bands[wl.type]?.monthlyRate ?? 0.125) / 730
                    if draw(s.seed, w, t) < hazard {
                        interruptions[pool, default: 0] += 1
                        byHour[pool, default: Array(repeating: 0, count: 24)][hourOfDay] += 1
                        if wl.manual, let replica = wl.replica {
                            if counted { result.interruptionsWithReplica += 1 }
                            wl.placement = .spot(replica)
                            wl.replica = nil
                        } else {
                            if counted { result.interruptionsWithoutReplica += 1 }
                            // relaunched: the same pool for the stay baseline, else the cheapest other
                            if case .stayInFirstPool = strategy {
                            } else {
                                wl.placement = cheapest(excluding: pool).map(Placement.spot) ?? .onDemand
                            }
                        }
                        wl.lastSwitch = t
                    }
                }
                if wl.manual, let primary = wl.placement.pool {
                    if wl.replica == nil || wl.replica == primary { wl.replica = cheapest(excluding: primary) }
                    if let replica = wl.replica, counted {
                        let c = h.prices[replica]![t]!
                        result.replicaHours += 1
                        result.replicaCost += c
                        result.cost += c
                        result.hourlyCost[t] += c
                    }
                }
                if counted {
                    let c = price(wl.placement)
                    result.cost += c
                    result.hourlyCost[t] += c
                    result.onDemandCost += od
                    if wl.placement == .onDemand { result.onDemandHours += 1 }
                }
                workloads[w] = wl
            }
        }
        result.workloadDays = Double(s.workloads) * Double(max(0, h.hours - s.evaluateFrom)) / 24
        return result
    }

    /// The oracle pays no switch cost and suffers no interruption: it is a bound, not a player.
    static func strategyIsFree(_ s: Strategy) -> Bool {
        if case .oracle = s { return true }
        return false
    }

    /// A uniform draw in [0, 1) for (seed, workload, hour): every strategy sees the same luck.
    static func draw(_ seed: UInt64, _ workload: Int, _ hour: Int) -> Double {
        var z = seed &+ UInt64(bitPattern: Int64(workload)) &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(bitPattern: Int64(hour)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z = z ^ (z >> 31)
        return Double(z >> 11) / Double(1 << 53)
    }
}
