import Foundation
import SpotCloud
import SpotModels

/// The agent's settings: a JSON file (`SPOTGUARD_AGENT_CONFIG`, snake_case keys as below)
/// overridden by the environment (`SPOTGUARD_AGENT_<KEY>` upper-cased):
/// - `server` (required): SpotGuard's agent API, e.g. `https://spotguard.example.com`
/// - `enrollment_secret` or `token` (one is required): a secret to enroll this instance with
///   (its signed identity document earns it an agent token, kept in `token_file`), or an API
///   token to use as it is (an agent token, or a client token for agents set up before
///   enrollment). A saved agent token of this instance comes first, then the secret.
/// - `token_file` (default `agent-token` beside the spool directory): where the agent token lives
/// - `ca_bundle`: a PEM file of certificates to trust for the server besides the system's (a
///   private CA, such as the demo's in `.spotguard/<stack>/caddy`)
/// - `logical_agent_id`: the workload's lasting name (default: the instance id)
/// - `spool_dir` (default `/var/lib/spotguard-agent/spool`): reports not yet accepted
/// - `heartbeat_seconds` (60), `price_seconds` (60), `watch_seconds` (1): loop periods
/// - `alternative_types`: further instance types whose prices to report (comma-separated in the environment)
/// - `on_demand_price`: the instance type's on-demand $/h, sent with price reports
/// - `replica_id` and `agent_id`: set when this instance runs as a replica (the user data of
///   `launch_replica` sets both; a replica reports under its primary's agent id)
/// - `long_poll_seconds` (25): how long a command poll may be held
/// - `sync_seconds` (10): a replica's sync-status period
/// - `state_path` (or `state_file`): the workload's state, a file or a directory. The primary
///   ships it as a version of 1 MiB content-addressed chunks (only changed chunks travel) every
///   `state_seconds` (60; 0 = only on an interruption notice) and on a notice; a replica keeps
///   the newest version written there and fetches it once more when promoted
/// - `state_hook`: a shell command run before each version is taken (e.g. one that writes a
///   consistent snapshot into the state directory); a failing hook skips that version
/// - `state_store` (`spotguard`): where the chunks go: `spotguard` (through the agent API, kept
///   in SpotGuard's database) or `s3://bucket/prefix` (the customer's bucket, with this
///   instance's role; the bucket's name must start `spotguard-state-` for the agent policy)
/// - `state_cache_dir` (default `state-chunks` beside the spool directory): a replica's copy of
///   the chunks it holds
/// - `replica_type` (`automatic-rebalance`): a replica's kind, which names its price source
/// - `traffic`: where the workload's traffic enters (`elastic_ips`, `target_groups`,
///   `dns_records`, as `PUT /api/client/agents/{id}/traffic` takes them; JSON text in the
///   environment); sent to the server at registration, which keeps it for promotions and switches
/// - `stop_command` or `stop_unit`: the workload's stop hook, run when this instance is fenced
///   (its traffic moved to a new primary): a shell command, or a systemd unit to stop
/// - `fence_grace_seconds` (120): how long a primary that sees another one named primary, and
///   was told nothing about handing over, keeps serving before it fences itself
/// - `image_retention` (1): how many of the agent's own images (made for switches and
///   recovery, tagged `spotguard:agent`) stay as restore points once used; older ones are
///   deregistered and their snapshots deleted
/// - `image_wait_seconds` (600): how long an image may stay pending before the step that made it
///   gives up and deletes it
public struct AgentConfiguration: Sendable, Equatable {
    public var server: URL
    public var token: String?
    public var enrollmentSecret: String?
    public var tokenFile: String
    public var caBundle: String?
    public var logicalAgentId: String?
    public var spoolDirectory: String
    public var heartbeatSeconds: Double
    public var priceSeconds: Double
    public var watchSeconds: Double
    public var alternativeTypes: [String]
    public var onDemandPrice: Double?
    public var replicaId: UUID?
    public var agentId: String?
    public var longPollSeconds: Int
    public var syncSeconds: Double
    public var statePath: String?
    public var stateHook: String?
    public var stateSeconds: Double
    public var stateStore: String
    public var stateCacheDirectory: String
    public var replicaType: String
    public var traffic: TrafficConfig?
    public var stopCommand: String?
    public var stopUnit: String?
    public var fenceGraceSeconds: Double
    public var imageRetention: Int
    public var imageWaitSeconds: Double

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    struct File: Decodable {
        var server: String?
        var token: String?
        var enrollmentSecret: String?
        var tokenFile: String?
        var caBundle: String?
        var logicalAgentId: String?
        var spoolDir: String?
        var heartbeatSeconds: Double?
        var priceSeconds: Double?
        var watchSeconds: Double?
        var alternativeTypes: [String]?
        var onDemandPrice: Double?
        var replicaId: String?
        var agentId: String?
        var longPollSeconds: Int?
        var syncSeconds: Double?
        var stateFile: String?
        var statePath: String?
        var stateHook: String?
        var stateSeconds: Double?
        var stateStore: String?
        var stateCacheDir: String?
        var replicaType: String?
        var traffic: TrafficConfig?
        var stopCommand: String?
        var stopUnit: String?
        var fenceGraceSeconds: Double?
        var imageRetention: Int?
        var imageWaitSeconds: Double?
    }

    public init(env: [String: String] = ProcessInfo.processInfo.environment) throws {
        var file = File()
        if let path = env["SPOTGUARD_AGENT_CONFIG"] {
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            do {
                file = try decoder.decode(File.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
            } catch {
                throw Invalid(description: "config file \(path): \(error)")
            }
        }
        func value(_ key: String) -> String? { env["SPOTGUARD_AGENT_\(key.uppercased())"].flatMap { $0.isEmpty ? nil : $0 } }
        func number(_ key: String, _ fallback: Double?, default d: Double, range: ClosedRange<Double>) throws -> Double {
            let n =
                try value(key).map { raw -> Double in
                    guard let n = Double(raw) else { throw Invalid(description: "SPOTGUARD_AGENT_\(key.uppercased()) is not a number") }
                    return n
                } ?? fallback ?? d
            guard range.contains(n) else { throw Invalid(description: "\(key) must be \(range.lowerBound)…\(range.upperBound)") }
            return n
        }
        guard let serverText = value("server") ?? file.server, let server = URL(string: serverText), server.scheme?.hasPrefix("http") == true else {
            throw Invalid(description: "server is required (SPOTGUARD_AGENT_SERVER), an http(s) URL")
        }
        let token = value("token") ?? file.token
        let enrollmentSecret = value("enrollment_secret") ?? file.enrollmentSecret
        // the server and AWS may be reached through a proxy (ProxySettings); a misspelt one must not silently mean none
        if let name = ProxySettings(environment: env).unreadable.first {
            throw Invalid(description: "\(name) is not an http proxy URL (http://[user:password@]host:port)")
        }
        self.server = server
        self.token = token
        self.enrollmentSecret = enrollmentSecret
        logicalAgentId = value("logical_agent_id") ?? file.logicalAgentId
        spoolDirectory = value("spool_dir") ?? file.spoolDir ?? "/var/lib/spotguard-agent/spool"
        tokenFile =
            value("token_file") ?? file.tokenFile
            ?? URL(fileURLWithPath: spoolDirectory).deletingLastPathComponent().appendingPathComponent("agent-token").path
        caBundle = value("ca_bundle") ?? file.caBundle
        if let caBundle, !FileManager.default.isReadableFile(atPath: caBundle) { throw Invalid(description: "ca_bundle \(caBundle) cannot be read") }
        guard token != nil || enrollmentSecret != nil || FileManager.default.fileExists(atPath: tokenFile) else {
            throw Invalid(description: "enrollment_secret or token is required (SPOTGUARD_AGENT_ENROLLMENT_SECRET, SPOTGUARD_AGENT_TOKEN)")
        }
        heartbeatSeconds = try number("heartbeat_seconds", file.heartbeatSeconds, default: 60, range: 0.05...3600)
        priceSeconds = try number("price_seconds", file.priceSeconds, default: 60, range: 0.05...3600)
        watchSeconds = try number("watch_seconds", file.watchSeconds, default: 1, range: 0.01...60)
        alternativeTypes =
            value("alternative_types").map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } } ?? file.alternativeTypes ?? []
        onDemandPrice =
            try value("on_demand_price").map { raw in
                guard let p = Double(raw), p > 0 else { throw Invalid(description: "on_demand_price must be a positive number") }
                return p
            } ?? file.onDemandPrice
        if let raw = value("replica_id") ?? file.replicaId {
            guard let id = UUID(uuidString: raw) else { throw Invalid(description: "replica_id must be a UUID") }
            replicaId = id
        }
        agentId = (value("agent_id") ?? file.agentId)?.lowercased()
        if replicaId != nil, agentId.flatMap(UUID.init(uuidString:)) == nil { throw Invalid(description: "a replica needs agent_id (a UUID)") }
        longPollSeconds = Int(try number("long_poll_seconds", file.longPollSeconds.map(Double.init), default: 25, range: 0...25))
        syncSeconds = try number("sync_seconds", file.syncSeconds, default: 10, range: 0.05...3600)
        statePath = value("state_path") ?? value("state_file") ?? file.statePath ?? file.stateFile
        stateHook = value("state_hook") ?? file.stateHook
        stateSeconds = try number("state_seconds", file.stateSeconds, default: 60, range: 0...86_400)
        stateStore = value("state_store") ?? file.stateStore ?? "spotguard"
        guard stateStore == "spotguard" || StateManifest.s3Location(stateStore) != nil else {
            throw Invalid(description: "state_store must be spotguard or s3://bucket/prefix")
        }
        stateCacheDirectory =
            value("state_cache_dir") ?? file.stateCacheDir
            ?? URL(fileURLWithPath: spoolDirectory).deletingLastPathComponent().appendingPathComponent("state-chunks").path
        replicaType = value("replica_type") ?? file.replicaType ?? "automatic-rebalance"
        guard ["manual", "automatic-rebalance", "automatic-termination"].contains(replicaType) else {
            throw Invalid(description: "replica_type must be manual, automatic-rebalance or automatic-termination")
        }
        if let raw = value("traffic") {
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            do {
                traffic = try decoder.decode(TrafficConfig.self, from: Data(raw.utf8))
            } catch {
                throw Invalid(description: "SPOTGUARD_AGENT_TRAFFIC is not a traffic configuration: \(error)")
            }
        } else {
            traffic = file.traffic
        }
        do {
            try traffic?.validate()
        } catch let e as ValidationError {
            throw Invalid(description: "traffic: \(e.field ?? "-"): \(e.message)")
        }
        stopCommand = value("stop_command") ?? file.stopCommand
        stopUnit = value("stop_unit") ?? file.stopUnit
        fenceGraceSeconds = try number("fence_grace_seconds", file.fenceGraceSeconds, default: 120, range: 1...3600)
        let retention = try number("image_retention", file.imageRetention.map(Double.init), default: 1, range: 0...50)
        guard retention == retention.rounded() else { throw Invalid(description: "image_retention must be a whole number") }
        imageRetention = Int(retention)
        imageWaitSeconds = try number("image_wait_seconds", file.imageWaitSeconds, default: 600, range: 30...7200)
        if stopCommand != nil, stopUnit != nil { throw Invalid(description: "set stop_command or stop_unit, not both") }
    }
}
