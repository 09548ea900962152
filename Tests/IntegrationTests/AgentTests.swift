import AgentApp
import Foundation
import IMDSMock
import SpotCloud
import SpotRuntime
import SpotStore
import Testing
import ToolSupport

extension IntegrationTests {
    @Suite struct AgentTests {
        /// Seed 000's agent items 1–3 and the switch: the agent learns its identity from IMDS
        /// and registers; heartbeats reach the agent row; EC2's spot prices for every zone of
        /// its type arrive as pricing reports; a switch command makes a new instance in moto in
        /// the target zone, stores the switch report, then terminates the old one.
        @Test func registersReportsAndSwitches() async throws {
            let store = try await TestStack.store()
            let harness = try AgentHarness()
            let imds = try await harness.instance()
            let primary = imds.identity.instanceId
            // registered without a configured logical id: the agent's id is its first instance's
            let logical = primary
            // the replica coordinator answers the switch's traffic question
            try await withReplicaStack { ingest, _ in
                try await withSEF {
                    let token = try await AgentHarness.client(ingest, "Agent owner")
                    try await imds.serving { url in
                        try await harness.withAgent(
                            ingest: ingest, token: token, imds: url, logical: logical,
                            environment: [
                                "SPOTGUARD_AGENT_LOGICAL_AGENT_ID": "", "SPOTGUARD_AGENT_IMAGE_RETENTION": "0",
                                "SPOTGUARD_AGENT_ALTERNATIVE_TYPES": "c5.large", "SPOTGUARD_AGENT_ON_DEMAND_PRICE": "0.096",
                            ]
                        ) {
                            #expect(
                                try await TestStack.eventually {
                                    try await SEFQuery.count(
                                        store,
                                        "SELECT count(*) FROM agents WHERE logical_agent_id = $1 AND instance_id = $2 AND last_heartbeat_at IS NOT NULL",
                                        [logical, primary]) == 1
                                })
                            let agent = try #require(
                                try await ReplicaQuery.one(store, "SELECT id::text FROM agents WHERE logical_agent_id = $1", [logical]).first ?? nil)
                            // the zones where its VPC (moto's default one) has a subnet, read by the agent at registration
                            let vpc = try #require(try await harness.ec2.describeInstances(ids: [primary]).first?.vpcId)
                            let subnetZones = Set(try await harness.ec2.describeSubnets(vpcId: vpc).map(\.availabilityZone)).sorted()
                            let usable = try await ReplicaQuery.one(
                                store, "SELECT array_to_string(usable_zones, ',') FROM agents WHERE id = $1::uuid", [agent])
                            #expect(!subnetZones.isEmpty && usable == [subnetZones.joined(separator: ",")], "\(usable) vs \(subnetZones)")
                            let zones = Set(try await harness.ec2.describeSpotPriceHistory(instanceTypes: ["m5.large"]).map(\.availabilityZone))
                            #expect(zones.count >= 5)
                            #expect(
                                try await TestStack.eventually {
                                    try await SEFQuery.count(
                                        store,
                                        "SELECT count(DISTINCT pool_id) FROM pricing_submissions_raw WHERE source_agent_id = $1::uuid AND pool_id LIKE 'm5.large.us-east-1%'",
                                        [agent]) == zones.count
                                }, "a price for every zone EC2 offers the type in")
                            // the on-demand price it knows is its own type's: the alternative type's pools do not get it
                            #expect(
                                try await TestStack.eventually {
                                    try await SEFQuery.count(
                                        store, "SELECT count(*) FROM pricing_submissions_raw WHERE source_agent_id = $1::uuid AND pool_id LIKE 'c5.large.%'",
                                        [agent]) > 0
                                })
                            let misplaced = try await SEFQuery.count(
                                store,
                                """
                                SELECT count(*) FROM pricing_submissions_raw WHERE source_agent_id = $1::uuid
                                   AND CASE WHEN pool_id LIKE 'm5.large.%' THEN on_demand_price IS DISTINCT FROM 0.096 ELSE on_demand_price IS NOT NULL END
                                """, [agent])
                            #expect(misplaced == 0, "prices with another type's on-demand price")

                            // a switch to zone c, terminating the old instance at once
                            try await store.transaction { conn in
                                try conn.execute(
                                    "INSERT INTO spot_pools (id, pool_name, instance_type, region, az) VALUES ('m5.large.us-east-1c', 'm5.large.us-east-1c', 'm5.large', 'us-east-1', 'us-east-1c') ON CONFLICT DO NOTHING"
                                )
                                try conn.execute(
                                    """
                                    INSERT INTO commands (client_id, agent_id, command_type, target_mode, target_pool_id, terminate_wait_seconds, issued_by,
                                                          target_instance_id)
                                    SELECT client_id, id, 'switch', 'spot', 'm5.large.us-east-1c', 0, 'decisions', $2 FROM agents WHERE id = $1::uuid
                                    """, [agent, primary])
                            }
                            // the decision engine records the switch report; started only now, as with moto's
                            // random prices its own pass could have switched the agent first (it leaves an agent
                            // with a switch under way alone, and one that just switched for its dwell)
                            let decisions = try await ServiceProcess.start("spotguard-decisions", portVariable: "SPOTGUARD_DECISIONS_PORT")
                            try await ServiceProcess.with(decisions) { _ in
                                #expect(
                                    try await TestStack.eventually(timeout: .seconds(30)) {
                                        try await SEFQuery.count(
                                            store, "SELECT count(*) FROM switches WHERE agent_id = $1::uuid AND old_instance_id = $2", [agent, primary]) == 1
                                    })
                                let row = try await ReplicaQuery.one(
                                    store,
                                    """
                                    SELECT s.new_instance_id, s.new_pool_id, s.event_trigger, (s.old_terminated_at IS NOT NULL)::text, a.instance_id,
                                           (SELECT status FROM commands WHERE agent_id = s.agent_id AND command_type = 'switch')
                                      FROM switches s JOIN agents a ON a.id = s.agent_id WHERE s.agent_id = $1::uuid
                                    """, [agent])
                                let newInstance = try #require(row.first ?? nil)
                                #expect(Array(row.dropFirst()) == ["m5.large.us-east-1c", "auto_switch", "true", newInstance, "succeeded"])
                                let inMoto = try await harness.ec2.describeInstances(ids: [primary, newInstance])
                                #expect(
                                    inMoto.first { $0.id == newInstance }.map { [$0.state, $0.availabilityZone, $0.lifecycle] } == [
                                        "running", "us-east-1c", "spot",
                                    ])
                                // the same agent on the new instance: the launch carries the agent's tag and its logical id
                                #expect(inMoto.first { $0.id == newInstance }?.tags["spotguard:agent"] == agent)
                                #expect(inMoto.first { $0.id == primary }?.tags["spotguard:agent"] == agent, "tagged at registration")
                                let userData = try await harness.userData(newInstance)
                                #expect(UserData.settings(userData)["SPOTGUARD_AGENT_LOGICAL_AGENT_ID"] == primary, "\(userData)")
                                // the old instance goes once the report has left its spool: just after the report
                                let terminated = try await TestStack.eventually(timeout: .seconds(10)) {
                                    try await harness.ec2.describeInstances(ids: [primary]).first?.state == "terminated"
                                }
                                #expect(terminated, "the old instance was not terminated after the switch")
                                // retention 0: the switch's image and its snapshots are gone once the new instance ran
                                let images = try await harness.peer(["images", agent, primary])
                                #expect(
                                    (images["images"] as? [String])?.isEmpty == true && (images["snapshots"] as? [String])?.isEmpty == true,
                                    "images left behind: \(images)")
                            }
                        }
                    }
                }
            }
            await store.shutdown()
        }

        /// An agent waiting for commands costs its instance next to nothing. Its command
        /// long-poll is open almost all the time; over Foundation's URLSession on Linux each open
        /// request kept a write source firing and the agent spun (3.3 s of CPU in these 4 s with
        /// URLSession put back), which starved the bench's machine into 5 s stalls.
        @Test func waitsForCommandsWithoutSpinning() async throws {
            let store = try await TestStack.store()
            let harness = try AgentHarness()
            let imds = try await harness.instance()
            let logical = "idle-\(UUID().uuidString.prefix(8))"
            try await ServiceProcess.withIngest { ingest in
                let token = try await AgentHarness.client(ingest, "Idle agent owner")
                try await imds.serving { url in
                    try await harness.withAgentProcess(
                        ingest: ingest, token: token, imds: url, logical: logical,
                        environment: [
                            "SPOTGUARD_AGENT_LONG_POLL_SECONDS": "25", "SPOTGUARD_AGENT_HEARTBEAT_SECONDS": "30", "SPOTGUARD_AGENT_PRICE_SECONDS": "3600",
                            "SPOTGUARD_AGENT_WATCH_SECONDS": "1",
                        ]
                    ) { agent in
                        #expect(
                            try await TestStack.eventually {
                                try await SEFQuery.count(
                                    store, "SELECT count(*) FROM agents WHERE logical_agent_id = $1 AND agent_version IS NOT NULL", [logical]) == 1
                            })
                        let before = try AgentHarness.cpuSeconds(agent.pid)
                        let started = ContinuousClock.now
                        try await Task.sleep(for: .seconds(4))
                        let used = try AgentHarness.cpuSeconds(agent.pid) - before
                        let elapsed = (ContinuousClock.now - started) / .seconds(1)
                        #expect(used < 0.1 * elapsed, "the agent used \(used) s of CPU in \(elapsed) s of waiting")
                    }
                }
            }
            await store.shutdown()
        }

        /// An instance that reaches SpotGuard and AWS only through a forward proxy (tinyproxy, from
        /// `HTTP_PROXY`): the agent registers and calls EC2 through it, while
        /// its instance metadata service is asked directly (a proxy cannot reach it).
        @Test func reachesTheServerAndEC2ThroughAProxy() async throws {
            let store = try await TestStack.store()
            let harness = try AgentHarness()
            let tinyproxy = try TestStack.env.require("SPOTGUARD_TEST_PROXY")
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("proxy-\(UUID())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let port = try AgentHarness.freePort()
            let log = dir.appendingPathComponent("tinyproxy.log").path
            try """
            Port \(port)
            Listen 127.0.0.1
            Timeout 60
            LogFile "\(log)"
            LogLevel Info
            MaxClients 50
            Allow 127.0.0.1
            DisableViaHeader Yes
            """.write(toFile: dir.appendingPathComponent("tinyproxy.conf").path, atomically: true, encoding: .utf8)
            let proxy = try ChildProcess(
                tinyproxy, ["-d", "-c", dir.appendingPathComponent("tinyproxy.conf").path], output: dir.appendingPathComponent("out").path, errors: true)
            // tinyproxy in the foreground does not stop on SIGTERM
            defer { proxy.signal(SIGKILL) }
            func requests() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
            #expect(try await TestStack.eventually { requests().contains("Accepting connections") }, "tinyproxy started")
            let imds = try await harness.instance()
            let logical = "proxied-\(UUID().uuidString.prefix(8))"
            try await ServiceProcess.withIngest { ingest in
                let token = try await AgentHarness.client(ingest, "Proxied agent owner")
                try await imds.serving { url in
                    try await harness.withAgent(
                        ingest: ingest, token: token, imds: url, logical: logical,
                        environment: ["HTTP_PROXY": "http://127.0.0.1:\(port)", "NO_PROXY": "", "no_proxy": ""]
                    ) {
                        #expect(
                            try await TestStack.eventually {
                                try await SEFQuery.count(
                                    store, "SELECT count(*) FROM agents WHERE logical_agent_id = $1 AND agent_version IS NOT NULL", [logical]) == 1
                            }, "registered through the proxy")
                        // AsyncHTTPClient tunnels every request through the proxy (CONNECT), http ones too
                        let (ingestPort, motoPort) = (try #require(URL(string: ingest.base)?.port), try #require(harness.moto.port))
                        #expect(
                            try await TestStack.eventually {
                                let seen = requests()
                                return seen.contains("CONNECT 127.0.0.1:\(ingestPort) ") && seen.contains("CONNECT 127.0.0.1:\(motoPort) ")
                            }, "ingest and EC2 were asked through the proxy")
                        #expect(!requests().contains("127.0.0.1:\(url.port ?? 0) "), "the metadata service is asked directly")
                    }
                }
            }
            proxy.signal(SIGKILL)
            _ = await proxy.exitStatus()
            await store.shutdown()
        }

        /// Seed 000's agent items 4–6: a rebalance recommendation is reported and the
        /// coordinator's replica is launched by the agent in moto (launch_replica with user data
        /// that starts a replica agent); a termination notice is sent at once, and without a
        /// ready replica the agent takes the emergency image it is asked for.
        @Test func answersInterruptions() async throws {
            let store = try await TestStack.store()
            let harness = try AgentHarness()
            let imds = try await harness.instance(zone: "us-east-1b")
            let primary = imds.identity.instanceId
            let logical = TestStack.uniqueName("agent")
            // every rebalance launches a replica, whatever the pool's risk
            try await withReplicaStack(environment: ["SPOTGUARD_REPLICAS_RISK_THRESHOLD_PERCENT": "0"]) { ingest, _ in
                try await withSEF {
                    let token = try await AgentHarness.client(ingest, "Agent interruptions")
                    try await imds.serving { url in
                        try await harness.withAgent(ingest: ingest, token: token, imds: url, logical: logical) {
                            let agent = try await AgentHarness.registeredWithPrices(logical, store)

                            imds.armRebalance()
                            #expect(
                                try await TestStack.eventually(timeout: .seconds(20)) {
                                    try await SEFQuery.count(
                                        store,
                                        "SELECT count(*) FROM replica_instances WHERE agent_id = $1::uuid AND replica_type = 'automatic-rebalance' AND instance_id IS NOT NULL",
                                        [agent]) == 1
                                }, "the replica was launched by the agent and its instance reported")
                            #expect(
                                try await SEFQuery.count(
                                    store,
                                    "SELECT count(*) FROM spot_interruption_events WHERE agent_id = $1::uuid AND signal_type = 'rebalance-recommendation'",
                                    [agent]) == 1)
                            let replica = try #require(
                                try await ReplicaQuery.one(
                                    store, "SELECT instance_id FROM replica_instances WHERE agent_id = $1::uuid", [agent]
                                ).first ?? nil)
                            let launched = try await harness.ec2.describeInstances(ids: [replica])
                            #expect(
                                launched.first?.lifecycle == "spot" && launched.first?.availabilityZone != "us-east-1b",
                                "a spot replica outside the primary's zone")

                            imds.armInterruption()
                            #expect(
                                try await TestStack.eventually(timeout: .seconds(20)) {
                                    try await SEFQuery.count(
                                        store,
                                        """
                                        SELECT count(*) FROM spot_interruption_events WHERE agent_id = $1::uuid AND signal_type = 'termination-notice'
                                           AND instance_id = $2 AND response_action = 'emergency_snapshot_required'
                                        """, [agent, primary]) == 1
                                }, "the replica never became ready, so the notice asks for an emergency image")
                            #expect(
                                try await TestStack.eventually(timeout: .seconds(20)) {
                                    try await SEFQuery.count(
                                        store,
                                        "SELECT count(*) FROM commands WHERE agent_id = $1::uuid AND command_type = 'snapshot' AND status = 'succeeded' AND result ? 'image_id'",
                                        [agent]) == 1
                                }, "the agent took the image")

                            // an instance of another workload is not the agent's to terminate
                            let stranger = try await harness.ec2.runInstances(
                                RunInstancesRequest(imageId: "ami-12c6146b", instanceType: "m5.large", market: .spot, availabilityZone: "us-east-1b"))
                            try await store.transaction { conn in
                                try conn.execute(
                                    """
                                    INSERT INTO commands (client_id, agent_id, command_type, payload, issued_by)
                                    SELECT client_id, id, 'terminate', jsonb_build_object('instance_id', $2::text), 'replicas' FROM agents WHERE id = $1::uuid
                                    """, [agent, stranger.id])
                            }
                            #expect(
                                try await TestStack.eventually(timeout: .seconds(20)) {
                                    try await SEFQuery.count(
                                        store,
                                        """
                                        SELECT count(*) FROM commands WHERE agent_id = $1::uuid AND command_type = 'terminate' AND payload->>'instance_id' = $2
                                           AND status = 'failed' AND error_message LIKE '%is not tagged spotguard:agent=%'
                                        """, [agent, stranger.id]) == 1
                                }, "the terminate command for an untagged instance is refused")
                            #expect(try await harness.ec2.describeInstances(ids: [stranger.id]).first?.state == "running")
                        }
                    }
                }
            }
            await store.shutdown()
        }

        /// Seed 000's agent items 3–6 with a replica agent: the replica launched on a rebalance
        /// runs its own agent (replica mode), reports sync status until it is ready and submits
        /// prices as a replica source; on the termination notice the primary sends its state to
        /// the replica, the failover promotes it, and the replica agent receives the state and
        /// executes its promotion.
        @Test func failsOverToASyncedReplicaWithItsState() async throws {
            let store = try await TestStack.store()
            let harness = try AgentHarness()
            let primaryIMDS = try await harness.instance(zone: "us-east-1d")
            let primary = primaryIMDS.identity.instanceId
            let logical = TestStack.uniqueName("agent")
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("agent-state-\(UUID())")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let (primaryState, replicaState) = (dir.appendingPathComponent("primary.state").path, dir.appendingPathComponent("replica.state").path)
            let state = Data((0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            try state.write(to: URL(fileURLWithPath: primaryState))
            try await withReplicaStack(environment: ["SPOTGUARD_REPLICAS_RISK_THRESHOLD_PERCENT": "0"]) { ingest, _ in
                try await withSEF {
                    let token = try await AgentHarness.client(ingest, "Agent failover")
                    try await primaryIMDS.serving { primaryURL in
                        try await harness.withAgent(
                            ingest: ingest, token: token, imds: primaryURL, logical: logical, environment: ["SPOTGUARD_AGENT_STATE_FILE": primaryState]
                        ) {
                            let agent = try await AgentHarness.registeredWithPrices(logical, store)
                            #expect(
                                try await AgentHarness.rebalanceLaunchesAReplica(primaryIMDS, agent: agent, store),
                                "the rebalance recommendation launches a replica")
                            let replicaRow = try await ReplicaQuery.one(
                                store, "SELECT id::text, instance_id, az FROM replica_instances WHERE agent_id = $1::uuid", [agent])
                            let (replicaId, replicaInstance, replicaZone) = (
                                try #require(replicaRow[0]), try #require(replicaRow[1]), try #require(replicaRow[2])
                            )
                            let replicaIMDS = IMDSMock(identity: .init(instanceId: replicaInstance, instanceType: "m5.large", availabilityZone: replicaZone))
                            try await replicaIMDS.serving { (replicaURL: URL) async throws -> Void in
                                try await harness.withAgent(
                                    ingest: ingest, token: token, imds: replicaURL, logical: logical,
                                    environment: [
                                        "SPOTGUARD_AGENT_REPLICA_ID": replicaId, "SPOTGUARD_AGENT_AGENT_ID": agent, "SPOTGUARD_AGENT_SYNC_SECONDS": "0.3",
                                        "SPOTGUARD_AGENT_STATE_FILE": replicaState, "SPOTGUARD_AGENT_REPLICA_TYPE": "automatic-rebalance",
                                    ]
                                ) { () async throws -> Void in
                                    #expect(
                                        try await TestStack.eventually(timeout: .seconds(20)) {
                                            try await ReplicaQuery.one(
                                                store, "SELECT status, sync_status FROM replica_instances WHERE id = $1::uuid", [replicaId]) == [
                                                    "ready", "synced",
                                                ]
                                        }, "sync reports made the replica ready")
                                    #expect(
                                        try await TestStack.eventually {
                                            try await SEFQuery.count(
                                                store,
                                                "SELECT count(*) FROM pricing_submissions_raw WHERE source_instance_id = $1 AND source_type = 'replica-automatic'",
                                                [replicaInstance]) > 0
                                        }, "the replica's prices are marked as a replica source")

                                    primaryIMDS.armInterruption()
                                    #expect(
                                        try await TestStack.eventually(timeout: .seconds(20)) {
                                            try await SEFQuery.count(
                                                store,
                                                """
                                                SELECT count(*) FROM spot_interruption_events WHERE agent_id = $1::uuid AND signal_type = 'termination-notice'
                                                   AND instance_id = $2 AND response_action = 'replica_promoted' AND failover_completed
                                                """, [agent, primary]) == 1
                                        }, "the termination notice promoted the ready replica")
                                    #expect(
                                        try await ReplicaQuery.one(store, "SELECT instance_id FROM agents WHERE id = $1::uuid", [agent]) == [replicaInstance])
                                    #expect(
                                        try await TestStack.eventually(timeout: .seconds(20)) {
                                            (try? Data(contentsOf: URL(fileURLWithPath: replicaState))) == state
                                        }, "the replica holds the primary's state, byte for byte")
                                    #expect(
                                        try await TestStack.eventually(timeout: .seconds(20)) {
                                            try await SEFQuery.count(
                                                store,
                                                "SELECT count(*) FROM commands WHERE agent_id = $1::uuid AND command_type = 'promote' AND status = 'succeeded'",
                                                [agent]) == 1
                                        }, "the replica agent executed its promotion")
                                    let promoted = Date()
                                    #expect(
                                        try await TestStack.eventually(timeout: .seconds(10)) {
                                            try await SEFQuery.count(
                                                store, "SELECT count(*) FROM agents WHERE id = $1::uuid AND instance_id = $2 AND last_heartbeat_at > $3",
                                                [agent, replicaInstance, promoted]) == 1
                                        }, "the promoted replica heartbeats as the primary, and the old one no longer does")
                                }
                            }
                        }
                    }
                }
            }
            await store.shutdown()
        }

        /// Reports outlive a server outage and an agent restart: written to the spool before
        /// they are sent, kept while the server cannot be reached, and sent by the next agent
        /// process that opens the same spool.
        @Test func spooledReportsSurviveAnOutageAndARestart() async throws {
            let store = try await TestStack.store()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("spool-\(UUID())").path
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try await ServiceProcess.withIngest { ingest in
                try await withSEF {
                    let token = try await AgentHarness.client(ingest, "Spool owner")
                    let logical = TestStack.uniqueName("spool")
                    let reg = try await ingest.send("POST", "/api/agents/register", token: token, json: #"{"logical_agent_id": "\#(logical)"}"#)
                    let agent = try #require(reg.id("agent_id"))
                    struct Heartbeat: Encodable {
                        var status = "online"
                        var observedAt: Date
                    }
                    // the server is away: nothing listens on this port
                    let away = AgentAPI(server: URL(string: "http://127.0.0.1:1")!, token: token)
                    let before = try Spool(directory: dir, api: away, logger: TestStack.logger)
                    for i in 0..<3 {
                        try await before.submit("POST", "/api/agents/\(agent)/heartbeat", Heartbeat(observedAt: Date().addingTimeInterval(Double(i - 3))))
                    }
                    #expect(before.pending.count == 3)
                    #expect(await before.flush() == false)
                    // a new agent process, the server back
                    let after = try Spool(directory: dir, api: AgentAPI(server: URL(string: ingest.base)!, token: token), logger: TestStack.logger)
                    #expect(after.pending.count == 3)
                    #expect(await after.flush())
                    #expect(after.pending.isEmpty)
                    #expect(
                        try await TestStack.eventually {
                            try await SEFQuery.count(store, "SELECT count(*) FROM agents WHERE id = $1::uuid AND last_heartbeat_at IS NOT NULL", [agent]) == 1
                        })
                }
            }
            await store.shutdown()
        }

        /// A refusal loses no report: while the server refuses the agent's token (rotated) the
        /// spool keeps everything, and sends it once the agent has the right token; a report the
        /// server refuses for itself is set aside in refused/ and does not hold the rest back.
        @Test func refusedReportsAreKeptNotDeleted() async throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("spool-\(UUID())").path
            defer { try? FileManager.default.removeItem(atPath: dir) }
            try await ServiceProcess.withIngest { ingest in
                let token = try await AgentHarness.client(ingest, "Spool refusals")
                let reg = try await ingest.send(
                    "POST", "/api/agents/register", token: token, json: #"{"logical_agent_id": "\#(TestStack.uniqueName("refused"))"}"#)
                let agent = try #require(reg.id("agent_id"))
                struct Heartbeat: Encodable {
                    var status: String
                    var observedAt: Date
                }
                // a token the server does not know (as after a rotation the agent has not seen yet)
                let stale = "sgt_" + String(repeating: "a", count: 16) + "_" + String(repeating: "0", count: 64)
                let before = try Spool(directory: dir, api: AgentAPI(server: URL(string: ingest.base)!, token: stale), logger: TestStack.logger)
                try await before.submit("POST", "/api/agents/\(agent)/heartbeat", Heartbeat(status: "online", observedAt: Date() - 3))
                try await before.submit("POST", "/api/agents/\(agent)/heartbeat", Heartbeat(status: "not-a-status", observedAt: Date() - 2))
                try await before.submit("POST", "/api/agents/\(agent)/heartbeat", Heartbeat(status: "online", observedAt: Date() - 1))
                #expect(await before.flush() == false)
                #expect(before.pending.count == 3, "a 401 deleted reports")

                let after = try Spool(directory: dir, api: AgentAPI(server: URL(string: ingest.base)!, token: token), logger: TestStack.logger)
                #expect(await after.flush())
                #expect(after.pending.isEmpty)
                let refused = try FileManager.default.contentsOfDirectory(atPath: dir + "/refused")
                #expect(refused.count == 1, "the invalid heartbeat is kept apart: \(refused)")
            }
        }
    }
}
