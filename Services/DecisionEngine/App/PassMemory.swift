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
        var marks: [Date: [String: Double]] = [:]
        var written: [String: (risk: Double, at: Date)] = [:]
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
        let wanted = marks.filter { !held.contains($0) } + marks.suffix(2)
        let rows = try conn.query(
            "SELECT pool_id, time_bucket, spot_price::float8 FROM pricing_snapshots_clean WHERE time_bucket = ANY($1::timestamptz[])",
            [PGArray(Set(wanted).sorted())])
        var fresh: [Date: [String: Double]] = Dictionary(uniqueKeysWithValues: Set(wanted).map { ($0, [:]) })
        for r in rows { fresh[try r.decode(Date.self, at: 1), default: [:]][try r.decode(String.self, at: 0)] = try r.decode(Double.self, at: 2) }
        return state.withLock { s in
            s.marks.merge(fresh) { _, new in new }
            let keep = Set(marks)
            s.marks = s.marks.filter { keep.contains($0.key) }
            var series: [String: [(Date, Double)]] = [:]
            for mark in marks {
                for (pool, price) in s.marks[mark] ?? [:] { series[pool, default: []].append((mark, price)) }
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
