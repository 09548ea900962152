import Foundation
import IMDSMock
import SpotCloud
import SpotStore
import Synchronization
import ToolSupport

/// IMDS notice → traffic moved, with real `spotguard-agent` processes on instances in moto's
/// EC2 (deploy/bench.sh starts a moto_server): per notice, a primary instance holding an Elastic
/// IP and a replica instance; the primary's agent watches its IMDS mock every second (its
/// default) and the replica's agent runs with the replica id, both logging at `info` into
/// `logs/agents/`. Once the replica's agent reported its sync, the notice is armed; measured:
/// until the coordinator committed the promotion (`failover_completed_at`) and until moto's
/// `DescribeAddresses` shows the Elastic IP on the replica's instance (the replica's agent moved
/// it on `promote`). 4 notices at a time. A notice slower than 1.5 s to move the traffic gets its
/// agents' log lines printed to stderr, so the time can be placed.
enum AgentFailoverBench {
    /// Milliseconds after the notice was armed in IMDS: the server received the agent's
    /// termination-imminent (`detected_at`), the promotion was committed, the replica's agent
    /// collected its `promote`, reported it done (traffic moved), and moto showed the Elastic IP
    /// on the replica's instance (the bench polls every 10 ms).
    struct Timing: Sendable {
        var received = 0.0
        var committed = 0.0
        var delivered = 0.0
        var reported = 0.0
        var moved = 0.0
    }

    static func run(ingest: String, token: String, agents count: Int, store: PostgresStore, moto: URL, logs: URL) async throws {
        let http = FailoverBench.HTTP(base: ingest, token: token)
        // the replicas' pools have current prices (as in the failover step), so this step runs on its own too
        try await FailoverBench.pricedPools(store)
        let ec2 = EC2Client(region: "us-east-1", endpoint: moto, credentials: StaticCredentials(AWSCredentials(accessKeyId: "bench", secretAccessKey: "bench")))
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("spotguard-agent").path
        let run = UUID().uuidString.prefix(8).lowercased()
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        let timings = try await FailoverBench.concurrently(Array(0..<count), width: 4) { i -> Timing in
            let logical = "agent-failover-\(run)-\(i)"
            let primary = try await ec2.runInstances(
                RunInstancesRequest(imageId: "ami-12c6146b", instanceType: "t3.medium", market: .spot, availabilityZone: "us-east-1a")
            ).id
            let replica = try await ec2.runInstances(
                RunInstancesRequest(imageId: "ami-12c6146b", instanceType: "t3.medium", market: .spot, availabilityZone: "us-east-1b")
            ).id
            guard let allocation = try await ec2.call("AllocateAddress", [("Domain", "vpc")]).value("allocationId") else {
                throw FailoverBench.BenchFailure("moto allocated no Elastic IP")
            }
            _ = try await ec2.associateAddress(allocationId: allocation, instanceId: primary)
            let agent = try await FailoverBench.readyAgent(http, logical: logical, instance: primary, replicaInstance: replica)
            _ = try await http.expect(200, "PUT", "/api/agents/\(agent.id)/traffic", #"{"elastic_ips": [{"allocation_id": "\#(allocation)"}]}"#)
            let primaryIMDS = IMDSMock(identity: .init(instanceId: primary, instanceType: "t3.medium", availabilityZone: "us-east-1a"))
            let replicaIMDS = IMDSMock(identity: .init(instanceId: replica, instanceType: "t3.medium", availabilityZone: "us-east-1b"))
            return try await primaryIMDS.serving { primaryURL -> Timing in
                try await replicaIMDS.serving { replicaURL -> Timing in
                    let started = Date()
                    let base = [
                        "SPOTGUARD_AGENT_SERVER": ingest, "SPOTGUARD_AGENT_TOKEN": token, "SPOTGUARD_AGENT_LOGICAL_AGENT_ID": logical,
                        "SPOTGUARD_AGENT_PRICE_SECONDS": "3600", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto.absoluteString,
                        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "SPOTGUARD_LOG_LEVEL": "info",
                    ]
                    let primaryLog = logs.appendingPathComponent("\(logical)-primary.log")
                    let replicaLog = logs.appendingPathComponent("\(logical)-replica.log")
                    let processes = try [
                        start(binary, log: primaryLog, base.merging(["AWS_EC2_METADATA_SERVICE_ENDPOINT": primaryURL.absoluteString]) { $1 }),
                        start(
                            binary, log: replicaLog,
                            base.merging([
                                "AWS_EC2_METADATA_SERVICE_ENDPOINT": replicaURL.absoluteString, "SPOTGUARD_AGENT_REPLICA_ID": agent.replicaId,
                                "SPOTGUARD_AGENT_AGENT_ID": agent.id,
                            ]) { $1 }),
                    ]
                    let timing: Timing
                    do {
                        timing = try await measure(
                            agent: agent, allocation: allocation, since: started, imds: primaryIMDS, ec2: ec2, store: store)
                    } catch {
                        for p in processes { await stop(p) }
                        throw error
                    }
                    for p in processes { await stop(p) }
                    if timing.moved > 1500 || timing.committed > 1500 {
                        report(logical: logical, timing: timing, logs: [primaryLog, replicaLog])
                    }
                    return timing
                }
            }
        }
        func pct(_ values: [Double], _ p: Double) -> String { String(format: "%.1f", percentile(values, p)) }
        let committed = timings.map(\.committed)
        let moved = timings.map(\.moved)
        // where the time goes: each phase's own duration, p50/p99
        let phases = [
            ("seen", timings.map(\.received)), ("commit", timings.map { $0.committed - $0.received }),
            ("deliver", timings.map { $0.delivered - $0.committed }), ("move", timings.map { $0.reported - $0.delivered }),
        ].map { "\($0.0):\(pct($0.1, 0.5))/\(pct($0.1, 0.99))" }
        print(
            "agent_notice_p50_ms=\(pct(committed, 0.5)) agent_notice_p99_ms=\(pct(committed, 0.99)) agent_notice_max_ms=\(pct(committed, 1))",
            "agent_traffic_p50_ms=\(pct(moved, 0.5)) agent_traffic_p99_ms=\(pct(moved, 0.99)) agent_traffic_max_ms=\(pct(moved, 1))",
            "agent_phases_ms=\(phases.joined(separator: ","))",
            "agent_notice_count=\(timings.count) agent_bench_retries=\(FailoverBench.HTTP.retries.load(ordering: .relaxed))")
    }

    /// The nearest-rank `p` percentile of `values` (not empty).
    static func percentile(_ values: [Double], _ p: Double) -> Double {
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
    }

    static func start(_ binary: String, log: URL, _ settings: [String: String]) throws -> ChildProcess {
        let spool = FileManager.default.temporaryDirectory.appendingPathComponent("bench-spool-\(UUID())").path
        let environment = ProcessInfo.processInfo.environment.merging(settings.merging(["SPOTGUARD_AGENT_SPOOL_DIR": spool]) { $1 }) { $1 }
        return try ChildProcess(binary, ["run"], environment: environment, output: log.path, errors: true)
    }

    /// SIGTERM, then up to 30 s for a clean exit (the agent finishes its long-poll), then SIGKILL;
    /// waits without blocking a thread, so the other agents' IMDS mocks keep answering.
    static func stop(_ process: ChildProcess) async {
        process.signal(SIGTERM)
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                _ = await process.exitStatus()
                return true
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(30))
                return false
            }
            if await group.next() == false { process.signal(SIGKILL) }
            group.cancelAll()
        }
    }

    static func measure(
        agent: FailoverBench.Agent, allocation: String, since started: Date, imds: IMDSMock, ec2: EC2Client, store: PostgresStore
    ) async throws -> Timing {
        // the primary's agent registered (its version is on the agent row) and the replica's
        // agent made its replica ready again (its first report says it is syncing): both watch
        // their command polls
        let ready = Date().addingTimeInterval(30)
        while try await count(
            store,
            """
            SELECT count(*) FROM agents a JOIN replica_instances r ON r.agent_id = a.id
             WHERE a.id = $1::uuid AND a.agent_version IS NOT NULL AND r.id = $2::uuid AND r.status = 'ready' AND r.last_sync_at > $3
            """, [agent.id, agent.replicaId, started]) == 0
        {
            guard Date() < ready else { throw FailoverBench.BenchFailure("the agents of \(agent.id) did not start") }
            try await Task.sleep(for: .milliseconds(20))
        }
        let armed = Date()
        imds.armInterruption()
        let deadline = armed.addingTimeInterval(30)
        var committed: Double?
        var moved: Double?
        while Date() < deadline {
            if committed == nil {
                let rows = try await store.withConnection { conn in
                    try conn.query(
                        """
                        SELECT failover_completed_at FROM spot_interruption_events
                         WHERE agent_id = $1::uuid AND instance_id = $2 AND signal_type = 'termination-notice' AND failover_completed
                        """, [agent.id, agent.instance])
                }
                if let done = try rows.first?.decode(Date.self, at: 0) { committed = done.timeIntervalSince(armed) * 1000 }
            }
            if moved == nil {
                let holder = try await ec2.call("DescribeAddresses", [("AllocationId.1", allocation)]).value("addressesSet", "item", "instanceId")
                if holder == agent.replicaInstance { moved = Date().timeIntervalSince(armed) * 1000 }
            }
            if let committed, let moved {
                var timing = Timing(committed: committed, moved: moved)
                // the agent reports its promote done just after moving the Elastic IP: wait for it
                var row: PGRow?
                while row == nil, Date() < deadline {
                    row = try await store.withConnection { conn in
                        try conn.query(
                            """
                            SELECT e.detected_at, c.delivered_at, c.completed_at FROM spot_interruption_events e
                              JOIN commands c ON c.agent_id = e.agent_id AND c.command_type = 'promote' AND c.created_at >= e.detected_at
                             WHERE e.agent_id = $1::uuid AND e.instance_id = $2 AND e.signal_type = 'termination-notice'
                               AND c.completed_at IS NOT NULL
                            """, [agent.id, agent.instance])
                    }.first
                    if row == nil { try await Task.sleep(for: .milliseconds(10)) }
                }
                guard let row else { throw FailoverBench.BenchFailure("no promote command reported done for \(agent.id)") }
                func ms(_ i: Int) throws -> Double { try row.decodeIfPresent(Date.self, at: i).map { $0.timeIntervalSince(armed) * 1000 } ?? -1 }
                (timing.received, timing.delivered, timing.reported) = (try ms(0), try ms(1), try ms(2))
                return timing
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw FailoverBench.BenchFailure(
            "notice of \(agent.id): \(committed == nil ? "no failover" : "no traffic moved") within 30 s")
    }

    static func count(_ store: PostgresStore, _ sql: String, _ parameters: [(any PGEncodable)?]) async throws -> Int {
        try await store.withConnection { try $0.query(sql, parameters)[0].decode(Int.self, at: 0) }
    }

    /// A slow notice's agents' log lines, for placing its time.
    static func report(logical: String, timing: Timing, logs: [URL]) {
        var text = "[bench] \(logical): after the notice was armed (ms): \(timing)\n"
        for log in logs {
            let lines = ((try? String(contentsOf: log, encoding: .utf8)) ?? "").split(separator: "\n")
            text += "  \(log.lastPathComponent):\n" + lines.suffix(40).map { "    \($0)\n" }.joined()
        }
        FileHandle.standardError.write(Data(text.utf8))
    }
}
