import Foundation
import IMDSMock
import SpotCloud
import SpotRuntime
import SpotStore
import Testing

extension IntegrationTests {
    /// What the agent launches on a real fleet, from a source as a real fleet has it (a
    /// non-default VPC with two subnets, two security groups, an instance profile, encrypted gp3
    /// volumes, IMDSv2, user tags), checked from outside with boto3 against moto.
    @Suite struct FleetTests {
        /// A switch an operator forced for `agent`'s primary `instance` (to on-demand in place, or
        /// to the spot `pool`), terminating the old instance at once.
        func queueSwitch(_ store: PostgresStore, agent: String, instance: String, mode: String, pool: String?) async throws {
            try await store.transaction { conn in
                if let pool {
                    let (type, zone) = (pool.split(separator: ".").dropLast().joined(separator: "."), String(pool.split(separator: ".").last ?? ""))
                    try conn.execute(
                        "INSERT INTO spot_pools (id, pool_name, instance_type, region, az) VALUES ($1, $1, $2, 'us-east-1', $3) ON CONFLICT DO NOTHING",
                        [pool, type, zone])
                }
                try conn.execute(
                    """
                    INSERT INTO commands (client_id, agent_id, command_type, target_mode, target_pool_id, terminate_wait_seconds, issued_by, target_instance_id)
                    SELECT client_id, id, 'switch', $2, $3, 0, 'user', $4 FROM agents WHERE id = $1::uuid
                    """, [agent, mode, pool, instance])
            }
        }

        /// The instance the switch away from `old` launched, once its report is stored.
        func switched(_ store: PostgresStore, from old: String) async throws -> String {
            #expect(
                try await TestStack.eventually(timeout: .seconds(30)) {
                    try await SEFQuery.count(store, "SELECT count(*) FROM switches WHERE old_instance_id = $1", [old]) == 1
                }, "the switch away from \(old) is reported")
            return try #require(try await ReplicaQuery.one(store, "SELECT new_instance_id FROM switches WHERE old_instance_id = $1", [old]).first ?? nil)
        }

        /// Two switches in a row, then a manual replica, from one source: to on-demand in place,
        /// then to spot in the other zone. Each new instance carries the source's VPC (the
        /// subnet of its zone), groups, profile, key, volumes, metadata options and tags; the
        /// Elastic IP, the target group and the DNS record follow each new primary; the old one
        /// is fenced (its stop hook) and terminated; the switch images are deleted. The agent on
        /// each new instance starts from what its user data says, and is the same agent (no
        /// logical id was configured) with the modes it had.
        @Test func switchesAndReplicasCopyTheSourceAndMoveTheTraffic() async throws {
            let store = try await TestStack.store()
            let harness = try AgentHarness()
            let sourceIMDS = try await harness.fleetSource()
            let source = sourceIMDS.identity.instanceId
            let original = try await harness.described(source)
            let entry = try await harness.entryPoints(for: source)
            let traffic = entry.configuration
            let fenced = FileManager.default.temporaryDirectory.appendingPathComponent("fleet-fenced-\(UUID())").path
            defer { try? FileManager.default.removeItem(atPath: fenced) }
            func fences() -> Int { ((try? String(contentsOfFile: fenced, encoding: .utf8)) ?? "").split(separator: "\n").count }
            let aws = ["AWS_ENDPOINT_URL": harness.moto.absoluteString, "SPOTGUARD_AGENT_IMAGE_RETENTION": "0"]

            /// Where each entry point sends traffic is `primary`, and only it.
            func expectTraffic(at primary: String, not old: String) async throws {
                let now = try await harness.traffic(entry)
                let targets = (now["targets"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
                let ips = now["private_ips"] as? [String: String] ?? [:]
                #expect(now["eip_instance"] as? String == primary, "\(now)")
                #expect(targets.contains(primary) && !targets.contains(old), "\(now)")
                #expect(now["record_values"] as? [String] == [ips[primary] ?? "-"], "\(now)")
            }
            /// `new` is the source's equivalent in `zone`, `old` is gone, its traffic moved and it was fenced.
            func expectSwitched(from old: String, to new: String, zone: String, fencesBefore: Int) async throws {
                let differences = try await harness.differences(original, new, zone: zone)
                #expect(differences.isEmpty, "\(differences)")
                try await expectTraffic(at: new, not: old)
                #expect(try await TestStack.eventually(timeout: .seconds(10)) { fences() == fencesBefore + 1 }, "the old primary ran its stop hook")
                #expect(
                    try await TestStack.eventually(timeout: .seconds(10)) { try await harness.ec2.describeInstances(ids: [old]).first?.state == "terminated" })
            }

            // the SEF turns the agents' prices into the clean ones the coordinator places a manual replica by
            // the decision service applies the switch reports
            try await withReplicaStack { ingest, _ in
                try await withSEF {
                    let decisions = try await ServiceProcess.start("spotguard-decisions", portVariable: "SPOTGUARD_DECISIONS_PORT")
                    try await ServiceProcess.with(decisions) { _ in
                        let token = try await AgentHarness.client(ingest, "Fleet")
                        var agent = ""
                        // 1. the source's agent, configured with the traffic; switched to on-demand in place
                        try await sourceIMDS.serving { url in
                            try await harness.withAgent(
                                ingest: ingest, token: token, imds: url, logical: "",
                                environment: aws.merging(["SPOTGUARD_AGENT_TRAFFIC": traffic, "SPOTGUARD_AGENT_STOP_COMMAND": "echo fenced >> '\(fenced)'"]) {
                                    $1
                                }
                            ) {
                                #expect(
                                    try await TestStack.eventually {
                                        try await SEFQuery.count(
                                            store, "SELECT count(*) FROM agents a JOIN agent_traffic t ON t.agent_id = a.id WHERE a.instance_id = $1",
                                            [
                                                source
                                            ]) == 1
                                    })
                                agent = try #require(
                                    try await ReplicaQuery.one(store, "SELECT id::text FROM agents WHERE instance_id = $1", [source]).first ?? nil)
                                // modes that are not the defaults belong to the agent, not to its instance
                                let modes = try await ingest.send("POST", "/api/agents/\(agent)/config", token: token, json: #"{"auto_switch_enabled": false}"#)
                                #expect(modes.status == 200)
                                try await queueSwitch(store, agent: agent, instance: source, mode: "ondemand", pool: nil)
                                let onDemand = try await switched(store, from: source)
                                #expect(try await harness.ec2.describeInstances(ids: [onDemand]).first?.lifecycle == nil, "an on-demand instance")
                                try await expectSwitched(from: source, to: onDemand, zone: "us-east-1a", fencesBefore: 0)
                            }
                        }
                        let onDemand = try #require(
                            try await ReplicaQuery.one(store, "SELECT instance_id FROM agents WHERE id = $1::uuid", [agent]).first ?? nil)
                        #expect(onDemand != source)

                        // 2. the agent its user data starts on the new instance; switched to spot in the other zone
                        var settings = UserData.settings(try await harness.userData(onDemand))
                        #expect(settings["SPOTGUARD_AGENT_AGENT_ID"] == agent && settings["SPOTGUARD_AGENT_LOGICAL_AGENT_ID"] == source, "\(settings)")
                        // no token travels in user data: a single-use secret the new instance enrolls with
                        #expect(settings["SPOTGUARD_AGENT_TOKEN"] == nil && settings["SPOTGUARD_AGENT_ENROLLMENT_SECRET"]?.hasPrefix("sge_") == true)
                        settings["SPOTGUARD_AGENT_SERVER"] = nil
                        let onDemandIMDS = IMDSMock(
                            identity: .init(instanceId: onDemand, instanceType: "m5.large", availabilityZone: "us-east-1a", lifeCycle: "on-demand"),
                            signer: try TestStack.identitySigner())
                        try await onDemandIMDS.serving { url in
                            try await harness.withAgent(
                                ingest: ingest, token: token, imds: url, logical: settings["SPOTGUARD_AGENT_LOGICAL_AGENT_ID"] ?? "",
                                environment: aws.merging(settings) { $1 }
                            ) {
                                #expect(
                                    try await TestStack.eventually {
                                        try await ReplicaQuery.one(
                                            store, "SELECT count(*)::text, bool_and(NOT auto_switch_enabled)::text FROM agents WHERE logical_agent_id = $1",
                                            [source])
                                            == ["1", "true"]
                                    }, "one agent, with the modes it had")
                                // the agent enrolls as it starts: poll until its token is there (10 s at most)
                                var enrolled: [String?] = []
                                for _ in 0..<50 where enrolled != [agent] {
                                    try await Task.sleep(for: .milliseconds(200))
                                    enrolled = try await ReplicaQuery.one(
                                        store, "SELECT agent_id::text FROM agent_tokens WHERE instance_id = $1 AND revoked_at IS NULL", [onDemand])
                                }
                                #expect(enrolled == [agent], "the new instance enrolled as the agent")
                                try await queueSwitch(store, agent: agent, instance: onDemand, mode: "spot", pool: "m5.large.us-east-1b")
                                let spot = try await switched(store, from: onDemand)
                                let described = try #require(try await harness.ec2.describeInstances(ids: [spot]).first)
                                #expect(described.lifecycle == "spot" && described.availabilityZone == "us-east-1b")
                                try await expectSwitched(from: onDemand, to: spot, zone: "us-east-1b", fencesBefore: 1)
                            }
                        }
                        let spot = try #require(try await ReplicaQuery.one(store, "SELECT instance_id FROM agents WHERE id = $1::uuid", [agent]).first ?? nil)
                        let images = try await harness.peer(["images", agent, source])
                        #expect((images["images"] as? [String])?.isEmpty == true, "switch images left behind: \(images)")

                        // 3. a manual replica of the switched primary, still the source's equivalent
                        var spotSettings = UserData.settings(try await harness.userData(spot))
                        spotSettings["SPOTGUARD_AGENT_SERVER"] = nil
                        let spotIMDS = IMDSMock(
                            identity: .init(instanceId: spot, instanceType: "m5.large", availabilityZone: "us-east-1b"), signer: try TestStack.identitySigner())
                        try await spotIMDS.serving { url in
                            try await harness.withAgent(ingest: ingest, token: token, imds: url, logical: source, environment: aws.merging(spotSettings) { $1 })
                            {
                                let off = try await ingest.send(
                                    "POST", "/api/agents/\(agent)/config", token: token, json: #"{"auto_terminate_enabled": false}"#)
                                let enabled = try await ingest.send("POST", "/api/agents/\(agent)/manual-replica/enable", token: token)
                                #expect(off.status == 200 && enabled.status == 200, "\(enabled.status) \(String(decoding: enabled.body, as: UTF8.self))")
                                #expect(
                                    try await TestStack.eventually(timeout: .seconds(20)) {
                                        try await SEFQuery.count(
                                            store,
                                            "SELECT count(*) FROM replica_instances WHERE agent_id = $1::uuid AND replica_type = 'manual' AND instance_id IS NOT NULL",
                                            [agent]) == 1
                                    }, "the manual replica is launched")
                                let row = try await ReplicaQuery.one(
                                    store, "SELECT instance_id, az FROM replica_instances WHERE agent_id = $1::uuid AND replica_type = 'manual'", [agent])
                                let (replica, replicaZone) = (try #require(row.first ?? nil), try #require(row.last ?? nil))
                                let differences = try await harness.differences(original, replica, zone: replicaZone)
                                #expect(differences.isEmpty, "\(differences)")
                            }
                        }
                    }
                }
            }
            await store.shutdown()
        }
    }
}
