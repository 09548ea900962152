import Foundation
import IMDSMock
import SpotCloud
import SpotStore
import ToolSupport

/// Recovery without a replica (seed row "recovery without replica"): IMDS notice → a new
/// primary serving, with real `spotguard-agent` processes on moto's EC2. Per notice, a primary
/// instance holding an Elastic IP and a 64 KiB state file, and no replica. Once the notice is
/// armed the dying agent reports it, the coordinator has it launch an `automatic-termination`
/// replica (an equivalent of the primary) and take an image, and the agent ships its state.
/// moto's instance "boots" at once; on AWS the boot (30–60 s to a running agent) comes between
/// the launch and the new agent's start: the bench starts the new instance's agent when moto
/// shows it and reports both halves apart, so the AWS boot time can be added to them. Measured
/// after the notice: the replica's instance launched, its state uploaded, and after the new
/// agent started: ready, promoted (failover committed) and the Elastic IP on it (read back
/// from moto). 4 notices at a time; the agents have auto-switch off.
enum AgentRecoveryBench {
    struct Timing: Sendable {
        /// notice → the recovery instance launched (its id on the replica row)
        var launched = 0.0
        /// notice → the primary's state version stored
        var stateSent = 0.0
        /// new agent started → replica ready, → failover committed, → Elastic IP on it
        var ready = 0.0
        var committed = 0.0
        var moved = 0.0
    }

    static func run(ingest: String, token: String, notices count: Int, store: PostgresStore, moto: URL, logs: URL) async throws {
        try await FailoverBench.pricedPools(store)
        let ec2 = EC2Client(region: "us-east-1", endpoint: moto, credentials: StaticCredentials(AWSCredentials(accessKeyId: "bench", secretAccessKey: "bench")))
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("spotguard-agent").path
        let run = UUID().uuidString.prefix(8).lowercased()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("bench-recovery-\(run)")
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let timings = try await FailoverBench.concurrently(Array(0..<count), width: 4) { i -> Timing in
            let logical = "agent-recovery-\(run)-\(i)"
            let primary = try await ec2.runInstances(
                RunInstancesRequest(imageId: "ami-12c6146b", instanceType: "t3.medium", market: .spot, availabilityZone: "us-east-1a")
            ).id
            guard let allocation = try await ec2.call("AllocateAddress", [("Domain", "vpc")]).value("allocationId") else {
                throw FailoverBench.BenchFailure("moto allocated no Elastic IP")
            }
            _ = try await ec2.associateAddress(allocationId: allocation, instanceId: primary)
            let state = work.appendingPathComponent("\(logical).state")
            try Data((0..<65_536).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(to: state)
            let base = [
                "SPOTGUARD_AGENT_SERVER": ingest, "SPOTGUARD_AGENT_TOKEN": token, "SPOTGUARD_AGENT_LOGICAL_AGENT_ID": logical,
                "SPOTGUARD_AGENT_PRICE_SECONDS": "3600", "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto.absoluteString,
                "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "SPOTGUARD_LOG_LEVEL": "info",
            ]
            // registered first with auto-switch off: the decision engine of a full bench stack would
            // otherwise switch the new agent at once, and a notice during that switch is answered
            // by the switch (its new instance takes the traffic), not by a recovery
            let http = FailoverBench.HTTP(base: ingest, token: token)
            let registered = try await http.expect(
                201, "POST", "/api/agents/register",
                #"{"logical_agent_id": "\#(logical)", "instance_id": "\#(primary)", "pool_id": "t3.medium.us-east-1a", "mode": "spot"}"#)
            guard let agentId = registered["agent_id"] as? String else { throw FailoverBench.BenchFailure("registration of \(logical) named no agent") }
            _ = try await http.expect(200, "POST", "/api/agents/\(agentId.lowercased())/config", #"{"auto_switch_enabled": false}"#)
            let primaryIMDS = IMDSMock(identity: .init(instanceId: primary, instanceType: "t3.medium", availabilityZone: "us-east-1a"))
            let primaryLog = logs.appendingPathComponent("\(logical)-primary.log")
            return try await primaryIMDS.serving { primaryURL -> Timing in
                let agent = try AgentFailoverBench.start(
                    binary, log: primaryLog,
                    base.merging([
                        "AWS_EC2_METADATA_SERVICE_ENDPOINT": primaryURL.absoluteString, "SPOTGUARD_AGENT_STATE_FILE": state.path,
                        // shipped on the notice only: the version the bench times is the notice's
                        "SPOTGUARD_AGENT_STATE_SECONDS": "0",
                        "SPOTGUARD_AGENT_TRAFFIC": #"{"elastic_ips": [{"allocation_id": "\#(allocation)"}]}"#,
                    ]) { $1 })
                do {
                    let launch = try await launched(logical: logical, imds: primaryIMDS, store: store)
                    // the new instance's agent, as its user data starts it once booted
                    let described = try await ec2.describeInstances(ids: [launch.replica]).first
                    let replicaIMDS = IMDSMock(
                        identity: .init(
                            instanceId: launch.replica, instanceType: described?.instanceType ?? "t3.medium",
                            availabilityZone: described?.availabilityZone ?? "us-east-1b"))
                    let timing = try await replicaIMDS.serving { url -> Timing in
                        let process = try AgentFailoverBench.start(
                            binary, log: logs.appendingPathComponent("\(logical)-recovery.log"),
                            base.merging([
                                "AWS_EC2_METADATA_SERVICE_ENDPOINT": url.absoluteString, "SPOTGUARD_AGENT_REPLICA_ID": launch.replicaId,
                                "SPOTGUARD_AGENT_AGENT_ID": launch.agentId, "SPOTGUARD_AGENT_REPLICA_TYPE": "automatic-termination",
                                "SPOTGUARD_AGENT_STATE_FILE": work.appendingPathComponent("\(logical).restored").path,
                            ]) { $1 })
                        do {
                            let timing = try await served(launch, primary: primary, allocation: allocation, ec2: ec2, store: store)
                            await AgentFailoverBench.stop(process)
                            return timing
                        } catch {
                            await AgentFailoverBench.stop(process)
                            throw error
                        }
                    }
                    await AgentFailoverBench.stop(agent)
                    return timing
                } catch {
                    await AgentFailoverBench.stop(agent)
                    throw error
                }
            }
        }
        func pct(_ values: [Double], _ p: Double) -> String { String(format: "%.0f", AgentFailoverBench.percentile(values, p)) }
        func figure(_ name: String, _ values: [Double]) -> String { "\(name)_p50_ms=\(pct(values, 0.5)) \(name)_p99_ms=\(pct(values, 0.99))" }
        print(
            figure("recovery_launched", timings.map(\.launched)), figure("recovery_state", timings.map(\.stateSent)),
            figure("recovery_ready", timings.map(\.ready)), figure("recovery_committed", timings.map(\.committed)),
            figure("recovery_moved", timings.map(\.moved)), "recovery_count=\(timings.count)")
    }

    /// A notice's first half: armed once the primary's agent registered with its traffic, until
    /// the recovery instance is launched.
    struct Launch: Sendable {
        var logical, agentId, replicaId, replica: String
        var armed: Date
        var launchedMs: Double
    }

    static func poll<T>(_ what: String, within seconds: Double = 30, _ probe: () async throws -> T?) async throws -> T {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let found = try await probe() { return found }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw FailoverBench.BenchFailure("\(what) within \(Int(seconds)) s")
    }

    static func row(_ store: PostgresStore, _ sql: String, _ parameters: [(any PGEncodable)?]) async throws -> PGRow? {
        try await store.withConnection { try $0.query(sql, parameters).first }
    }

    static func launched(logical: String, imds: IMDSMock, store: PostgresStore) async throws -> Launch {
        let agentId = try await poll("\(logical): no registration with traffic") {
            try await row(
                store,
                "SELECT a.id::text FROM agents a JOIN agent_traffic t ON t.agent_id = a.id WHERE a.logical_agent_id = $1 AND a.agent_version IS NOT NULL",
                [logical])?.decode(String.self, at: 0)
        }
        let armed = Date()
        imds.armInterruption()
        let (replicaId, replica) = try await poll("\(logical): no recovery instance launched") {
            try await row(
                store,
                """
                SELECT id::text, instance_id FROM replica_instances
                 WHERE agent_id = $1::uuid AND replica_type = 'automatic-termination' AND instance_id IS NOT NULL
                """, [agentId]
            ).map { (try $0.decode(String.self, at: 0), try $0.decode(String.self, at: 1)) }
        }
        return Launch(
            logical: logical, agentId: agentId, replicaId: replicaId, replica: replica, armed: armed, launchedMs: Date().timeIntervalSince(armed) * 1000)
    }

    /// The second half, from the new instance's agent started: the state uploaded (after the
    /// notice), then ready, committed and the Elastic IP on the new instance (after the start).
    static func served(_ launch: Launch, primary: String, allocation: String, ec2: EC2Client, store: PostgresStore) async throws -> Timing {
        let started = Date()
        var timing = Timing(launched: launch.launchedMs)
        timing.stateSent =
            try await poll("\(launch.logical): no state uploaded") {
                try await row(
                    store, "SELECT created_at FROM state_versions WHERE agent_id = $1::uuid AND created_at >= $2 ORDER BY version LIMIT 1",
                    [launch.agentId, launch.armed])?
                    .decode(Date.self, at: 0)
            }.timeIntervalSince(launch.armed) * 1000
        timing.ready =
            try await poll("\(launch.logical): the recovery replica never ready") {
                try await row(store, "SELECT ready_at FROM replica_instances WHERE id = $1::uuid AND ready_at IS NOT NULL", [launch.replicaId])?
                    .decode(Date.self, at: 0)
            }.timeIntervalSince(started) * 1000
        timing.committed =
            try await poll("\(launch.logical): no failover committed") {
                try await row(
                    store,
                    """
                    SELECT failover_completed_at FROM spot_interruption_events
                     WHERE agent_id = $1::uuid AND instance_id = $2 AND signal_type = 'termination-notice' AND failover_completed
                    """, [launch.agentId, primary])?.decode(Date.self, at: 0)
            }.timeIntervalSince(started) * 1000
        timing.moved = try await poll("\(launch.logical): the Elastic IP never moved") {
            let holder = try await ec2.call("DescribeAddresses", [("AllocationId.1", allocation)]).value("addressesSet", "item", "instanceId")
            return holder == launch.replica ? Date().timeIntervalSince(started) * 1000 : nil
        }
        return timing
    }
}
