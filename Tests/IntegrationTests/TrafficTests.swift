import Foundation
import IMDSMock
import SpotBus
import SpotCloud
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore
import Testing
import ToolSupport

extension IntegrationTests {
    /// Traffic that moves and an old primary that is fenced, on moto's EC2, ELBv2 and Route 53,
    /// from sources as a real fleet has them, checked from outside with boto3
    /// (`Tests/Peers/traffic.py`, `launch_equivalence.py`).
    @Suite struct TrafficTests {
        /// The agent's one replica, its instance served by its own IMDS mock, with a replica
        /// agent running on it for `body` (which gets the replica's instance id).
        func withReplicaAgent(
            _ harness: AgentHarness, _ store: PostgresStore, ingest: ServiceProcess, token: String, logical: String, agent: String,
            environment: [String: String], _ body: (String) async throws -> Void
        ) async throws {
            let row = try await ReplicaQuery.one(store, "SELECT id::text, instance_id, az FROM replica_instances WHERE agent_id = $1::uuid", [agent])
            let (replicaId, replica, replicaZone) = (try #require(row[0]), try #require(row[1]), try #require(row[2]))
            let replicaIMDS = IMDSMock(identity: .init(instanceId: replica, instanceType: "m5.large", availabilityZone: replicaZone))
            try await replicaIMDS.serving { (replicaURL: URL) async throws -> Void in
                try await harness.withAgent(
                    ingest: ingest, token: token, imds: replicaURL, logical: logical,
                    environment: [
                        "AWS_ENDPOINT_URL": harness.moto.absoluteString, "SPOTGUARD_AGENT_REPLICA_ID": replicaId, "SPOTGUARD_AGENT_AGENT_ID": agent,
                        "SPOTGUARD_AGENT_SYNC_SECONDS": "0.3",
                    ].merging(environment) { $1 }
                ) { try await body(replica) }
            }
        }

        /// A termination notice with a ready replica: the replica is promoted, its agent moves
        /// the Elastic IP, the target group membership and the DNS record to its instance (boto3
        /// sees them there), `failover.completed` carries the steps, and only then is the old
        /// primary fenced: its stop hook runs, the replica's does not.
        @Test func aFailoverMovesTheTrafficThenFencesTheOldPrimary() async throws {
            let store = try await TestStack.store()
            let harness = try AgentHarness()
            // a source launched from a launch template, as a real fleet has it
            let primaryIMDS = try await harness.fleetSource(template: true)
            let primary = primaryIMDS.identity.instanceId
            let entry = try await harness.entryPoints(for: primary)
            let (allocation, zone, zoneName, traffic) = (entry.allocation, entry.zone, entry.zoneName, entry.configuration)
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
                        let token = try await AgentHarness.client(ingest, "Traffic")
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
                                #expect(
                                    try await AgentHarness.rebalanceLaunchesAReplica(primaryIMDS, agent: agent, store),
                                    "the rebalance recommendation launches a replica")
                                try await withReplicaAgent(
                                    harness, store, ingest: ingest, token: token, logical: logical, agent: agent,
                                    environment: ["SPOTGUARD_AGENT_STOP_COMMAND": hook("replica.stopped")]
                                ) { replica in
                                    // the emergency replica is the source's equivalent: its template, network, profile, volumes, tags
                                    let replicaZone = try #require(try await harness.ec2.describeInstances(ids: [replica]).first?.availabilityZone)
                                    let differences = try await harness.differences(primary, replica, zone: replicaZone)
                                    #expect(differences.isEmpty, "\(differences)")
                                    #expect(
                                        try await TestStack.eventually(timeout: .seconds(20)) {
                                            try await ReplicaQuery.one(store, "SELECT status FROM replica_instances WHERE instance_id = $1", [replica]) == [
                                                "ready"
                                            ]
                                        })
                                    let before = try await harness.traffic(entry)
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
                                    let after = try await harness.traffic(entry)
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
            await store.shutdown()
        }

        /// Recovery without a ready replica: the notice launches an `automatic-termination`
        /// replica (the dying agent launches it in moto; its state is shipped) and takes an
        /// image; the replica's agent is ready at its first report (not a sync period later: it
        /// took 10 s more by default), is promoted at once, restores the state, takes the Elastic
        /// IP, and the failover completes; the old primary is fenced.
        @Test func aNoticeWithoutAReadyReplicaRecoversOnTheOneItLaunches() async throws {
            let store = try await TestStack.store()
            let harness = try AgentHarness()
            let primaryIMDS = try await harness.fleetSource()
            let primary = primaryIMDS.identity.instanceId
            let entry = try await harness.entryPoints(for: primary)
            let allocation = entry.allocation
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("agent-recovery-\(UUID())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let (primaryState, replicaState) = (dir.appendingPathComponent("primary.state").path, dir.appendingPathComponent("replica.state").path)
            let state = Data((0..<20_000).map { UInt8(truncatingIfNeeded: $0 &* 17) })
            try state.write(to: URL(fileURLWithPath: primaryState))
            let stopped = dir.appendingPathComponent("primary.stopped").path
            let logical = TestStack.uniqueName("recovery")
            let aws = ["AWS_ENDPOINT_URL": harness.moto.absoluteString]
            try await withInbox([RoutingKey.failoverCompleted]) { inbox in
                try await withReplicaStack { ingest, _ in
                    try await withSEF {
                        let token = try await AgentHarness.client(ingest, "Recovery")
                        try await primaryIMDS.serving { primaryURL in
                            try await harness.withAgent(
                                ingest: ingest, token: token, imds: primaryURL, logical: logical,
                                environment: aws.merging([
                                    "SPOTGUARD_AGENT_TRAFFIC": #"{"elastic_ips": [{"allocation_id": "\#(allocation)"}]}"#,
                                    "SPOTGUARD_AGENT_STOP_COMMAND": "touch '\(stopped)'", "SPOTGUARD_AGENT_STATE_FILE": primaryState,
                                ]) { $1 }
                            ) {
                                #expect(
                                    try await TestStack.eventually {
                                        try await SEFQuery.count(
                                            store,
                                            """
                                            SELECT count(*) FROM agents a JOIN agent_traffic t ON t.agent_id = a.id WHERE a.logical_agent_id = $1
                                               AND EXISTS (SELECT 1 FROM pricing_snapshots_clean c WHERE c.pool_id LIKE 'm5.large.us-east-1%' AND c.time_bucket > now() - interval '1 hour')
                                            """, [logical]) == 1
                                    })
                                let agent = try #require(
                                    try await ReplicaQuery.one(store, "SELECT id::text FROM agents WHERE logical_agent_id = $1", [logical]).first ?? nil)
                                primaryIMDS.armInterruption()
                                #expect(
                                    try await TestStack.eventually(timeout: .seconds(20)) {
                                        try await SEFQuery.count(
                                            store,
                                            """
                                            SELECT count(*) FROM replica_instances r
                                             WHERE r.agent_id = $1::uuid AND r.replica_type = 'automatic-termination' AND r.instance_id IS NOT NULL
                                               AND EXISTS (SELECT 1 FROM state_versions s WHERE s.agent_id = r.agent_id)
                                            """, [agent]) == 1
                                    }, "the dying agent launched the recovery replica and its state is shipped")
                                try await withReplicaAgent(
                                    harness, store, ingest: ingest, token: token, logical: logical, agent: agent,
                                    // a sync period longer than the wait below: the replica must be ready at its first report
                                    environment: [
                                        "SPOTGUARD_AGENT_STATE_FILE": replicaState, "SPOTGUARD_AGENT_REPLICA_TYPE": "automatic-termination",
                                        "SPOTGUARD_AGENT_SYNC_SECONDS": "60",
                                    ]
                                ) { replica in
                                    let replicaZone = try #require(try await harness.ec2.describeInstances(ids: [replica]).first?.availabilityZone)
                                    let differences = try await harness.differences(primary, replica, zone: replicaZone)
                                    #expect(differences.isEmpty, "the recovery instance is the source's equivalent: \(differences)")
                                    #expect(
                                        try await TestStack.eventually(timeout: .seconds(20)) {
                                            inbox.all.contains { $0.routingKey == RoutingKey.failoverCompleted }
                                        }, "the recovery completes as the notice's failover")
                                    let report = try #require(inbox.all.first { $0.routingKey == RoutingKey.failoverCompleted }).decode(FailoverReport.self)
                                        .payload
                                    #expect(report.oldInstanceId == primary && report.newInstanceId == replica && report.traffic?.moved == true)
                                    #expect(FileManager.default.contents(atPath: replicaState) == state, "the new primary resumed from the sent state")
                                    let after = try await harness.traffic(entry)
                                    #expect(after["eip_instance"] as? String == replica, "\(after)")
                                    let event = try await ReplicaQuery.one(
                                        store,
                                        """
                                        SELECT response_action, new_instance_id, (failover_time_ms > 0)::text FROM spot_interruption_events
                                         WHERE agent_id = $1::uuid AND signal_type = 'termination-notice'
                                        """, [agent])
                                    #expect(event == ["replica_promoted", replica, "true"])
                                    #expect(
                                        try await SEFQuery.count(
                                            store,
                                            "SELECT count(*) FROM commands WHERE agent_id = $1::uuid AND command_type = 'snapshot' AND result ? 'image_id'",
                                            [agent]) == 1, "the image of the noticed instance was taken too")
                                    #expect(
                                        try await TestStack.eventually(timeout: .seconds(20)) { FileManager.default.fileExists(atPath: stopped) },
                                        "the old primary is fenced")
                                }
                            }
                        }
                    }
                }
            }
            await store.shutdown()
        }
        /// Never two primaries: an old primary that sleeps through its replacement (SIGSTOP)
        /// wakes up to a switch issued before the promotion. The switch is void (its epoch is
        /// below the agent's), so nothing is launched and the new primary stays the primary;
        /// and when the old instance's agent starts again it cannot take the primary back by
        /// registering: it learns it was replaced and fences itself at once (its grace is an hour).
        @Test func aReplacedPrimaryThatWakesUpLateNeitherSwitchesNorTakesBackThePrimary() async throws {
            let store = try await TestStack.store()
            let harness = try AgentHarness()
            let primaryIMDS = try await harness.instance(zone: "us-east-1a")
            let primary = primaryIMDS.identity.instanceId
            let stopped = FileManager.default.temporaryDirectory.appendingPathComponent("replaced-\(UUID())").path
            defer { try? FileManager.default.removeItem(atPath: stopped) }
            let logical = TestStack.uniqueName("replaced")
            let environment = [
                "AWS_ENDPOINT_URL": harness.moto.absoluteString, "SPOTGUARD_AGENT_STOP_COMMAND": "echo fenced >> '\(stopped)'",
                "SPOTGUARD_AGENT_FENCE_GRACE_SECONDS": "3600",
            ]
            func fences() -> Int { ((try? String(contentsOfFile: stopped, encoding: .utf8)) ?? "").split(separator: "\n").count }
            try await withReplicaStack(environment: ["SPOTGUARD_REPLICAS_RISK_THRESHOLD_PERCENT": "0"]) { ingest, _ in
                try await withSEF {
                    let token = try await AgentHarness.client(ingest, "Replaced")
                    try await primaryIMDS.serving { primaryURL in
                        var agent = ""
                        var command = UUID()
                        try await harness.withAgentProcess(ingest: ingest, token: token, imds: primaryURL, logical: logical, environment: environment) {
                            process in
                            agent = try await AgentHarness.registeredWithPrices(logical, store)
                            #expect(
                                try await AgentHarness.rebalanceLaunchesAReplica(primaryIMDS, agent: agent, store),
                                "the rebalance recommendation launches a replica")
                            try await withReplicaAgent(harness, store, ingest: ingest, token: token, logical: logical, agent: agent, environment: [:]) {
                                replica in
                                #expect(
                                    try await TestStack.eventually(timeout: .seconds(20)) {
                                        try await ReplicaQuery.one(store, "SELECT status FROM replica_instances WHERE instance_id = $1", [replica]) == ["ready"]
                                    })
                                // the primary sleeps; a switch is delivered to it, then its replica is promoted
                                process.signal(SIGSTOP)
                                defer { process.signal(SIGCONT) }  // a stopped agent cannot stop on SIGTERM
                                let row = try await ReplicaQuery.one(
                                    store,
                                    "SELECT a.client_id::text, r.id::text FROM replica_instances r JOIN agents a ON a.id = r.agent_id WHERE r.instance_id = $1",
                                    [replica])
                                let (client, replicaId) = (try #require(UUID(uuidString: row[0] ?? "")), try #require(row[1]))
                                let agentId = try #require(UUID(uuidString: agent))
                                command = try await store.transaction { conn in
                                    try Commands.issue(
                                        try .init(
                                            .switch, clientId: client, agentId: agentId, targetInstanceId: primary,
                                            payload: [String: String](), targetMode: .onDemand, terminateWaitSeconds: 0, issuedBy: "decisions"),
                                        producer: "spotguard-decisions", on: conn)
                                }
                                // handed to the sleeping agent's open long-poll before the promotion: only the
                                // agent's asking the server before it acts can stop it now
                                #expect(
                                    try await TestStack.eventually(timeout: .seconds(10)) {
                                        try await ReplicaQuery.one(store, "SELECT status FROM commands WHERE id = $1", [command.uuidString]) == ["delivered"]
                                    }, "the switch reached the sleeping primary")
                                let promoted = try await ingest.send(
                                    "POST", "/api/agents/\(agent)/replicas/\(replicaId)/promote", token: token, json: #"{"demote_old_primary": false}"#)
                                #expect(promoted.status == 200, "\(promoted.status) \(String(decoding: promoted.body, as: UTF8.self))")
                                process.signal(SIGCONT)
                                #expect(
                                    try await TestStack.eventually(timeout: .seconds(20)) {
                                        try await ReplicaQuery.one(store, "SELECT status, error_message FROM commands WHERE id = $1", [command.uuidString])
                                            .first == "cancelled"
                                    }, "the overtaken switch is void")
                                let message = try await ReplicaQuery.one(store, "SELECT error_message FROM commands WHERE id = $1", [command.uuidString])
                                #expect(message.first??.hasPrefix("superseded") == true, "\(message)")
                                let launched = try await harness.ec2.describeInstances(filters: [("tag:spotguard:switch", [command.uuidString.lowercased()])])
                                #expect(launched.isEmpty, "nothing launched for the void switch: \(launched.map(\.id))")
                                #expect(
                                    try await ReplicaQuery.one(store, "SELECT instance_id, primary_epoch::text FROM agents WHERE id = $1::uuid", [agent]) == [
                                        replica, "2",
                                    ])
                            }
                        }
                        // the old primary's agent starts again on its instance: registering does not take the primary back
                        let before = fences()
                        try await harness.withAgent(ingest: ingest, token: token, imds: primaryURL, logical: logical, environment: environment) {
                            #expect(
                                try await TestStack.eventually(timeout: .seconds(10)) { fences() == before + 1 },
                                "told at registration that it was replaced, it fences itself")
                        }
                        let now = try await ReplicaQuery.one(store, "SELECT instance_id, primary_epoch::text FROM agents WHERE id = $1::uuid", [agent])
                        #expect(now.first != primary && now.last == "2", "\(now)")
                    }
                }
            }
            await store.shutdown()
        }
    }
}
