import Foundation
import IMDSMock
import SpotCloud
import SpotMarket
import SpotStore
import ToolSupport

/// State shipping with real `spotguard-agent` processes on moto's EC2 (docs/agent.md, State):
/// per size, a primary holding a state directory of that size (8 MiB files of random bytes),
/// shipping every `period` seconds into SpotGuard's store, and a manual replica's agent syncing
/// every second. Measured: the first version (agent start → version stored), a full restore on
/// the fresh replica (its agent start → it reports holding that version), then `rounds` times a
/// change of 1 % of the state (one contiguous stretch in one file) → the version holding it
/// stored (includes waiting for the next period; the agent's own work per version is read from
/// its log) → the replica holding it (the sync lag the coordinator sees, from the version's
/// creation); and the agents' peak RSS.
enum StateShippingBench {
    struct Figures: Sendable {
        var firstShipMs = 0.0
        var restoreMs = 0.0
        var shipMs: [Double] = []
        var syncLagMs: [Double] = []
        /// The primary agent's own time per changed version (hook, read and hash, send, commit).
        var shipWorkMs: [Double] = []
        var primaryPeakMiB = 0.0
        var replicaPeakMiB = 0.0
    }

    static func run(ingest: String, token: String, sizes: [Int], period: Int, rounds: Int, store: PostgresStore, moto: URL, logs: URL) async throws {
        try await FailoverBench.pricedPools(store)
        let ec2 = EC2Client(region: "us-east-1", endpoint: moto, credentials: StaticCredentials(AWSCredentials(accessKeyId: "bench", secretAccessKey: "bench")))
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("spotguard-agent").path
        let run = UUID().uuidString.prefix(8).lowercased()
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        var out: [String] = []
        for mib in sizes {
            let work = FileManager.default.temporaryDirectory.appendingPathComponent("bench-state-\(run)-\(mib)")
            defer { try? FileManager.default.removeItem(at: work) }
            let f = try await measure(
                mib: mib, period: period, rounds: rounds, logical: "state-\(run)-\(mib)", work: work, binary: binary, ingest: ingest, token: token,
                ec2: ec2, store: store, moto: moto, logs: logs)
            func pct(_ values: [Double], _ p: Double) -> String { String(format: "%.0f", AgentFailoverBench.percentile(values, p)) }
            let name = "state_\(mib)mib"
            out += [
                "\(name)_first_ship_ms=\(String(format: "%.0f", f.firstShipMs))", "\(name)_restore_ms=\(String(format: "%.0f", f.restoreMs))",
                "\(name)_ship_p50_ms=\(pct(f.shipMs, 0.5))", "\(name)_ship_max_ms=\(pct(f.shipMs, 1))",
                "\(name)_ship_work_p50_ms=\(pct(f.shipWorkMs, 0.5))", "\(name)_ship_work_max_ms=\(pct(f.shipWorkMs, 1))",
                "\(name)_sync_lag_p50_ms=\(pct(f.syncLagMs, 0.5))", "\(name)_sync_lag_max_ms=\(pct(f.syncLagMs, 1))",
                "\(name)_primary_rss_mib=\(String(format: "%.0f", f.primaryPeakMiB))", "\(name)_replica_rss_mib=\(String(format: "%.0f", f.replicaPeakMiB))",
            ]
        }
        print((out + ["state_period_s=\(period)", "state_rounds=\(rounds)"]).joined(separator: " "))
    }

    static func measure(
        mib: Int, period: Int, rounds: Int, logical: String, work: URL, binary: String, ingest: String, token: String, ec2: EC2Client,
        store: PostgresStore, moto: URL, logs: URL
    ) async throws -> Figures {
        let (primaryDir, replicaDir) = (work.appendingPathComponent("primary"), work.appendingPathComponent("replica"))
        try FileManager.default.createDirectory(at: primaryDir, withIntermediateDirectories: true)
        // fast enough for 500 MiB, and no two chunks alike
        var generator = SplitMix64(seed: UInt64.random(in: 0...UInt64.max))
        func random(_ n: Int) -> Data {
            var data = Data(count: n)
            data.withUnsafeMutableBytes { raw in
                for i in stride(from: 0, to: n, by: 8) { withUnsafeBytes(of: generator.next()) { raw[i..<min(n, i + 8)].copyBytes(from: $0.prefix(n - i)) } }
            }
            return data
        }
        let fileMiB = 8
        let files = (mib + fileMiB - 1) / fileMiB
        for i in 0..<files { try random(min(fileMiB, mib - i * fileMiB) << 20).write(to: primaryDir.appendingPathComponent("part-\(i)")) }

        let primary = try await ec2.runInstances(
            RunInstancesRequest(imageId: "ami-12c6146b", instanceType: "t3.medium", market: .spot, availabilityZone: "us-east-1a")
        ).id
        let http = FailoverBench.HTTP(base: ingest, token: token)
        let registered = try await http.expect(
            201, "POST", "/api/agents/register",
            #"{"logical_agent_id": "\#(logical)", "instance_id": "\#(primary)", "pool_id": "t3.medium.us-east-1a", "mode": "spot"}"#)
        guard let agent = (registered["agent_id"] as? String)?.lowercased() else { throw FailoverBench.BenchFailure("\(logical): no agent id") }
        _ = try await http.expect(200, "POST", "/api/agents/\(agent)/config", #"{"auto_switch_enabled": false}"#)
        let base = [
            "SPOTGUARD_AGENT_SERVER": ingest, "SPOTGUARD_AGENT_TOKEN": token, "SPOTGUARD_AGENT_LOGICAL_AGENT_ID": logical,
            "SPOTGUARD_AGENT_PRICE_SECONDS": "3600", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto.absoluteString,
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "SPOTGUARD_LOG_LEVEL": "info",
        ]
        func newest() async throws -> (Int64, Date)? {
            guard
                let row = try await AgentRecoveryBench.row(
                    store, "SELECT version, created_at FROM state_versions WHERE agent_id = $1::uuid ORDER BY version DESC LIMIT 1", [agent])
            else { return nil }
            return (try row.decode(Int64.self, at: 0), try row.decode(Date.self, at: 1))
        }
        var figures = Figures()
        let primaryIMDS = IMDSMock(identity: .init(instanceId: primary, instanceType: "t3.medium", availabilityZone: "us-east-1a"))
        return try await primaryIMDS.serving { primaryURL -> Figures in
            let started = Date()
            let shipper = try AgentFailoverBench.start(
                binary, log: logs.appendingPathComponent("\(logical)-primary.log"),
                base.merging([
                    "AWS_EC2_METADATA_SERVICE_ENDPOINT": primaryURL.absoluteString, "SPOTGUARD_AGENT_STATE_PATH": primaryDir.path,
                    "SPOTGUARD_AGENT_STATE_SECONDS": String(period),
                ]) { $1 })
            return try await stopping(shipper) {
                let first = try await AgentRecoveryBench.poll("\(logical): no first version", within: 600) { try await newest() }
                figures.firstShipMs = first.1.timeIntervalSince(started) * 1000

                // a manual replica, launched by the primary's agent in moto
                let created = try await http.expect(201, "POST", "/api/agents/\(agent)/replicas", #"{"created_by": "bench"}"#)
                guard let replicaId = (created["replica_id"] as? String)?.lowercased() else {
                    throw FailoverBench.BenchFailure("\(logical): no replica id in \(created)")
                }
                let instance = try await AgentRecoveryBench.poll("\(logical): replica never launched", within: 60) {
                    try await AgentRecoveryBench.row(
                        store, "SELECT instance_id, az FROM replica_instances WHERE id = $1::uuid AND instance_id IS NOT NULL", [replicaId]
                    )
                    .map { (try $0.decode(String.self, at: 0), try $0.decode(String.self, at: 1)) }
                }
                let replicaIMDS = IMDSMock(identity: .init(instanceId: instance.0, instanceType: "t3.medium", availabilityZone: instance.1))
                return try await replicaIMDS.serving { replicaURL -> Figures in
                    let replicaStarted = Date()
                    let replica = try AgentFailoverBench.start(
                        binary, log: logs.appendingPathComponent("\(logical)-replica.log"),
                        base.merging([
                            "AWS_EC2_METADATA_SERVICE_ENDPOINT": replicaURL.absoluteString, "SPOTGUARD_AGENT_REPLICA_ID": replicaId,
                            "SPOTGUARD_AGENT_AGENT_ID": agent, "SPOTGUARD_AGENT_REPLICA_TYPE": "manual", "SPOTGUARD_AGENT_SYNC_SECONDS": "1",
                            "SPOTGUARD_AGENT_STATE_PATH": replicaDir.path,
                            "SPOTGUARD_AGENT_STATE_CACHE_DIR": work.appendingPathComponent("cache").path,
                        ]) { $1 })
                    return try await stopping(replica) {
                        func held(_ version: Int64) async throws -> Date {
                            try await AgentRecoveryBench.poll("\(logical): the replica never held version \(version)", within: 600) {
                                try await AgentRecoveryBench.row(
                                    store, "SELECT last_sync_at FROM replica_instances WHERE id = $1::uuid AND state_version >= $2", [replicaId, version]
                                )?.decode(Date.self, at: 0)
                            }
                        }
                        let current = try await newest()!
                        figures.restoreMs = try await held(current.0).timeIntervalSince(replicaStarted) * 1000
                        for round in 0..<rounds {
                            let before = try await newest()!.0
                            // 1 % of the state, one contiguous stretch at a random place in one file
                            let file = primaryDir.appendingPathComponent("part-\(round % files)")
                            var content = try Data(contentsOf: file)
                            let stretch = max(1, mib << 20 / 100)
                            let at = Int.random(in: 0...max(0, content.count - stretch))
                            content.replaceSubrange(at..<min(content.count, at + stretch), with: random(min(stretch, content.count - at)))
                            let changed = Date()
                            try content.write(to: file, options: .atomic)
                            let version = try await AgentRecoveryBench.poll("\(logical): the change made no version", within: 600) {
                                try await newest().flatMap { $0.0 > before ? $0 : nil }
                            }
                            figures.shipMs.append(version.1.timeIntervalSince(changed) * 1000)
                            figures.syncLagMs.append(try await held(version.0).timeIntervalSince(version.1) * 1000)
                        }
                        figures.shipWorkMs = shippedMs(logs.appendingPathComponent("\(logical)-primary.log")).dropFirst().map { $0 }
                        figures.primaryPeakMiB = peakMiB(shipper.pid)
                        figures.replicaPeakMiB = peakMiB(replica.pid)
                        return figures
                    }
                }
            }
        }
    }

    /// `body`, then the agent stopped whatever happened.
    static func stopping<T: Sendable>(_ process: ChildProcess, _ body: () async throws -> T) async throws -> T {
        do {
            let value = try await body()
            await AgentFailoverBench.stop(process)
            return value
        } catch {
            await AgentFailoverBench.stop(process)
            throw error
        }
    }

    /// The `ms` of each "state version shipped" line of an agent's log, in order.
    static func shippedMs(_ log: URL) -> [Double] {
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").filter { $0.contains("state version shipped") }.compactMap { line in
            line.split(separator: " ").first { $0.hasPrefix("ms=") }.flatMap { Double($0.dropFirst(3)) }
        }
    }

    /// A process's peak resident set (VmHWM), MiB.
    static func peakMiB(_ pid: pid_t) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kib = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return 0 }
        return kib / 1024
    }
}
