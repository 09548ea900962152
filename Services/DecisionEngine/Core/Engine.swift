import Foundation

/// Where a workload runs.
public enum Placement: Hashable, Sendable, CustomStringConvertible {
    case spot(String)
    case onDemand

    public var pool: String? {
        if case .spot(let p) = self { return p }
        return nil
    }

    public var description: String { pool ?? "on-demand" }
}

/// One spot pool as a decision sees it.
public struct PoolState: Sendable, Equatable {
    public var pool: String
    /// The price now ($/h).
    public var price: Double
    /// Mean of the last hours' prices: what a move is judged on, so noise does not move anyone.
    public var recentMean: Double
    /// Interruption risk 0…1 (`PoolRiskModel`): what the conservative profile's bands judge.
    public var risk: Double
    /// The chance per instance-hour of an interruption (`InterruptionModel`): what the cost engine prices.
    public var interruptionRate: Double
    /// The last day's hourly prices, oldest first, the current hour last (the learned engine's input).
    public var hourly: [Double]

    public init(pool: String, price: Double, recentMean: Double, risk: Double, interruptionRate: Double = 0, hourly: [Double] = []) {
        self.pool = pool
        self.price = price
        self.recentMean = recentMean
        self.risk = risk
        self.interruptionRate = interruptionRate
        self.hourly = hourly
    }
}

/// Everything an engine may look at; engines are pure functions of it.
public struct DecisionInput: Sendable, Equatable {
    public var current: Placement
    public var onDemandPrice: Double
    /// The spot pools of the workload's instance type (the current one included).
    public var pools: [PoolState]
    public var hoursSinceSwitch: Double
    /// Hours the workload has been on on-demand while a spot pool qualified (recovery hysteresis).
    public var qualifyingHoursOnDemand: Double
    /// UTC hour of the decision.
    public var hourOfDay: Int
    /// What an interruption and a switch cost this workload.
    public var costs: WorkloadCosts

    public init(
        current: Placement, onDemandPrice: Double, pools: [PoolState], hoursSinceSwitch: Double, qualifyingHoursOnDemand: Double = 0,
        hourOfDay: Int = 0, costs: WorkloadCosts = WorkloadCosts()
    ) {
        self.current = current
        self.onDemandPrice = onDemandPrice
        self.pools = pools
        self.hoursSinceSwitch = hoursSinceSwitch
        self.qualifyingHoursOnDemand = qualifyingHoursOnDemand
        self.hourOfDay = hourOfDay
        self.costs = costs
    }
}

public enum DecisionAction: String, Sendable, Codable {
    case stay
    case switchPool = "switch_pool"
    case toSpot = "to_spot"
    case toOnDemand = "to_on_demand"
}

/// An explained decision (agent_decision_history's shape).
public struct Decision: Sendable, Equatable {
    public var action: DecisionAction
    public var target: Placement
    /// $/h the move is expected to save (negative: it costs, e.g. leaving a risky pool).
    public var expectedSavingsPerHour: Double
    public var scores: [String: Double]
    public var reason: String
}

public protocol DecisionEngine: Sendable {
    var name: String { get }
    func decide(_ input: DecisionInput) -> Decision
}

/// The seeds' band rules — the `conservative` profile — with the hysteresis the seeds lack:
///
/// - a spot pool qualifies when savings ≥ 30 % at risk < 0.2, or savings > 50 % at risk 0.2–0.5;
///   above 0.5 never;
/// - spot costing at least on-demand is left at once (no waiting); a pool that merely stopped
///   qualifying is left after the minimum time between switches;
/// - from on-demand back to spot once a pool qualifies with a margin (5 points above the band;
///   optionally for `recoveryHours` more) — the margin keeps a market at the edge from
///   flapping, and a recovered market is never ignored;
/// - pool to pool when the expected gain over `holdingHours` (recent means, not the current
///   tick) beats twice the switch cost, and not sooner than `minHoursBetweenSwitches`.
public struct RulesEngine: DecisionEngine {
    public var name: String { "conservative" }
    public var safeRisk = 0.2
    public var maxRisk = 0.5
    public var safeSavings = 0.30
    public var riskySavings = 0.50
    public var returnMargin = 0.05
    public var recoveryHours = 0.0
    public var minHoursBetweenSwitches = 6.0
    public var holdingHours = 24.0
    /// Hours both instances run during a switch (`WorkloadCosts.overlapHours`).
    public var switchOverlapHours = WorkloadCosts().overlapHours

    public init() {}

    public func qualifies(_ p: PoolState, onDemand: Double, margin: Double = 0) -> Bool {
        // bounds hold exactly, whatever the rounding of the division (1e-12)
        let savings = 1 - p.price / onDemand
        if p.risk < safeRisk { return savings >= safeSavings + margin - 1e-12 }
        if p.risk <= maxRisk { return savings > riskySavings + margin + 1e-12 }
        return false
    }

    /// The cost of moving a workload now paying `price` $/h.
    public func switchCost(from price: Double) -> Double { switchOverlapHours * price }

    public func decide(_ input: DecisionInput) -> Decision {
        let od = input.onDemandPrice
        let qualifying = input.pools.filter { qualifies($0, onDemand: od) }
        let best = qualifying.min { ($0.recentMean, $0.price, $0.pool) < ($1.recentMean, $1.price, $1.pool) }
        var scores: [String: Double] = ["on_demand_price": od]
        if let best {
            scores["best_pool_price"] = best.price
            scores["best_pool_risk"] = best.risk
        }
        func decision(_ action: DecisionAction, _ target: Placement, _ saving: Double, _ reason: String) -> Decision {
            Decision(action: action, target: target, expectedSavingsPerHour: (saving * 1_000_000).rounded() / 1_000_000, scores: scores, reason: reason)
        }
        func percent(_ x: Double) -> String { String(format: "%.1f %%", x * 100) }

        switch input.current {
        case .onDemand:
            let ready = qualifying.filter { qualifies($0, onDemand: od, margin: returnMargin) }
                .min { ($0.price, $0.pool) < ($1.price, $1.pool) }
            guard let ready else {
                return decision(.stay, .onDemand, 0, "no spot pool qualifies (savings ≥ 30 % at risk < 0.2, > 50 % at risk ≤ 0.5)")
            }
            guard input.qualifyingHoursOnDemand >= recoveryHours else {
                return decision(.stay, .onDemand, 0, "\(ready.pool) qualifies; waiting \(recoveryHours) h to see it hold")
            }
            return decision(
                .toSpot, .spot(ready.pool), od - ready.price,
                "back to spot: \(ready.pool) saves \(percent(1 - ready.price / od)) at risk \(ready.risk)")
        case .spot(let pool):
            guard let here = input.pools.first(where: { $0.pool == pool }) else {
                return decision(.toOnDemand, .onDemand, 0, "no price for \(pool)")
            }
            scores["current_price"] = here.price
            scores["current_risk"] = here.risk
            if here.price >= od {
                if let best, best.pool != pool {
                    return decision(.switchPool, .spot(best.pool), here.price - best.price, "\(pool) costs more than on-demand; \(best.pool) qualifies")
                }
                return decision(.toOnDemand, .onDemand, here.price - od, "\(pool) costs more than on-demand and no spot pool qualifies")
            }
            let mayMove = input.hoursSinceSwitch >= minHoursBetweenSwitches
            if !qualifies(here, onDemand: od) {
                guard mayMove else { return decision(.stay, .spot(pool), 0, "\(pool) no longer qualifies; minimum time between switches not over") }
                if let best {
                    return decision(
                        .switchPool, .spot(best.pool), here.price - best.price, "\(pool) no longer qualifies (risk \(here.risk)); \(best.pool) does")
                }
                return decision(.toOnDemand, .onDemand, here.price - od, "\(pool) no longer qualifies (risk \(here.risk)) and no other pool does")
            }
            guard let best, best.pool != pool, mayMove else {
                return decision(.stay, .spot(pool), 0, "\(pool) qualifies and is the best choice for now")
            }
            let gain = here.recentMean - best.recentMean
            guard gain * holdingHours > 2 * switchCost(from: here.price), best.price < here.price else {
                return decision(.stay, .spot(pool), 0, "\(best.pool) is cheaper by \(String(format: "%.5f", gain)) $/h, not enough to pay for a switch")
            }
            return decision(.switchPool, .spot(best.pool), gain, "\(best.pool) is cheaper by \(String(format: "%.5f", gain)) $/h over recent hours")
        }
    }
}
