import Foundation
import SpotRuntime

/// Settings of `spotguard-decisions`, from the environment:
/// - `SPOTGUARD_DECISIONS_HOST` (default `127.0.0.1`), `SPOTGUARD_DECISIONS_PORT` (default 8085): health and metrics
/// - `SPOTGUARD_DECISIONS_PASS_SECONDS` (int, default 300): how often the decision pass runs
/// - `SPOTGUARD_DECISIONS_ADVISOR_FILE` (path, optional): AWS's `spot-advisor-data.json`, the
///   interruption bands used as the risk prior (without it every pool starts at the middle band)
/// - `SPOTGUARD_DECISIONS_SAVINGS_SECONDS` (int, default 900): how often savings are accounted
/// - `SPOTGUARD_DECISIONS_PRICE_WINDOW_SECONDS` (int, default 3600): how recent a pool's clean
///   price must be to count
/// - `SPOTGUARD_RETENTION_AGENT_DECISION_HISTORY_DAYS`, `SPOTGUARD_RETENTION_COMMANDS_DAYS` and `SPOTGUARD_RETENTION_SYSTEM_EVENTS_DAYS`
///   (default 90 each), `SPOTGUARD_RETENTION_REPLICA_COST_LOG_DAYS` (default 400);
///   `SPOTGUARD_RETENTION_INTERVAL_SECONDS` (default 3600)
public struct DecisionConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Its HTTP server's time limits and failed-authentication limit.
    public var http: HTTPSettings
    public var passInterval: Int
    public var savingsInterval: Int
    public var advisorFile: String?
    public var priceWindow: Int
    /// How often the loop looks whether the pass is due.
    public var tick: Duration = .seconds(5)
    public var workerName: String
    public var retention: RetentionPolicy

    public init(env: EnvironmentReader) throws {
        host = env.string("SPOTGUARD_DECISIONS_HOST") ?? "127.0.0.1"
        port = try env.int("SPOTGUARD_DECISIONS_PORT", default: 8085, range: 0...65535)
        http = try HTTPSettings(env: env)
        passInterval = try env.int("SPOTGUARD_DECISIONS_PASS_SECONDS", default: 300, range: 1...86_400)
        savingsInterval = try env.int("SPOTGUARD_DECISIONS_SAVINGS_SECONDS", default: 900, range: 1...86_400)
        advisorFile = env.string("SPOTGUARD_DECISIONS_ADVISOR_FILE")
        priceWindow = try env.int("SPOTGUARD_DECISIONS_PRICE_WINDOW_SECONDS", default: 3600, range: 300...86_400)
        workerName = "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"
        retention = try RetentionPolicy(
            [.init("agent_decision_history", days: 90), .init("commands", days: 90), .init("system_events", days: 90), .init("replica_cost_log", days: 400)],
            env: env)
    }
}
