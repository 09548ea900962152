import Foundation
import SEFCore
import SpotModels
import SpotRuntime

/// Settings of `spotguard-sef`, from the environment:
/// - `SPOTGUARD_SEF_HOST` (default `127.0.0.1`), `SPOTGUARD_SEF_PORT` (default 8081): health and metrics
/// - `SPOTGUARD_SEF_BATCH` (int, default 250): messages committed in one transaction (also the prefetch)
/// - `SPOTGUARD_SEF_CONCURRENCY` (int, default 2): batches one process commits at once (each on
///   its own connection), so decoding one batch overlaps the database work of another
/// - `SPOTGUARD_SEF_DUAL_SOURCE_TOLERANCE_BP` (int basis points, default 50 = 0.5 %): primary and
///   replica agree below this relative difference
/// - `SPOTGUARD_SEF_GAP_SCAN_SECONDS` (int, default 900): how often each pool's gaps are rescanned
/// - `SPOTGUARD_SEF_SCAN_WINDOW_HOURS` (int, default 24): how far back a scan recomputes fills
/// - `SPOTGUARD_SEF_ML_REFRESH_SECONDS` (int, default 21600) and `SPOTGUARD_SEF_ML_WINDOW_DAYS` (int, default 30)
/// - `SPOTGUARD_ADMIN_TOKEN` (optional, at least 16 characters): enables `POST /admin/gap-scan`,
///   `POST /admin/refresh-ml`, `POST /admin/check-quality` and `GET /admin/review`
/// - `SPOTGUARD_SEF_QUALITY_CHECK_SECONDS` (int, default 3600); `SPOTGUARD_SEF_INTERPOLATED_ALERT_PERCENT` (int, default 20)
/// - `SPOTGUARD_RETENTION_<TABLE>_DAYS` (int): how long each of the SEF's tables keeps its rows —
///   the raw trail and the per-client state 30 days, the clean history (clean, interpolated, gaps)
///   400; never fewer than ingest's oldest accepted observation (7 days) plus two, so late data
///   always finds what it recomputes. `SPOTGUARD_RETENTION_INTERVAL_SECONDS` (int, default 3600):
///   how often the retention job runs
public struct SEFConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Its HTTP server's time limits and failed-authentication limit.
    public var http: HTTPSettings
    public var batch: Int
    public var concurrency: Int
    public var policy = SEFPolicy()
    public var gapScanInterval: Int
    public var scanWindowSeconds: Int64
    public var mlRefreshInterval: Int
    public var mlWindowDays: Int
    public var qualityCheckInterval: Int
    public var interpolatedAlertShare: Double
    /// How often the scheduler looks for due work.
    public var tick: Duration = .seconds(10)
    public var workerName: String
    public var adminToken: String?
    /// Days kept per table.
    public var retention: RetentionPolicy

    public init(env: EnvironmentReader) throws {
        host = env.string("SPOTGUARD_SEF_HOST") ?? "127.0.0.1"
        port = try env.int("SPOTGUARD_SEF_PORT", default: 8081, range: 0...65535)
        http = try HTTPSettings(env: env)
        batch = try env.int("SPOTGUARD_SEF_BATCH", default: 250, range: 1...5000)
        concurrency = try env.int("SPOTGUARD_SEF_CONCURRENCY", default: 2, range: 1...16)
        policy.dualSourceTolerance = Double(try env.int("SPOTGUARD_SEF_DUAL_SOURCE_TOLERANCE_BP", default: 50, range: 0...10_000)) / 10_000
        gapScanInterval = try env.int("SPOTGUARD_SEF_GAP_SCAN_SECONDS", default: 900, range: 1...86_400)
        scanWindowSeconds = Int64(try env.int("SPOTGUARD_SEF_SCAN_WINDOW_HOURS", default: 24, range: 1...24 * 31) * 3600)
        mlRefreshInterval = try env.int("SPOTGUARD_SEF_ML_REFRESH_SECONDS", default: 21_600, range: 60...7 * 86_400)
        mlWindowDays = try env.int("SPOTGUARD_SEF_ML_WINDOW_DAYS", default: 30, range: 1...366)
        qualityCheckInterval = try env.int("SPOTGUARD_SEF_QUALITY_CHECK_SECONDS", default: 3600, range: 60...86_400)
        interpolatedAlertShare = Double(try env.int("SPOTGUARD_SEF_INTERPOLATED_ALERT_PERCENT", default: 20, range: 1...100)) / 100
        workerName = "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
        adminToken = env.string("SPOTGUARD_ADMIN_TOKEN") == nil ? nil : try env.secret("SPOTGUARD_ADMIN_TOKEN", minLength: 16)
        let minimum = Int(IngestLimits().maxAge / 86_400) + 2
        let kept: [(String, Int)] = [
            ("pricing_submissions_raw", 30), ("pricing_client_sources", 30), ("pricing_client_buckets", 30),
            ("pricing_snapshots_clean", 400), ("pricing_snapshots_interpolated", 400), ("pricing_gaps", 400),
        ]
        // the ML dataset keeps its window (longer if set)
        retention = try RetentionPolicy(
            kept.map { RetentionPolicy.Table($0.0, days: $0.1, minimum: minimum) } + [.init("pricing_snapshots_ml", days: mlWindowDays, minimum: mlWindowDays)],
            env: env)
    }
}
