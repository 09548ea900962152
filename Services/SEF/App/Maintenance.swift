import Foundation
import Logging
import Metrics
import SEFCore
import ServiceLifecycle
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore

/// The SEF's periodic work — the gap scan per pool, the ML dataset refresh and the data
/// quality check — each claimed with row locks so that N copies never do it twice. Also
/// what the operator commands run, through the same claims.
public final class Maintenance: Service, Sendable {
    let store: PostgresStore
    let prices: PriceRepository
    /// Wakes the outbox relay after a commit that wrote events.
    let notify: @Sendable () -> Void
    let configuration: SEFConfiguration
    let logger: Logger
    let worker: PeriodicWorker

    /// A maintenance runner on `store`, as the service and the operator commands build it.
    public convenience init(store: PostgresStore, configuration: SEFConfiguration, logger: Logger) {
        self.init(
            store: store, prices: PriceRepository(configuration: configuration),
            notify: {}, configuration: configuration, logger: logger)
    }

    init(store: PostgresStore, prices: PriceRepository, notify: @escaping @Sendable () -> Void, configuration: SEFConfiguration, logger: Logger) {
        self.store = store
        self.prices = prices
        self.notify = notify
        self.configuration = configuration
        self.logger = logger
        worker = PeriodicWorker("sef-maintenance", every: configuration.tick)
    }

    public func run() async throws {
        await worker.run {
            do {
                _ = try await scanDuePools()
                _ = try await refreshMLDataset(force: false)
                _ = try await checkQuality(force: false)
            } catch {
                logger.warning("maintenance round failed", metadata: ["sef.error": "\(error)"])
            }
        }
    }

    public struct ScanSummary: Sendable, Codable {
        public var pools = 0
        public var fills: [String: Int] = [:]
        public var alerts = 0
    }

    /// Scans every pool whose scan is due (all of them with `force`), one claimed pool per
    /// transaction; a pool another copy is scanning is skipped. A graceful shutdown ends the
    /// round after the pool in hand: the rest stay due for the next round or another copy (a
    /// round over 50,000 pools takes minutes, and a stopping SEF waited for all of it).
    public func scanDuePools(force: Bool = false) async throws -> ScanSummary {
        let (prices, interval, worker) = (self.prices, configuration.gapScanInterval, configuration.workerName)
        try await store.withConnection { conn in
            _ = try conn.execute("INSERT INTO sef_pool_scans (pool_id) SELECT id FROM spot_pools ON CONFLICT DO NOTHING")
            if force { _ = try conn.execute("UPDATE sef_pool_scans SET next_scan_at = now()") }
        }
        var summary = ScanSummary()
        let started = Date()
        while !Task.isShuttingDownGracefully {
            let report = try await store.transaction { conn -> ApplyReport? in
                let claimed = try conn.query(
                    """
                    SELECT pool_id FROM sef_pool_scans WHERE next_scan_at <= $1
                     ORDER BY next_scan_at, pool_id LIMIT 1 FOR UPDATE SKIP LOCKED
                    """, [started])
                guard let raw = try claimed.first?.decode(String.self, at: 0), let pool = PoolID(rawValue: raw) else { return nil }
                let report = try prices.scan(pool: pool, now: Date(), on: conn)
                _ = try conn.execute(
                    """
                    UPDATE sef_pool_scans SET next_scan_at = now() + make_interval(secs => $2), last_scan_at = now(),
                           last_scanned_by = $3 WHERE pool_id = $1
                    """, [raw, interval, worker])
                try PricingPipeline.publish(report, on: conn)
                return report
            }
            guard let report else { break }
            summary.pools += 1
            summary.alerts += report.alerts.count
            for (m, n) in report.fills { summary.fills[m.rawValue, default: 0] += n }
            PricingPipeline.recordFills(report)
            if !report.cleaned.isEmpty || !report.alerts.isEmpty { notify() }
        }
        if summary.pools > 0 { Counter(label: "spotguard_sef_gap_scans_total").increment(by: summary.pools) }
        return summary
    }

    /// Runs `body` as the named job when it is due (or at once with `force`, waiting for a
    /// copy that is running it). Returns nil when another copy holds it or it is not due.
    func runJob<T: Sendable & Encodable>(
        _ name: String, every seconds: Int, force: Bool, _ body: @escaping @Sendable (PGConnection) throws -> T
    ) async throws -> T? {
        try await ScheduledJobs.run(name, every: seconds, force: force, worker: configuration.workerName, store: store, body)
    }

    public struct MLRefresh: Sendable, Codable {
        public var rows: Int
        public var windowStart: Date
    }

    /// Rebuilds `pricing_snapshots_ml` for the window from clean rows of confidence ≥ 0.95
    /// only, with the features of seed 000.
    public func refreshMLDataset(force: Bool) async throws -> MLRefresh? {
        let windowStart = Date().addingTimeInterval(-Double(configuration.mlWindowDays) * 86_400)
        return try await runJob("sef.ml_refresh", every: configuration.mlRefreshInterval, force: force) { conn in
            _ = try conn.execute("DELETE FROM pricing_snapshots_ml WHERE time_bucket >= $1", [windowStart])
            let rows = try conn.execute(
                """
                WITH src AS (
                    SELECT c.pool_id, c.time_bucket, c.spot_price::float8 AS p, c.on_demand_price, c.confidence_score,
                           sp.instance_type, sp.region
                      FROM pricing_snapshots_clean c JOIN spot_pools sp ON sp.id = c.pool_id
                     WHERE c.confidence_score >= 0.95 AND c.time_bucket >= $1::timestamptz - interval '24 hours'),
                feat AS (
                    SELECT s.pool_id, s.time_bucket, s.p, s.on_demand_price, s.confidence_score,
                           (s.p - h1.p) / h1.p AS change_1h,
                           (s.p - d1.p) / d1.p AS change_24h,
                           stddev_pop(s.p) OVER w6 / nullif(avg(s.p) OVER w6, 0) AS volatility_6h,
                           rank() OVER (PARTITION BY s.instance_type, s.region, s.time_bucket ORDER BY s.p) AS price_rank
                      FROM src s
                      LEFT JOIN src h1 ON h1.pool_id = s.pool_id AND h1.time_bucket = s.time_bucket - interval '1 hour'
                      LEFT JOIN src d1 ON d1.pool_id = s.pool_id AND d1.time_bucket = s.time_bucket - interval '24 hours'
                    WINDOW w6 AS (PARTITION BY s.pool_id ORDER BY s.time_bucket
                                  RANGE BETWEEN interval '6 hours' PRECEDING AND CURRENT ROW))
                INSERT INTO pricing_snapshots_ml (pool_id, time_bucket, spot_price, on_demand_price, confidence_score,
                    price_change_1h, price_change_24h, price_volatility_6h, pool_rank_by_price, hour_of_day, day_of_week)
                SELECT pool_id, time_bucket, p, on_demand_price, confidence_score, change_1h, change_24h, volatility_6h, price_rank,
                       extract(hour FROM time_bucket AT TIME ZONE 'UTC'), extract(dow FROM time_bucket AT TIME ZONE 'UTC')
                  FROM feat WHERE time_bucket >= $1
                """, [windowStart])
            return MLRefresh(rows: rows, windowStart: windowStart)
        }
    }

    public struct QualityCheck: Sendable, Codable {
        public var agentsChecked: Int
        public var alerts: Int
    }

    /// Alerts once a day per agent whose pool's clean prices over the last 24 h are more
    /// than the configured share interpolated.
    public func checkQuality(force: Bool) async throws -> QualityCheck? {
        let share = configuration.interpolatedAlertShare
        let result = try await runJob("sef.quality_check", every: configuration.qualityCheckInterval, force: force) { conn in
            let rows = try conn.query(
                """
                SELECT a.id, a.client_id, a.current_pool_id, count(*) AS total,
                       count(*) FILTER (WHERE c.data_source = 'interpolated') AS filled
                  FROM agents a
                  JOIN pricing_snapshots_clean c ON c.pool_id = a.current_pool_id AND c.time_bucket >= now() - interval '24 hours'
                 WHERE a.status <> 'deleted'
                 GROUP BY a.id, a.client_id, a.current_pool_id
                """)
            var report = ApplyReport()
            for row in rows {
                let total = try row.decode(Int.self, at: 3)
                let filled = try row.decode(Int.self, at: 4)
                guard Double(filled) > share * Double(total) else { continue }
                let agent = try row.decode(UUID.self, at: 0)
                let client = try row.decode(UUID.self, at: 1)
                let pool = PoolID(rawValue: try row.decode(String.self, at: 2))
                let percent = Int((100 * Double(filled) / Double(total)).rounded())
                let message = "\(percent) % of the last 24 h of prices for \(pool?.rawValue ?? "-") were interpolated (limit \(Int(share * 100)) %)"
                let day = String(Timestamp.format(Date()).prefix(10))
                let fresh = try SystemEvents.record(
                    .init(
                        "quality.interpolated_share", severity: "warning", component: "spotguard-sef", clientId: client, agentId: agent,
                        message: message, details: .object(["interpolated": .number(Double(filled)), "total": .number(Double(total))]),
                        dedupKey: "interpolated_share:\(agent.uuidString.lowercased()):\(day)"),
                    on: conn)
                if fresh {
                    report.alerts.append(
                        QualityAlert(
                            kind: .interpolatedShare, severity: "warning", clientId: client, agentId: agent, poolId: pool,
                            message: message, details: ["interpolated": String(filled), "total": String(total)], detectedAt: Date()))
                }
            }
            try PricingPipeline.publish(report, on: conn)
            return QualityCheck(agentsChecked: rows.count, alerts: report.alerts.count)
        }
        if let result, result.alerts > 0 { notify() }
        return result
    }
}
