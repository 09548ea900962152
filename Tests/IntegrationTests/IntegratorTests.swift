import Foundation
import SpotBus
import SpotModels
import SpotRuntime
import SpotStore
import Testing
import ToolSupport

extension IntegrationTests {
    /// The bus as an integrator meets it: pika (a client nobody here wrote, Tests/Peers/integrator.py)
    /// as the broker user `integrator`, writing messages from docs/asyncapi.yaml alone.
    @Suite struct IntegratorTests {
        static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Peers/integrator.py").path

        /// The drift check of `make test`: a message a Swift type would encode after a field was
        /// renamed, without docs/asyncapi.yaml following, fails it; the message as documented passes.
        @Test func theContractCheckFailsOnAMessageTheDocumentDoesNotDescribe() async throws {
            let python = try TestStack.env.require("SPOTGUARD_TEST_CONTRACT_PYTHON")
            let check = TestStack.repoRoot.appendingPathComponent("deploy/check-bus-contract.py").path
            let now = Date()
            let report = PricingReport(
                reportId: UUID(), clientId: UUID(), agentId: UUID(), instanceId: nil,
                pools: [PoolPrice(poolId: PoolID(rawValue: "m5.large.us-east-1a")!, price: 0.031)], onDemandPrice: nil, observedAt: now,
                receivedAt: now)
            let body = String(
                decoding: try WireJSON.encoder().encode(
                    Envelope(type: RoutingKey.pricingReported, producer: "test", payload: PricingReported.report(report))), as: UTF8.self)
            func verdict(_ body: String) async throws -> (Int32, String) {
                let dir = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("tap"))
                try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(at: dir) }
                try Data(#"{"direction":"published","routing_key":"pricing.reported","body":\#(body)}"#.utf8 + [10])
                    .write(to: dir.appendingPathComponent("p-1.jsonl"))
                let out = dir.appendingPathComponent("out").path
                let status = try await ChildProcess(python, [check, "messages", dir.path], output: out, errors: true).exitStatus()
                return (status, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
            }
            let documented = try await verdict(body)
            #expect(documented.0 == 0, "\(documented.1)")
            let drifted = try await verdict(body.replacingOccurrences(of: "\"observed_at\"", with: "\"observed_time\""))
            #expect(drifted.0 == 1 && drifted.1.contains("observed_time"), "\(drifted.1)")
        }

        @Test func aPikaCollectorAndSubscriberWorkFromTheDocumentAlone() async throws {
            let python = try TestStack.env.require("SPOTGUARD_TEST_CONTRACT_PYTHON")
            let url = try TestStack.env.require("SPOTGUARD_INTEGRATOR_AMQP_URL")
            let store = try await TestStack.store()
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent(TestStack.uniqueName("integrator"))
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let received = dir.appendingPathComponent("received.jsonl").path
            let subscriber = try ChildProcess(
                python, [Self.script, "subscribe", url, UUID().uuidString.lowercased(), received, RoutingKey.failoverCompleted, RoutingKey.switchReported],
                output: dir.appendingPathComponent("subscriber.out").path, errors: true)
            defer { subscriber.signal(SIGTERM) }
            #expect(
                await TestStack.eventually {
                    ((try? String(contentsOf: dir.appendingPathComponent("subscriber.out"), encoding: .utf8)) ?? "").contains("ready")
                }, "the subscriber bound its queue")

            try await withReplicaStack { ingest, _ in
                try await withSEF {
                    let agent = try await ReplicaAgent.make(ingest, store: store)
                    let stranger = try await ReplicaAgent.make(ingest, store: store)
                    let client = try await ReplicaQuery.one(store, "SELECT client_id::text FROM agents WHERE id = $1::uuid", [agent.id])[0]
                    let spec = dir.appendingPathComponent("spec.json")
                    try JSONSerialization.data(withJSONObject: [
                        "client_id": client, "agent_id": agent.id, "stranger_agent_id": stranger.id, "pools": [agent.pool("a"), agent.pool("b")],
                    ]).write(to: spec)
                    let sentFile = dir.appendingPathComponent("sent.json")
                    let status = try await ChildProcess(
                        python, [Self.script, "publish", url, spec.path, sentFile.path], output: dir.appendingPathComponent("publish.out").path,
                        errors: true
                    ).exitStatus()
                    let publishOut = (try? String(contentsOf: dir.appendingPathComponent("publish.out"), encoding: .utf8)) ?? ""
                    try #require(status == 0, "the pika collector failed: \(publishOut)")
                    let sent = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: sentFile)) as? [String: String])
                    #expect(sent["command_issued"]?.hasPrefix("refused 403 ACCESS_REFUSED") == true, "\(sent["command_issued"] ?? "-")")

                    // the documented shapes are stored: 2 pools of the report, the submission, the v1 report
                    let rows = "SELECT count(*) FROM pricing_submissions_raw WHERE source_agent_id = $1::uuid"
                    #expect(try await TestStack.eventually { try await SEFQuery.count(store, rows, [agent.id]) == 4 }, "clean rows of every valid message")
                    let beat = try await ReplicaQuery.one(
                        store, "SELECT (last_heartbeat_at > now() - interval '1 minute')::text FROM agents WHERE id = $1::uuid", [agent.id])
                    #expect(beat == ["true"], "the heartbeat reached the agent")

                    // what breaks the contract is dead-lettered at once, with the path and the rule
                    let expected = [
                        "garbage": "invalid_message: $: invalid_json", "version_7": "invalid_message: schema_version: unsupported_schema_version",
                        "negative": "invalid_message: payload.pools[0].price: invalid_price", "huge": "invalid_message: payload.pools[0].price: invalid_price",
                        "twice": "invalid_message: payload.pools[1].pool_id: duplicate_pool",
                        "future": "invalid_message: payload.observed_at: timestamp_in_future", "stranger": "invalid_message: payload.agent_id: unknown_agent",
                        "mislabelled": "invalid_message: type: type_mismatch",
                    ]
                    let ids = Dictionary(uniqueKeysWithValues: expected.keys.compactMap { name in sent[name].map { ($0, name) } })
                    var letters: [DeadLetters.Letter] = []
                    #expect(
                        await TestStack.eventually {
                            letters = ((try? await DeadLetters.list(endpoint: try TestStack.amqp, logger: TestStack.logger)) ?? [])
                                .filter { $0.messageId.map { ids[$0] != nil } ?? false }
                            return letters.count == expected.count
                        }, "every refused message is dead-lettered: \(letters.map { $0.messageId ?? "-" })")
                    for letter in letters {
                        let name = ids[letter.messageId ?? ""] ?? "-"
                        #expect(letter.attempts == 1 && letter.queue == "spotguard.sef", "\(name): \(letter)")
                        #expect(letter.reason?.hasPrefix(expected[name] ?? "?") == true, "\(name): \(letter.reason ?? "-")")
                    }
                    // nothing else was harmed, and the replayed report changed nothing
                    #expect(try await SEFQuery.count(store, rows, [agent.id]) == 4)

                    // a switch (reported by the agent through ingest) and a failover drill reach the subscriber
                    let now = Date()
                    let switched = try await agent.call(
                        "POST", "/switch-report",
                        """
                        {"old_instance": {"instance_id": "\(agent.instance)", "mode": "spot", "pool_id": "\(agent.pool("a"))"},
                         "new_instance": {"instance_id": "\(ReplicaAgent.randomInstance())", "mode": "spot", "pool_id": "\(agent.pool("b"))"},
                         "timing": {"initiated_at": "\(Timestamp.format(now - 60))", "instance_ready_at": "\(Timestamp.format(now))"}}
                        """)
                    #expect(switched.status == 202)
                    let drilled = try await stranger.call("POST", "/config", #"{"auto_switch_enabled": false, "auto_terminate_enabled": false}"#)
                    #expect(drilled.status == 200)
                    let created = try await stranger.call("POST", "/replicas")
                    let replicaId = try #require(created.id("replica_id"))
                    _ = try await stranger.launchReplica(replicaId)
                    try await stranger.syncToReady(replicaId)
                    let failover = try await stranger.call(
                        "POST", "/termination-imminent", #"{"instance_id": "\#(stranger.instance)", "termination_time": "2030-01-01T00:02:00Z"}"#)
                    #expect(failover.json["action"] as? String == "replica_promoted")

                    var lines: [[String: Any]] = []
                    #expect(
                        await TestStack.eventually {
                            lines = ((try? String(contentsOfFile: received, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
                                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
                            }
                            let keys = Set(lines.map { $0["routing_key"] as? String ?? "" })
                            return keys.isSuperset(of: [RoutingKey.switchReported, RoutingKey.failoverCompleted])
                        }, "the subscriber received switch.reported and failover.completed")
                    for line in lines {
                        #expect(line["valid"] as? Bool == true, "\(line["routing_key"] ?? "-") against docs/asyncapi.yaml: \(line["errors"] ?? "-")")
                        let body = line["body"] as? [String: Any]
                        #expect((body?["id"] as? String)?.lowercased() == (line["message_id"] as? String)?.lowercased(), "message-id is the envelope id")
                    }
                }
            }
            await store.shutdown()
        }
    }
}
