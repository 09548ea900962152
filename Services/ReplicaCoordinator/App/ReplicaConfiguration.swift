import Foundation
import ReplicaCore
import SpotRuntime

/// Settings of `spotguard-replicas`, from the environment:
/// - `SPOTGUARD_REPLICAS_HOST` (default `127.0.0.1`), `SPOTGUARD_REPLICAS_PORT` (default 8082): health and metrics
/// - `SPOTGUARD_REPLICAS_CONCURRENCY` (int, default 8): relayed calls one process answers at once
/// - `SPOTGUARD_REPLICAS_RECONCILE_SECONDS` (int, default 10): how often manual replicas, expiries
///   and health are checked
/// - `SPOTGUARD_REPLICAS_RISK_THRESHOLD_PERCENT` (int, default 30): rebalance risk that launches a replica
/// - `SPOTGUARD_REPLICAS_REBALANCE_WINDOW_SECONDS` (int, default 7200): a rebalance replica not
///   needed by a termination within this window is terminated
/// - `SPOTGUARD_REPLICAS_STUCK_SECONDS` (int, default 180): a replica launching or syncing longer fails
/// - `SPOTGUARD_REPLICAS_OFFLINE_SECONDS` (int, default 600): an agent silent this long is offline
/// - `SPOTGUARD_REPLICAS_SILENCE_SECONDS` (int, default 60): a primary with a ready replica silent
///   this long is checked by the replica's agent and failed over when its instance is gone
/// - `SPOTGUARD_REPLICAS_PRICE_WINDOW_SECONDS` (int, default 3600): how recent a clean price must
///   be for its pool to host a replica
/// - `SPOTGUARD_REPLICAS_LEASE_SECONDS` (int, default 3 × the reconcile period): the reconciler's
///   leadership lease; a paused leader is replaced after it, and its writes are fenced
/// - `SPOTGUARD_REPLICAS_RELAUNCH_LIMIT` (int, default 3): manual replicas that may fail within
///   10 minutes before the coordinator stops replacing them and alerts
/// - `SPOTGUARD_REPLICAS_STATE_LAG_SECONDS` (int, default 300): a replica holding an older
///   version of the workload's state stays ready while what it lacks is younger than this
public struct ReplicaConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Its HTTP server's time limits and failed-authentication limit.
    public var http: HTTPSettings
    public var concurrency: Int
    public var reconcileInterval: Duration
    /// The reconciler's leadership lease (and the coordinator's idle-in-transaction timeout).
    public var leaderLease: Duration
    public var risk = RiskModel()
    public var rebalanceWindow: Duration
    public var stuckAfter: Duration
    public var offlineAfter: Duration
    /// A primary with a ready replica silent this long is checked by the replica's agent, and
    /// failed over when its instance is gone.
    public var silenceBeforeCheck: Duration
    public var priceWindow: Duration
    public var relaunchLimit: Int
    /// A launch command not fetched in time is pointless (the replica will have failed).
    public var launchExpiry: Duration
    public var workerName: String
    public var stateLagTolerance: Double = 300

    public init(env: EnvironmentReader) throws {
        host = env.string("SPOTGUARD_REPLICAS_HOST") ?? "127.0.0.1"
        port = try env.int("SPOTGUARD_REPLICAS_PORT", default: 8082, range: 0...65535)
        http = try HTTPSettings(env: env)
        concurrency = try env.int("SPOTGUARD_REPLICAS_CONCURRENCY", default: 8, range: 1...64)
        let reconcile = try env.int("SPOTGUARD_REPLICAS_RECONCILE_SECONDS", default: 10, range: 1...3600)
        reconcileInterval = .seconds(reconcile)
        // the leader renews before every pass, so the lease must outlast a pause and a pass
        leaderLease = .seconds(try env.int("SPOTGUARD_REPLICAS_LEASE_SECONDS", default: 3 * reconcile, range: (reconcile + 1)...86_400))
        risk.threshold = Double(try env.int("SPOTGUARD_REPLICAS_RISK_THRESHOLD_PERCENT", default: 30, range: 0...100)) / 100
        rebalanceWindow = .seconds(try env.int("SPOTGUARD_REPLICAS_REBALANCE_WINDOW_SECONDS", default: 7200, range: 1...7 * 86_400))
        let stuck = try env.int("SPOTGUARD_REPLICAS_STUCK_SECONDS", default: 180, range: 1...86_400)
        stuckAfter = .seconds(stuck)
        launchExpiry = .seconds(stuck)
        offlineAfter = .seconds(try env.int("SPOTGUARD_REPLICAS_OFFLINE_SECONDS", default: 600, range: 1...86_400))
        silenceBeforeCheck = .seconds(try env.int("SPOTGUARD_REPLICAS_SILENCE_SECONDS", default: 60, range: 1...86_400))
        priceWindow = .seconds(try env.int("SPOTGUARD_REPLICAS_PRICE_WINDOW_SECONDS", default: 3600, range: 60...7 * 86_400))
        relaunchLimit = try env.int("SPOTGUARD_REPLICAS_RELAUNCH_LIMIT", default: 3, range: 1...100)
        stateLagTolerance = Double(try env.int("SPOTGUARD_REPLICAS_STATE_LAG_SECONDS", default: 300, range: 1...86_400))
        workerName = "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
    }

    /// Defaults, for tools and tests.
    public init() {
        host = "127.0.0.1"
        port = 0
        http = HTTPSettings()
        concurrency = 8
        reconcileInterval = .seconds(10)
        leaderLease = .seconds(30)
        rebalanceWindow = .seconds(7200)
        stuckAfter = .seconds(180)
        launchExpiry = .seconds(180)
        offlineAfter = .seconds(600)
        silenceBeforeCheck = .seconds(60)
        priceWindow = .seconds(3600)
        relaunchLimit = 3
        workerName = "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
    }
}
