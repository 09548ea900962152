import Foundation
import SpotIdentity
import SpotModels
import SpotRuntime

/// Settings of `spotguard-ingest`, from the environment:
/// - `SPOTGUARD_INGEST_HOST` (string, default `127.0.0.1`) and `SPOTGUARD_INGEST_PORT` (int, default 8080)
/// - `SPOTGUARD_ADMIN_TOKEN` (secret, required, at least 16 characters): guards `/api/admin/*`
/// - `SPOTGUARD_INGEST_MAX_BODY_BYTES` (int, default 65536)
/// - `SPOTGUARD_PUBLISH_TIMEOUT_MS` (int, default 5000): how long a request waits for the broker's confirm
/// - `SPOTGUARD_TOKEN_CACHE_SECONDS` (int, default 60)
/// - `SPOTGUARD_REJECTED_ALERT_PER_MINUTE` (int, default 100): a client's rejected submissions
///   within one minute that raise a `quality.alert` (`rejected_burst`)
/// - `SPOTGUARD_RELAY_TIMEOUT_MS` (int, default 10000): how long a replica call waits for the coordinator
/// - `SPOTGUARD_LONG_POLL_SECONDS` (int, default 25): how long `pending-commands` holds an empty answer
/// - `SPOTGUARD_STATE_TRANSFER_MAX_BYTES` (int, default 16777216): the largest state transfer accepted
/// - `SPOTGUARD_STATE_CHUNK_CONCURRENCY` (int, default 32): state chunks one process stores or
///   serves at once; more get 503 `busy` before their body is read
/// - `SPOTGUARD_INGEST_REPORT_CONCURRENCY` (int, default 256): reports (heartbeats, prices,
///   submissions, switch reports) one process handles at once; more get 503 `overloaded` at once
/// - `SPOTGUARD_INGEST_REPORT_MAX_WAIT_MS` (int, default 500): a report that waited longer than
///   this for a thread (the process short of CPU) is answered 503 `overloaded` instead of handled
/// - `SPOTGUARD_INGEST_IDENTITY_CERTIFICATES` (path, optional): PEM certificates that sign
///   instance identity documents (AWS's regional RSA-2048 certificates); without it,
///   enrollment is refused (503 `enrollment_not_configured`)
/// - `SPOTGUARD_RETENTION_<TABLE>_DAYS` (int): the shipped state of an agent silent this long
///   (`STATE_VERSIONS`, 30), chunks no version names (`STATE_CHUNKS`, 1), state handed to
///   replicas (`REPLICA_STATE_TRANSFERS`, 30); `SPOTGUARD_RETENTION_INTERVAL_SECONDS` (default 3600)
public struct IngestConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Its HTTP server's time limits and failed-authentication limit.
    public var http: HTTPSettings
    public var adminToken: String
    public var maxBodyBytes: Int
    public var publishTimeout: Duration
    public var tokenCacheTTL: Duration
    public var rejectedAlertPerMinute: Int
    public var relayTimeout: Duration
    public var longPoll: Duration
    public var maxStateTransferBytes: Int
    /// State transfers held in memory at once; more are answered 503 at once (each costs about
    /// three times its size while it is stored).
    public var stateTransferConcurrency: Int
    /// State chunks (≤ 1 MiB each) held in memory at once; more are answered 503 at once.
    public var stateChunkConcurrency: Int
    /// Reports in progress at once; more are answered 503 `overloaded` at once (load shedding).
    public var reportConcurrency: Int
    /// A report that waited longer for a thread to handle it is answered 503 `overloaded`.
    public var reportMaxWait: Duration
    public var limits = IngestLimits()
    /// Checks enrolling instances' identity documents; nil: enrollment is not configured.
    public var identity: IdentityVerifier?
    public var retention: RetentionPolicy
    public var workerName = "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)"

    public init(env: EnvironmentReader) throws {
        host = env.string("SPOTGUARD_INGEST_HOST") ?? "127.0.0.1"
        port = try env.int("SPOTGUARD_INGEST_PORT", default: 8080, range: 0...65535)
        http = try HTTPSettings(env: env)
        adminToken = try env.secret("SPOTGUARD_ADMIN_TOKEN", minLength: 16)
        maxBodyBytes = try env.int("SPOTGUARD_INGEST_MAX_BODY_BYTES", default: 65_536, range: 1024...(16 << 20))
        publishTimeout = .milliseconds(try env.int("SPOTGUARD_PUBLISH_TIMEOUT_MS", default: 5000, range: 100...60_000))
        tokenCacheTTL = .seconds(try env.int("SPOTGUARD_TOKEN_CACHE_SECONDS", default: 60, range: 0...3600))
        rejectedAlertPerMinute = try env.int("SPOTGUARD_REJECTED_ALERT_PER_MINUTE", default: 100, range: 1...1_000_000)
        relayTimeout = .milliseconds(try env.int("SPOTGUARD_RELAY_TIMEOUT_MS", default: 10_000, range: 100...120_000))
        longPoll = .seconds(try env.int("SPOTGUARD_LONG_POLL_SECONDS", default: 25, range: 1...60))
        maxStateTransferBytes = try env.int("SPOTGUARD_STATE_TRANSFER_MAX_BYTES", default: 16 << 20, range: 1024...(256 << 20))
        stateTransferConcurrency = try env.int("SPOTGUARD_STATE_TRANSFER_CONCURRENCY", default: 4, range: 1...256)
        stateChunkConcurrency = try env.int("SPOTGUARD_STATE_CHUNK_CONCURRENCY", default: 32, range: 1...1024)
        reportConcurrency = try env.int("SPOTGUARD_INGEST_REPORT_CONCURRENCY", default: 256, range: 1...100_000)
        reportMaxWait = .milliseconds(try env.int("SPOTGUARD_INGEST_REPORT_MAX_WAIT_MS", default: 500, range: 10...60_000))
        retention = try RetentionPolicy(
            [.init("state_versions", days: 30), .init("state_chunks", days: 1), .init("replica_state_transfers", days: 30)], env: env)
        if let path = env.string("SPOTGUARD_INGEST_IDENTITY_CERTIFICATES") {
            do {
                identity = try IdentityVerifier(pemBundle: try String(contentsOfFile: path, encoding: .utf8))
            } catch {
                throw ConfigurationError(variable: "SPOTGUARD_INGEST_IDENTITY_CERTIFICATES", problem: "must name a PEM file of RSA certificates (\(error))")
            }
        }
    }
}
