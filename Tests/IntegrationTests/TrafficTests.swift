import Foundation
import IMDSMock
import SpotBus
import SpotCloud
import SpotModels
import SpotRuntime
import SpotStore
import Testing
import ToolSupport

extension IntegrationTests {
    /// Traffic that moves and an old primary that is fenced, on moto's EC2, ELBv2 and Route 53,
    /// checked from outside with boto3 (`Tests/Peers/traffic.py`).
    @Suite struct TrafficTests {
        func peer(_ harness: AgentHarness, _ arguments: [String]) async throws -> [String: Any] {
            let python = ProcessInfo.processInfo.environment["SPOTGUARD_TEST_PYTHON"] ?? "python3"
            let script = TestStack.repoRoot.appendingPathComponent("Tests/Peers/traffic.py").path
            let out = FileManager.default.temporaryDirectory.appendingPathComponent("traffic-\(UUID()).json").path
            defer { try? FileManager.default.removeItem(atPath: out) }
            let status = try await ChildProcess(python, [script, harness.moto.absoluteString] + arguments, output: out).exitStatus()
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            #expect(status == 0, "traffic.py \(arguments.first ?? ""): \(text)")
            return try #require((try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any], "\(text)")
        }

        /// A termination notice with a ready replica: the replica is promoted, its agent moves
        /// the Elastic IP, the target group membership and the DNS record to its instance (boto3
        /// sees them there), `failover.completed` carries the steps, and only then is the old
        /// primary fenced: its stop hook runs, the replica's does not.
        @Test func aFailoverMovesTheTrafficThenFencesTheOldPrimary() async throws {
            let store = try await TestStack.store()
            let harness = try AgentHarness()
            let primaryIMDS = try await harness.instance(zone: "us-east-1c")
            let primary = primaryIMDS.identity.instanceId
            let entry = try await peer(harness, ["setup", primary])
            let (allocation, group, zone, zoneName, record) = (
                try #require(entry["allocation_id"] as? String), try #require(entry["target_group_arn"] as? String),
                try #require(entry["zone_id"] as? String), try #require(entry["zone_name"] as? String), try #require(entry["record_name"] as? String)
            )
            let traffic = """
                {"elastic_ips": [{"allocation_id": "\(allocation)"}], "target_groups": [{"arn": "\(group)", "port": 8080}],
                 "dns_records": [{"zone_id": "\(zone)", "zone_name": "\(zoneName)", "name": "\(record)", "ttl": 30}]}
                """
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("agent-fence-\(UUID())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            func hook(_ name: String) -> String { "touch '\(dir.appendingPathComponent(name).path)'" }
            func stopped(_ name: String) -> Bool { FileManager.default.fileExists(atPath: dir.appendingPathComponent(name).path) }
            let aws = ["AWS_ENDPOINT_URL": harness.moto.absoluteString]
            let logical = TestStack.uniqueName("traffic")
            try await withInbox([RoutingKey.failoverCompleted, RoutingKey.failoverFailed]) { inbox in
                try await withReplicaStack(environment: ["SPOTGUARD_REPLICAS_RISK_THRESHOLD_PERCENT": "0"]) { ingest, _ in
                    try await withSEF {
                        let admin = try TestStack.env.require("SPOTGUARD_ADMIN_TOKEN")
                        let token = try #require(
                            try await ingest.send("POST", "/api/admin/clients", token: admin, json: #"{"name": "Traffic"}"#).json["token"] as? String)
                        try await primaryIMDS.serving { primaryURL in
                            try await harness.withAgent(
                                ingest: ingest, token: token, imds: primaryURL, logical: logical,
                                environment: aws.merging(["SPOTGUARD_AGENT_TRAFFIC": traffic, "SPOTGUARD_AGENT_STOP_COMMAND": hook("primary.stopped")]) { $1 }
                            ) {
                                // the agent's configured traffic reached the server at registration
                                #expect(
                                    try await TestStack.eventually {
                                        try await SEFQuery.count(
                                            store,
                                            """
                                            SELECT count(*) FROM agent_traffic t JOIN agents a ON a.id = t.agent_id
                                             WHERE a.logical_agent_id = $1 AND t.config->'elastic_ips'->0->>'allocation_id' = $2
                                            """, [logical, allocation]) == 1
                                    })
                                let agent = try #require(
                                    try await ReplicaQuery.one(store, "SELECT id::text FROM agents WHERE logical_agent_id = $1", [logical]).first ?? nil)
                                let refused = try await ingest.send(
                                    "PUT", "/api/agents/\(agent)/traffic", token: token,
                                    json: #"{"dns_records": [{"zone_id": "\#(zone)", "zone_name": "\#(zoneName)", "name": "app.example.org"}]}"#)
                                #expect(
                                    refused.status == 400 && refused.errorCode == "record_outside_zone",
                                    "\(refused.status) \(String(decoding: refused.body, as: UTF8.self))")
                                #expect(
                                    try await TestStack.eventually {
                                        try await SEFQuery.count(
                                            store,
                                            "SELECT count(*) FROM pricing_snapshots_clean WHERE pool_id LIKE 'm5.large.us-east-1%' AND time_bucket > now() - interval '1 hour'",
                                            []) > 0
                                    })
                                primaryIMDS.armRebalance()
                                #expect(
                                    try await TestStack.eventually(timeout: .seconds(20)) {
                                        try await SEFQuery.count(
                                            store, "SELECT count(*) FROM replica_instances WHERE agent_id = $1::uuid AND instance_id IS NOT NULL", [agent]) == 1
                                    })
                                let row = try await ReplicaQuery.one(
                                    store, "SELECT id::text, instance_id, az FROM replica_instances WHERE agent_id = $1::uuid", [agent])
                                let (replicaId, replica, replicaZone) = (try #require(row[0]), try #require(row[1]), try #require(row[2]))
                                let replicaIMDS = IMDSMock(identity: .init(instanceId: replica, instanceType: "m5.large", availabilityZone: replicaZone))
                                try await replicaIMDS.serving { (replicaURL: URL) async throws -> Void in
                                    try await harness.withAgent(
                                        ingest: ingest, token: token, imds: replicaURL, logical: logical,
                                        environment: aws.merging([
                                            "SPOTGUARD_AGENT_REPLICA_ID": replicaId, "SPOTGUARD_AGENT_AGENT_ID": agent, "SPOTGUARD_AGENT_SYNC_SECONDS": "0.3",
                                            "SPOTGUARD_AGENT_STOP_COMMAND": hook("replica.stopped"),
                                        ]) { $1 }
                                    ) { () async throws -> Void in
                                        #expect(
                                            try await TestStack.eventually(timeout: .seconds(20)) {
                                                try await ReplicaQuery.one(store, "SELECT status FROM replica_instances WHERE id = $1::uuid", [replicaId]) == [
                                                    "ready"
                                                ]
                                            })
                                        let before = try await peer(harness, ["check", allocation, group, zone, record])
                                        #expect(before["eip_instance"] as? String == primary)
                                        primaryIMDS.armInterruption()
                                        #expect(
                                            try await TestStack.eventually(timeout: .seconds(20)) {
                                                inbox.all.contains {
                                                    $0.routingKey == RoutingKey.failoverCompleted || $0.routingKey == RoutingKey.failoverFailed
                                                }
                                            }, "the failover completes once the traffic moved")
                                        let done = try #require(inbox.all.first { $0.routingKey == RoutingKey.failoverCompleted }, "failover.completed")
                                        let report = try done.decode(FailoverReport.self).payload
                                        #expect(report.newInstanceId == replica && report.oldInstanceId == primary)
                                        let steps = report.traffic?.steps ?? []
                                        #expect(
                                            steps.map(\.kind) == ["elastic_ip", "target_register", "dns_record", "target_deregister"]
                                                && steps.allSatisfy { $0.status == "done" }, "\(steps)")

                                        // from outside: every entry point sends traffic to the new primary
                                        let after = try await peer(harness, ["check", allocation, group, zone, record])
                                        let ips = after["private_ips"] as? [String: String] ?? [:]
                                        let targets = (after["targets"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
                                        #expect(after["eip_instance"] as? String == replica, "\(after)")
                                        #expect(targets.contains(replica) && !targets.contains(primary), "\(after)")
                                        #expect(after["record_values"] as? [String] == [ips[replica] ?? "-"], "\(after)")

                                        // then the old primary is fenced, and only it
                                        #expect(
                                            try await TestStack.eventually(timeout: .seconds(20)) {
                                                try await SEFQuery.count(
                                                    store,
                                                    """
                                                    SELECT count(*) FROM switches WHERE agent_id = $1::uuid AND old_instance_id = $2 AND new_instance_id = $3
                                                       AND fenced_at IS NOT NULL AND traffic IS NOT NULL
                                                    """, [agent, primary, replica]) == 1
                                            }, "the fence is recorded on the failover's switch row")
                                        #expect(stopped("primary.stopped") && !stopped("replica.stopped"))
                                    }
                                }
                            }
                        }
                    }
                }
            }
            await store.shutdown()
        }
    }
}
