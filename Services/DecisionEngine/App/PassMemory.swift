import Foundation
import SpotStore
import Synchronization

/// What one copy of the decision engine remembers between passes, so a pass over 10,000
/// pools reads only what changed:
///
/// - the hourly price series: the clean price at each of the last 24 hour marks per pool.
///   A pass reads only the marks it does not hold yet plus the latest two (the SEF may still
///   correct a recent bucket), through the time_bucket index — about one bucket per pool per
///   pass instead of a day of buckets;
/// - the risk last written per pool: a pool's risk row is written when it moved by at least
///   `riskStep` or is an hour old, not every pass.
///
/// Nothing here is authoritative: a fresh copy (or one that lost a pass to another copy)
/// simply reads more; the memory of written risk is updated only after a pass committed.
public final class PassMemory: Sendable {
    public static let riskStep = 0.005
    public static let riskRewrite: TimeInterval = 3600

    struct State {
        /// Each hour mark's clean price per pool, at the pool's number (NaN: no price). Pools
        /// are numbered once, so building a pass's series costs array reads, not 24 string
        /// hash look-ups per pool (at 10,000 pools that was half the pass).
        var marks: [Date: [Double]] = [:]
        var numbers: [String: Int] = [:]
        var pools: [String] = []
        var written: [String: (risk: Double, at: Date)] = [:]

        mutating func number(of pool: String) -> Int {
            if let n = numbers[pool] { return n }
            pools.append(pool)
            numbers[pool] = pools.count - 1
            return pools.count - 1
        }
    }

    private let state = Mutex(State())

    public init() {}

    /// The 24 hour marks ending at the hour of `now`, oldest first.
    static func hourMarks(at now: Date) -> [Date] {
        let last = (now.timeIntervalSince1970 / 3600).rounded(.down) * 3600
        return (0..<24).reversed().map { Date(timeIntervalSince1970: last - Double($0) * 3600) }
    }

    /// Refreshes the series for the day ending at `now` and returns it per pool (oldest first).
    func hourly(at now: Date, on conn: PGConnection) throws -> [String: [(Date, Double)]] {
        let marks = Self.hourMarks(at: now)
        let held = state.withLock { s in Set(s.marks.keys) }
        let wanted = Set(marks.filter { !held.contains($0) } + marks.suffix(2)).sorted()
        // a mark at a time: a result is held whole in memory, and a fresh copy's day of marks
        // at 10,000 pools in one result took 90 MB at its peak
        for mark in wanted {
            let rows = try conn.query("SELECT pool_id, spot_price::float8 FROM pricing_snapshots_clean WHERE time_bucket = $1", [mark])
            try state.withLock { s in
                var prices: [Double] = []
                for r in rows {
                    let n = s.number(of: try r.decode(String.self, at: 0))
                    if prices.count <= n { prices += repeatElement(.nan, count: n + 1 - prices.count) }
                    prices[n] = try r.decode(Double.self, at: 1)
                }
                s.marks[mark] = prices
            }
        }
        return state.withLock { s in
            let keep = Set(marks)
            s.marks = s.marks.filter { keep.contains($0.key) }
            let columns = marks.compactMap { mark in s.marks[mark].map { (mark, $0) } }
            var series: [String: [(Date, Double)]] = .init(minimumCapacity: s.pools.count)
            for (n, pool) in s.pools.enumerated() {
                var points: [(Date, Double)] = []
                for (mark, prices) in columns where n < prices.count && !prices[n].isNaN { points.append((mark, prices[n])) }
                if !points.isEmpty { series[pool] = points }
            }
            return series
        }
    }

    /// Whether a pool's risk should be written now.
    func shouldWrite(_ pool: String, risk: Double, at now: Date) -> Bool {
        guard let last = state.withLock({ $0.written[pool] }) else { return true }
        return abs(last.risk - risk) >= Self.riskStep || now.timeIntervalSince(last.at) >= Self.riskRewrite
    }

    /// Called once a pass that wrote these risks committed.
    func recordWritten(_ risks: [String: Double], at now: Date) {
        state.withLock { s in
            for (pool, risk) in risks { s.written[pool] = (risk, now) }
        }
    }
}
