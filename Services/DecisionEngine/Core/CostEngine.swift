import Foundation

/// What an interruption and a switch cost one workload (per-agent settings in production).
///
/// An interruption without a ready replica is a recovery: the instance is lost with two
/// minutes' notice and the workload is down for the minutes a new instance takes to boot and
/// restore — `interruptionCost` dollars (default 5 $: five minutes of a service whose downtime
/// is worth 60 $/h). With a ready replica it is a failover: seconds, not minutes, so
/// `failoverShare` of that (1/60: about 5 s against 5 min). A planned switch moves the traffic
/// the same way a failover does, and both instances run for `overlapHours` meanwhile.
public struct WorkloadCosts: Sendable, Equatable {
    public var interruptionCost = 5.0
    public var failoverShare = 1.0 / 60
    public var replicaReady = false
    /// $/h of a standing replica, paid while the primary is on spot (0 without one).
    public var replicaHourly = 0.0
    /// Hours both instances run during a switch: the new one boots and takes over while the old
    /// one still runs (5 minutes; an agent's terminate wait adds to it).
    public var overlapHours = 1.0 / 12

    public init(interruptionCost: Double = 5.0, replicaReady: Bool = false, replicaHourly: Double = 0) {
        self.interruptionCost = interruptionCost
        self.replicaReady = replicaReady
        self.replicaHourly = replicaHourly
    }

    /// What one interruption costs this workload as it runs now.
    public var perInterruption: Double { replicaReady ? interruptionCost * failoverShare : interruptionCost }
    /// The traffic move of a switch or failover.
    public var disruption: Double { interruptionCost * failoverShare }
    /// A switch away from an instance paying `price` $/h.
    public func switchCost(from price: Double) -> Double { overlapHours * price + disruption }
}

/// The default engine: per workload, the placement (a pool of its type or on-demand) with the
/// lowest expected cost per hour —
///
///     spot:      price + P(interruption per hour) × cost of an interruption + standing replica
///     on-demand: the on-demand price
///
/// — instead of bands that forbid risky pools. An interruption is priced, not fled: where the
/// Advisor's top band meets a 70 % discount the expected interruption cost is a fraction of a
/// cent per hour, and only a pool the fleet has seen interrupted over and over (the shared
/// `InterruptionModel`) or a price climbing to on-demand makes spot lose.
///
/// Hysteresis, so it does not churn: an escape (the current pool's expected cost reaches
/// on-demand's) happens at once; any other move must pay back `hysteresis` × its switch cost
/// within `holdingHours`. A pool-to-pool move is judged on both the prices now and the recent
/// means (a gain that only one tick shows is noise) and waits `minHoursBetweenSwitches` after
/// the last move; a return from on-demand is judged on the price now (a market that came down
/// from a spike is taken back at once, not after its recent mean forgot the spike) and waits
/// `returnDwellHours`, so a price see-sawing around on-demand costs at most a switch an hour.
public struct CostEngine: DecisionEngine {
    public var name: String { "cost" }
    /// How long a gain between pools is expected to last: spot prices move slowly since AWS
    /// smoothed them in 2017, and a gap between two pools of a market typically holds for days.
    public var holdingHours = 168.0
    public var hysteresis = 2.0
    public var minHoursBetweenSwitches = 6.0
    public var returnDwellHours = 1.0

    public init() {}

    /// Expected $/h of running in `pool` at `price`.
    public func hourlyCost(_ pool: PoolState, price: Double, _ costs: WorkloadCosts) -> Double {
        price + max(0, pool.interruptionRate) * costs.perInterruption + costs.replicaHourly
    }

    public func decide(_ input: DecisionInput) -> Decision {
        let od = input.onDemandPrice
        let costs = input.costs
        func now(_ p: PoolState) -> Double { hourlyCost(p, price: p.price, costs) }
        func recent(_ p: PoolState) -> Double { hourlyCost(p, price: p.recentMean, costs) }
        let best = input.pools.min { (now($0), $0.pool) < (now($1), $1.pool) }
        var scores: [String: Double] = ["on_demand_price": od, "interruption_cost": costs.perInterruption]
        if let best {
            scores["best_pool_price"] = best.price
            scores["best_pool_hourly_cost"] = now(best)
            scores["best_pool_interruption_rate"] = best.interruptionRate
        }
        func decision(_ action: DecisionAction, _ target: Placement, _ saving: Double, _ reason: String) -> Decision {
            Decision(action: action, target: target, expectedSavingsPerHour: (saving * 1_000_000).rounded() / 1_000_000, scores: scores, reason: reason)
        }
        func money(_ x: Double) -> String { String(format: "%.4f $/h", x) }
        func explain(_ p: PoolState) -> String {
            String(
                format: "%@ %@ (price %.4f + %.2f %% interruptions a month × %.2f $)", p.pool, money(now(p)), p.price, p.interruptionRate * 730 * 100,
                costs.perInterruption)
        }

        switch input.current {
        case .onDemand:
            guard let best, now(best) < od else {
                return decision(.stay, .onDemand, 0, "no spot pool is expected to cost less than on-demand (\(money(od)))")
            }
            let gain = od - now(best)
            let cost = costs.switchCost(from: od)
            guard gain * holdingHours > hysteresis * cost else {
                return decision(.stay, .onDemand, 0, "\(explain(best)) saves too little to pay for a switch (\(money(gain)))")
            }
            guard input.hoursSinceSwitch >= returnDwellHours else {
                return decision(.stay, .onDemand, 0, "\(explain(best)) is cheaper; waiting \(returnDwellHours) h after the last move")
            }
            return decision(.toSpot, .spot(best.pool), od - now(best), "back to spot: \(explain(best)) against on-demand \(money(od))")
        case .spot(let pool):
            guard let here = input.pools.first(where: { $0.pool == pool }) else {
                if let best, now(best) < od {
                    return decision(.switchPool, .spot(best.pool), 0, "no price for \(pool); \(explain(best))")
                }
                return decision(.toOnDemand, .onDemand, 0, "no price for \(pool)")
            }
            scores["current_price"] = here.price
            scores["current_hourly_cost"] = now(here)
            scores["current_interruption_rate"] = here.interruptionRate
            let target: Placement = best.map { now($0) < od ? .spot($0.pool) : .onDemand } ?? .onDemand
            let targetNow = target.pool == nil ? od : now(best!)
            if now(here) >= od {
                // an escape: staying costs at least on-demand
                guard target != .spot(pool) else {
                    return decision(.stay, .spot(pool), 0, "\(explain(here)) costs on-demand or more, and nothing costs less")
                }
                let action: DecisionAction = target == .onDemand ? .toOnDemand : .switchPool
                return decision(action, target, now(here) - targetNow, "\(explain(here)) costs at least on-demand (\(money(od))); to \(target)")
            }
            guard target != .spot(pool) else { return decision(.stay, .spot(pool), 0, "\(explain(here)) is the cheapest expected cost") }
            let targetRecent = target.pool == nil ? od : recent(best!)
            let gain = min(now(here) - targetNow, recent(here) - targetRecent)
            let cost = costs.switchCost(from: here.price)
            guard gain * holdingHours > hysteresis * cost else {
                return decision(
                    .stay, .spot(pool), 0, "\(target) would save \(money(max(0, gain))), not enough to pay for a switch (\(String(format: "%.4f $", cost)))")
            }
            guard input.hoursSinceSwitch >= minHoursBetweenSwitches else {
                return decision(.stay, .spot(pool), 0, "\(target) is cheaper; minimum time between switches not over")
            }
            let action: DecisionAction = target == .onDemand ? .toOnDemand : .switchPool
            return decision(action, target, gain, "\(target) is expected to cost \(money(gain)) less than \(explain(here))")
        }
    }
}
