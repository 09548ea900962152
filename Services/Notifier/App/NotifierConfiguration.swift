import Foundation
import NotifierCore
import SpotModels
import SpotRuntime

/// Settings of `spotguard-notifier`, from the environment:
/// - `SPOTGUARD_NOTIFIER_HOST` (default `127.0.0.1`) and `SPOTGUARD_NOTIFIER_PORT` (default 8088): health and metrics
/// - `SPOTGUARD_NOTIFIER_COLLAPSE_SECONDS` (default 900): the same alert again within this window
///   counts up the first notification instead of writing (and sending) another
/// - `SPOTGUARD_WEBHOOK_MAX_ATTEMPTS` (default 8): attempts before a delivery is dead-lettered
/// - `SPOTGUARD_WEBHOOK_BACKOFF_MS` (default 2000) and `SPOTGUARD_WEBHOOK_BACKOFF_CAP_SECONDS`
///   (default 3600): the first retry's wait, doubled per attempt up to the cap
/// - `SPOTGUARD_WEBHOOK_TIMEOUT_MS` (default 10000): one attempt's time limit, everything included
/// - `SPOTGUARD_WEBHOOK_CONCURRENCY` (default 32) and `SPOTGUARD_WEBHOOK_CLIENT_CONCURRENCY`
///   (default 4): deliveries at work at once in one notifier, and of one client
/// - `SPOTGUARD_WEBHOOK_ALLOW_NETWORKS` (default none): comma-separated addresses or CIDR blocks
///   webhooks may reach although they are internal (loopback, private, link-local …)
/// - `SPOTGUARD_NOTIFIER_POLL_MS` (default 1000): how often due retries are looked for
/// - `SPOTGUARD_RETENTION_NOTIFICATIONS_DAYS` (default 90; their deliveries and reads go with
///   them), `SPOTGUARD_RETENTION_WEBHOOK_DELIVERIES_DAYS` (default 30, finished ones only),
///   `SPOTGUARD_RETENTION_NOTIFIER_MESSAGES_DAYS` (default 30, at least 2: the bus messages seen,
///   against redelivery); `SPOTGUARD_RETENTION_INTERVAL_SECONDS` (default 3600)
public struct NotifierConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Its HTTP server's time limits and failed-authentication limit.
    public var http: HTTPSettings
    public var collapseWindow: Duration
    public var backoff: Backoff
    public var timeout: Duration
    public var poll: Duration
    public var concurrency: Int
    public var clientConcurrency: Int
    public var allowedNetworks: [CIDR]
    /// A claimed delivery not finished within this lease (its notifier died) is claimed again.
    public var lease: Duration = .seconds(120)
    public var retention: RetentionPolicy
    public var workerName = "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"

    public init(env: EnvironmentReader) throws {
        host = env.string("SPOTGUARD_NOTIFIER_HOST") ?? "127.0.0.1"
        port = try env.int("SPOTGUARD_NOTIFIER_PORT", default: 8088, range: 0...65535)
        http = try HTTPSettings(env: env)
        collapseWindow = .seconds(try env.int("SPOTGUARD_NOTIFIER_COLLAPSE_SECONDS", default: 900, range: 0...86_400))
        backoff = Backoff(
            base: .milliseconds(try env.int("SPOTGUARD_WEBHOOK_BACKOFF_MS", default: 2000, range: 10...3_600_000)),
            cap: .seconds(try env.int("SPOTGUARD_WEBHOOK_BACKOFF_CAP_SECONDS", default: 3600, range: 1...86_400)),
            maxAttempts: try env.int("SPOTGUARD_WEBHOOK_MAX_ATTEMPTS", default: 8, range: 1...50))
        timeout = .milliseconds(try env.int("SPOTGUARD_WEBHOOK_TIMEOUT_MS", default: 10_000, range: 100...60_000))
        poll = .milliseconds(try env.int("SPOTGUARD_NOTIFIER_POLL_MS", default: 1000, range: 50...60_000))
        concurrency = try env.int("SPOTGUARD_WEBHOOK_CONCURRENCY", default: 32, range: 1...1024)
        clientConcurrency = try env.int("SPOTGUARD_WEBHOOK_CLIENT_CONCURRENCY", default: 4, range: 1...1024)
        allowedNetworks = try (env.string("SPOTGUARD_WEBHOOK_ALLOW_NETWORKS") ?? "").split(separator: ",").map { part in
            let text = part.trimmingCharacters(in: .whitespaces)
            guard let block = CIDR(text) else {
                throw ConfigurationError(variable: "SPOTGUARD_WEBHOOK_ALLOW_NETWORKS", problem: "'\(text)' is not an address or CIDR block")
            }
            return block
        }
        retention = try RetentionPolicy(
            [.init("notifications", days: 90), .init("webhook_deliveries", days: 30), .init("notifier_messages", days: 30, minimum: 2)], env: env)
    }
}
