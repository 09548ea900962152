import Foundation
import SpotMarket

extension Backtest {
    /// The hindsight oracle's placement per workload and hour: the cheapest path through the
    /// evaluation hours knowing every future price and each pool's true interruption rate, under
    /// the same physics as the strategies (a switch costs `switchCost`, an interruption
    /// `interruptionCost`). It plans on the expected interruption cost, not on the draws: it
    /// knows the market, not the luck — it then meets the same interruptions as every strategy
    /// and pays for them (relaunched where it was). Dynamic programming over the placements
    /// (on-demand and the pools of the workload's type); it may start anywhere. Before the
    /// evaluation window it sits where the window begins.
    static func oraclePlans(_ s: BacktestSetup, workloads: [Workload], truth: [String: Double]) -> [[Placement]] {
        let h = s.history
        let from = min(max(0, s.evaluateFrom), max(0, h.hours - 1))
        return workloads.indices.map { w -> [Placement] in
            let type = workloads[w].type
            guard let od = s.onDemand[type], h.hours > 0 else { return Array(repeating: workloads[w].placement, count: h.hours) }
            let pools = h.pools(of: type)
            let options: [Placement] = [.onDemand] + pools.map(Placement.spot)
            func price(_ i: Int, _ t: Int) -> Double? { i == 0 ? od : h.prices[pools[i - 1]]![t] }
            func step(_ i: Int, _ t: Int) -> Double {
                guard let p = price(i, t) else { return .infinity }
                return i > 0 ? p + (truth[pools[i - 1]] ?? 0) * s.costs.interruptionCost : p
            }
            var value = options.indices.map { step($0, from) }
            var back: [[Int]] = []
            back.reserveCapacity(h.hours - from)
            for t in (from + 1)..<max(from + 1, h.hours) {
                var next = value
                var arg = Array(options.indices)
                for j in options.indices {
                    let cost = step(j, t)
                    guard cost.isFinite else {
                        next[j] = .infinity
                        continue
                    }
                    var best = value[j]
                    for i in options.indices where i != j && value[i].isFinite {
                        let moved = value[i] + s.costs.switchCost(from: price(i, t) ?? od)
                        if moved < best {
                            best = moved
                            arg[j] = i
                        }
                    }
                    next[j] = best + cost
                }
                back.append(arg)
                value = next
            }
            var at = value.indices.min { (value[$0], $0) < (value[$1], $1) } ?? 0
            var plan = Array(repeating: options[at], count: h.hours)
            for t in stride(from: h.hours - 1, to: from, by: -1) {
                plan[t] = options[at]
                at = back[t - from - 1][at]
            }
            for t in 0...from { plan[t] = options[at] }
            return plan
        }
    }
}
