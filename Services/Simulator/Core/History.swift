import Foundation
import SpotMarket

/// The week a demo fleet has already lived when it starts: what its agents would have reported
/// and where its workloads ran, planned from the market so that the simulator can send it
/// through SpotGuard's agent API with past times (`spotguard-sim run --history-days`).
///
/// Wall hour `h` before `end` reads the market's hour `-h` (counted back from the grid's end),
/// so the live run, which starts at the grid's hour 0, continues the same series.
public struct History: Sendable {
    public struct Workload: Sendable, Equatable {
        public var logical: String
        public var type: String
        /// Manual-replica workloads stay where they started; the others follow the price.
        public var moves: Bool

        public init(logical: String, type: String, moves: Bool) {
            self.logical = logical
            self.type = type
            self.moves = moves
        }
    }

    /// One pricing report: every pool of the type at `at`.
    public struct Report: Sendable, Equatable {
        public var at: Date
        public var type: String
        public var prices: [PoolPrice]
    }

    public struct PoolPrice: Sendable, Equatable {
        public var pool: String
        public var price: Double
    }

    /// A workload moved to `pool` at `at` (the first move is its start, from an on-demand
    /// instance that predates the history).
    public struct Move: Sendable, Equatable {
        public var at: Date
        public var pool: String
        public var price: Double
        /// The price of the pool it left, at `at` (nil for the start).
        public var leftPrice: Double?
        /// An interruption moved it (to the cheapest other pool), not the price.
        public var interrupted = false
    }

    public var start: Date
    public var end: Date
    /// In time order; none during each type's report gaps (an agent's outage).
    public var reports: [Report]
    /// Per workload, in time order; never empty.
    public var moves: [String: [Move]]

    /// How often the agents reported (AWS's spot prices change at most hourly).
    public static let reportSeconds = 300.0
    /// A workload that moved stays at least this long.
    public static let dwellHours = 12
    /// A moving workload leaves a pool dearer than the cheapest by this factor.
    public static let moveFactor = 1.15

    /// - Parameters:
    ///   - days: how far back from `end` the history starts (at most 7: the oldest report ingest
    ///     accepts; the first ten minutes of the seventh day are left out for the clock).
    ///   - faults: interruptions, drawn per workload and hour as the live run draws them; an
    ///     interrupted workload that moves moves at once to the cheapest other pool. One that
    ///     does not (manual replicas) is left alone: its failover is a promotion, which only the
    ///     live run can show, and an instance it left would stay open (it does not auto-terminate).
    public static func plan(market: Market, workloads: [Workload], end: Date, days: Double, faults: FaultModel) -> History {
        let seed = faults.seed
        let span = min(days * 86_400, 7 * 86_400 - 600)
        let start = Date(timeIntervalSince1970: ((end.timeIntervalSince1970 - span) / reportSeconds).rounded(.up) * reportSeconds)
        func hour(_ t: Date) -> Int { Int((t.timeIntervalSince(end) / 3600).rounded(.down)) }
        func price(_ pool: String, _ t: Date) -> Double? { market.price(pool, hour: hour(t)) }

        var reports: [Report] = []
        let types = Array(Set(workloads.map(\.type))).sorted()
        // two outages of 30–90 minutes per type, where the SEF fills the prices in
        let gaps = Dictionary(
            uniqueKeysWithValues: types.map { type in
                (
                    type,
                    (0..<2).map { i -> ClosedRange<Date> in
                        let from = start.addingTimeInterval(span * Draw.unit(seed, "history-gap:\(type)", i) * 0.9)
                        return from...from.addingTimeInterval(60 * (30 + 60 * Draw.unit(seed, "history-gap-length:\(type)", i)))
                    }
                )
            })
        var t = start
        while t < end {
            for type in types where !(gaps[type] ?? []).contains(where: { $0.contains(t) }) {
                let prices = market.pools(of: type).compactMap { pool in price(pool, t).map { PoolPrice(pool: pool, price: $0) } }
                if !prices.isEmpty { reports.append(Report(at: t, type: type, prices: prices)) }
            }
            t = t.addingTimeInterval(reportSeconds)
        }

        var moves: [String: [Move]] = [:]
        for (i, w) in workloads.enumerated() {
            let pools = market.pools(of: w.type)
            func cheapest(_ t: Date) -> Move? {
                pools.compactMap { pool in price(pool, t).map { Move(at: t, pool: pool, price: $0) } }.min { $0.price < $1.price }
            }
            // workloads joined a minute apart, in the order given
            let joined = start.addingTimeInterval(60 * Double(i))
            guard let first = cheapest(joined) else { continue }
            var chain = [first]
            // checked hourly, at a minute of the hour of its own
            var check = Date(timeIntervalSince1970: (joined.timeIntervalSince1970 / 3600).rounded(.up) * 3600 + 60 * Double(i % 50))
            while check < end.addingTimeInterval(-3600) {
                let last = chain[chain.count - 1]
                let current = price(last.pool, check)
                if w.moves, faults.interruption(instance: i * 10_000 + chain.count, hour: hour(check), band: market.bands[last.pool]) != nil,
                    let other = pools.filter({ $0 != last.pool }).compactMap({ p in price(p, check).map { (p, $0) } }).min(by: { $0.1 < $1.1 })
                {
                    chain.append(Move(at: check, pool: other.0, price: other.1, leftPrice: current, interrupted: true))
                } else if w.moves, check.timeIntervalSince(last.at) >= Double(dwellHours) * 3600, let best = cheapest(check),
                    best.pool != last.pool, let current, current > best.price * moveFactor
                {
                    chain.append(Move(at: check, pool: best.pool, price: best.price, leftPrice: current))
                }
                check = check.addingTimeInterval(3600)
            }
            moves[w.logical] = chain
        }
        return History(start: start, end: end, reports: reports, moves: moves)
    }

    /// A made-up instance id, the same for the same seed, workload and place in its chain.
    public static func instanceId(seed: UInt64, logical: String, index: Int) -> String {
        let digits = (0..<17).map { d in String(Int(Draw.unit(seed, "history-instance:\(logical):\(index)", d) * 16), radix: 16) }
        return "i-" + digits.joined()
    }
}
