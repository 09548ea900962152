import Foundation
import SpotIdentity

/// `spotguard-sim run` settings: command-line options, each with an environment fallback
/// (`--hour-seconds` ↔ `SPOTGUARD_SIM_HOUR_SECONDS`).
public struct SimConfiguration: Sendable {
    /// SpotGuard's agent API, where the simulated instances' agents report.
    public var ingest: URL
    /// The admin token, to create the simulated fleet's client.
    public var adminToken: String
    public var host = "127.0.0.1"
    /// The EC2 endpoint and the control API (0: any free port).
    public var port = 0
    /// Instance disks, images, the event log and the address file.
    public var directory: URL
    public var seed: UInt64 = 1
    public var region = "us-east-1"
    /// A price file to replay (`../shared/data/spot_price_history_*.csv` format); nil: a synthetic market.
    public var pricesFile: String?
    public var onDemandFile: String?
    public var advisorFile: String?
    /// Wall seconds per simulated hour.
    public var hourSeconds = 5.0
    public var agents = 20
    /// Instance types of the fleet (default: the market's first two).
    public var types: [String] = []
    /// The share of workloads in manual-replica mode; the others auto-switch.
    public var manualShare = 0.5
    public var interruptionScale = 20.0
    /// Workloads the fault model leaves alone: held for drills, which then always find their
    /// replica ready however busy the random market keeps the rest of the fleet.
    public var sparedWorkloads: Set<String> = []
    public var rebalanceShare = 0.5
    public var capacityShortage = 0.02
    /// Wall seconds between a termination notice and the termination (AWS: 120).
    public var noticeSeconds = 120.0
    /// Wall seconds between a rebalance recommendation and the notice that follows it.
    public var rebalanceLeadSeconds = 30.0
    /// Wall seconds a workload may be without any instance before the fleet launches a new one
    /// (an Auto Scaling group's replacement).
    public var replaceSeconds = 15.0
    public var bootSeconds = 1.0
    public var imageSeconds = 3.0
    /// Stop after this many simulated hours and write the report (nil: run until stopped).
    public var simHours: Double?
    /// Days of history sent before the live fleet starts (0: none; at most 7, the oldest report
    /// SpotGuard accepts).
    public var historyDays = 0.0
    public var reportFile: String?
    /// The agent's loop periods on the simulated instances.
    public var agentHeartbeatSeconds = 10.0
    public var agentPriceSeconds = 5.0
    public var agentSyncSeconds = 3.0
    public var agentLongPollSeconds = 20
    public var agentLogLevel = "notice"
    /// `spotguard-agent`; default: next to `spotguard-sim`.
    public var agentBinary: String
    /// Signs the instances' identity documents (`--identity-key`, `--identity-certificate`: PEM
    /// files; the stack's own, which its ingest trusts): the fleet's agents then enroll, and
    /// no token goes into user data. Without it, user data carries the client's token.
    public var identitySigner: IdentitySigner?
    /// Static credentials for callers other than the instances (the instances use their
    /// instance profile from IMDS).
    public var accessKeyId = "spotguard-sim"
    public var secretAccessKey = "spotguard-sim-secret"

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// - Parameter options: the command line's options by long name (`hour-seconds`), already
    ///   parsed; each falls back to its environment variable.
    public init(options: [String: String], env: [String: String] = ProcessInfo.processInfo.environment, executable: String = CommandLine.arguments[0]) throws {
        func value(_ name: String) -> String? {
            options[name] ?? env["SPOTGUARD_SIM_" + name.uppercased().replacingOccurrences(of: "-", with: "_")]
        }
        func number(_ name: String, _ range: ClosedRange<Double>) throws -> Double? {
            guard let raw = value(name) else { return nil }
            guard let n = Double(raw), range.contains(n) else {
                throw Invalid(description: "--\(name) must be a number in \(range.lowerBound)…\(range.upperBound)")
            }
            return n
        }
        guard let ingestText = value("ingest") ?? env["SPOTGUARD_INGEST_URL"], let ingest = URL(string: ingestText) else {
            throw Invalid(description: "--ingest (or SPOTGUARD_INGEST_URL) is required")
        }
        guard let admin = value("admin-token") ?? env["SPOTGUARD_ADMIN_TOKEN"] else {
            throw Invalid(description: "--admin-token (or SPOTGUARD_ADMIN_TOKEN) is required to create the fleet's client")
        }
        self.ingest = ingest
        adminToken = admin
        let stackDir = env["SPOTGUARD_STACK_DIR"].map { URL(fileURLWithPath: $0).appendingPathComponent("sim") }
        directory = URL(fileURLWithPath: value("dir") ?? stackDir?.path ?? ".spotguard/sim")
        agentBinary = value("agent-binary") ?? URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("spotguard-agent").path
        host = value("host") ?? host
        port = Int(try number("port", 0...65535) ?? 0)
        if let s = value("seed") {
            guard let n = UInt64(s) else { throw Invalid(description: "--seed must be a whole number") }
            seed = n
        }
        region = value("region") ?? region
        pricesFile = value("prices")
        onDemandFile = value("on-demand")
        advisorFile = value("advisor")
        hourSeconds = try number("hour-seconds", 0.05...3600) ?? hourSeconds
        agents = Int(try number("agents", 0...500) ?? Double(agents))
        types = value("types").map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } } ?? []
        manualShare = try number("manual-share", 0...1) ?? manualShare
        interruptionScale = try number("interruption-scale", 0...100_000) ?? interruptionScale
        sparedWorkloads = Set((value("spare") ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
        rebalanceShare = try number("rebalance-share", 0...1) ?? rebalanceShare
        capacityShortage = try number("capacity-shortage", 0...1) ?? capacityShortage
        noticeSeconds = try number("notice-seconds", 1...3600) ?? noticeSeconds
        rebalanceLeadSeconds = try number("rebalance-lead-seconds", 0...3600) ?? rebalanceLeadSeconds
        replaceSeconds = try number("replace-seconds", 0...3600) ?? replaceSeconds
        bootSeconds = try number("boot-seconds", 0...600) ?? bootSeconds
        imageSeconds = try number("image-seconds", 0...3600) ?? imageSeconds
        simHours = try number("sim-hours", 0.01...1_000_000)
        reportFile = value("report")
        historyDays = try number("history-days", 0...7) ?? historyDays
        agentHeartbeatSeconds = try number("agent-heartbeat-seconds", 0.1...3600) ?? agentHeartbeatSeconds
        agentPriceSeconds = try number("agent-price-seconds", 0.1...3600) ?? agentPriceSeconds
        agentSyncSeconds = try number("agent-sync-seconds", 0.1...3600) ?? agentSyncSeconds
        agentLongPollSeconds = Int(try number("agent-long-poll-seconds", 0...25) ?? Double(agentLongPollSeconds))
        agentLogLevel = value("agent-log-level") ?? agentLogLevel
        if let key = value("identity-key"), let certificate = value("identity-certificate"), !key.isEmpty, !certificate.isEmpty {
            do {
                identitySigner = try IdentitySigner(
                    keyPEM: try String(contentsOfFile: key, encoding: .utf8), certificatePEM: try String(contentsOfFile: certificate, encoding: .utf8))
            } catch {
                throw Invalid(description: "--identity-key and --identity-certificate must name a PEM RSA key and its certificate (\(error))")
            }
        }
    }
}
