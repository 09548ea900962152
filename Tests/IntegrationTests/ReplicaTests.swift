import Foundation
import SpotBus
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore
import Testing
import ToolSupport

/// One agent of a test's own client, in pools of an instance family no other test uses, with
/// clean prices in three zones (the primary runs in zone a).
struct ReplicaAgent {
    let ingest: ServiceProcess
    let token: String
    let id: String
    let family: String
    let instance: String

    static func randomInstance() -> String {
        "i-" + String((0..<17).map { _ in "0123456789abcdef".randomElement()! })
    }

    static func make(
        _ ingest: ServiceProcess, store: PostgresStore, prices: [String: Double] = ["a": 0.010, "b": 0.031, "c": 0.029]
    )
        async throws -> ReplicaAgent
    {
        let family = "sg" + String((0..<6).map { _ in "abcdefghijklmnopqrstuvwxyz".randomElement()! })
        let admin = try TestStack.env.require("SPOTGUARD_ADMIN_TOKEN")
        let client = try await ingest.send("POST", "/api/admin/clients", token: admin, json: #"{"name": "replicas \#(family)"}"#)
        let token = try #require(client.json["token"] as? String)
        let instance = randomInstance()
        let reg = try await ingest.send(
            "POST", "/api/agents/register", token: token,
            json: """
                {"logical_agent_id": "agent-\(family)", "instance_id": "\(instance)", "pool_id": "\(family).large.us-east-1a",
                 "mode": "spot", "agent_version": "1.0.0"}
                """)
        let agent = ReplicaAgent(
            ingest: ingest, token: token, id: try #require(reg.json["agent_id"] as? String).lowercased(), family: family, instance: instance)
        try await agent.seedPrices(store, prices)
        return agent
    }

    func pool(_ az: String) -> String { "\(family).large.us-east-1\(az)" }

    /// Clean prices for the current 5-minute bucket, as the SEF would have written them.
    func seedPrices(_ store: PostgresStore, _ prices: [String: Double]) async throws {
        let pools = prices.keys.sorted()
        let (ids, values) = (pools.map(pool), pools.map { prices[$0]! })
        let family = self.family
        try await store.transaction { conn in
            _ = try conn.execute(
                """
                INSERT INTO spot_pools (id, pool_name, instance_type, region, az)
                SELECT p, p, $2 || '.large', 'us-east-1', right(p, 10) FROM unnest($1::text[]) p ON CONFLICT DO NOTHING
                """, [PGArray(ids), family])
            _ = try conn.execute(
                """
                INSERT INTO pricing_snapshots_clean (pool_id, time_bucket, spot_price, on_demand_price, confidence_score, data_source, source_type)
                SELECT p, to_timestamp(floor(extract(epoch FROM now()) / 300) * 300), price, 0.0832, 1.00, 'measured', 'primary'
                  FROM unnest($1::text[], $2::float8[]) AS u(p, price)
                ON CONFLICT (pool_id, time_bucket) DO UPDATE SET spot_price = EXCLUDED.spot_price
                """, [PGArray(ids), PGArray(values)])
        }
    }

    /// A call under `/api/agents/{id}`.
    func call(_ method: String, _ path: String, _ json: String? = nil) async throws -> ServiceProcess.Reply {
        try await ingest.send(method, "/api/agents/\(id)\(path)", token: token, json: json)
    }

    /// The commands waiting for `instance` (long-poll of `wait` seconds).
    func poll(_ instance: String, wait: Int = 0) async throws -> [[String: Any]] {
        let reply = try await call("GET", "/pending-commands?instance_id=\(instance)&wait=\(wait)")
        #expect(reply.status == 200)
        return reply.json["commands"] as? [[String: Any]] ?? []
    }

    /// Plays the primary's agent launching the replica: fetch `launch_replica`, report the instance.
    func launchReplica(_ replicaId: String) async throws -> String {
        let commands = try await poll(instance)
        let launch = try #require(
            commands.first { $0["command_type"] as? String == "launch_replica" && ($0["replica_id"] as? String)?.lowercased() == replicaId })
        let replicaInstance = Self.randomInstance()
        let result = try await call(
            "POST", "/commands/\(launch["command_id"] as! String)/result", #"{"status": "succeeded", "instance_id": "\#(replicaInstance)"}"#)
        #expect(result.status == 200)
        return replicaInstance
    }

    /// An emergency replica made, launched and synced to ready: its id and instance.
    func readyReplica() async throws -> (id: String, instance: String) {
        let created = try await call("POST", "/create-emergency-replica", #"{"signal_type": "rebalance-recommendation", "urgency": "high"}"#)
        #expect(created.status == 201)
        let replicaId = try #require(created.id("replica_id"))
        let instance = try await launchReplica(replicaId)
        try await syncToReady(replicaId)
        return (replicaId, instance)
    }

    /// Plays the replica's agent: syncing, then synced and ready.
    func syncToReady(_ replicaId: String) async throws {
        let syncing = try await call("POST", "/replicas/\(replicaId)/sync-status", #"{"sync_status": "syncing", "state_transfer_progress": 40}"#)
        #expect(syncing.status == 200 && syncing.json["status"] as? String == "syncing")
        let ready = try await call(
            "POST", "/replicas/\(replicaId)/sync-status",
            #"{"sync_status": "synced", "sync_latency_ms": 150, "state_transfer_progress": 100, "status": "ready"}"#)
        #expect(ready.status == 200 && ready.json["status"] as? String == "ready")
    }
}

extension ServiceProcess.Reply {
    /// A UUID field of the answer, lower-cased like PostgreSQL prints it.
    func id(_ key: String) -> String? { (json[key] as? String)?.lowercased() }
}

enum ReplicaQuery {
    /// A connection of its own holding the row lock `sql` takes (`… FOR UPDATE`) in an open
    /// transaction, until `COMMIT` on it.
    static func holdRow(_ sql: String, _ params: [(any PGEncodable)?]) async throws -> PostgresStore {
        var config = try TestStack.postgres
        config.poolSize = 1
        let blocker = PostgresStore(configuration: config, logger: TestStack.logger)
        _ = try await blocker.withConnection { conn in
            _ = try conn.execute("BEGIN")
            return try conn.execute(sql, params)
        }
        return blocker
    }

    /// Coordinator connections waiting for a lock.
    static func coordinatorsWaitingOnALock(_ store: PostgresStore) async throws -> Int {
        try await SEFQuery.count(
            store, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'spotguard-replicas' AND wait_event_type = 'Lock'", [])
    }

    /// How many reconcile passes a coordinator process finished (its `/metrics`).
    static func cycles(_ service: ServiceProcess) async throws -> Int {
        try await metric(service, "spotguard_reconcile_cycles_total")
    }

    /// A metric without labels from the process's `/metrics` (0 when absent).
    static func metric(_ service: ServiceProcess, _ name: String) async throws -> Int {
        let text = String(decoding: try await service.send("GET", "/metrics").body, as: UTF8.self)
        let line = text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
        return line.flatMap { Int(Double($0.split(separator: " ").last ?? "") ?? 0) } ?? 0
    }

    /// Waits until the copies together finished `count` more reconcile passes (only the copy
    /// leading the reconciler runs them).
    static func awaitCycles(_ services: [ServiceProcess], _ count: Int) async throws -> Bool {
        func total() async throws -> Int {
            var sum = 0
            for s in services { sum += try await cycles(s) }
            return sum
        }
        let target = try await total() + count
        return try await TestStack.eventually { try await total() >= target }
    }

    static func one(_ store: PostgresStore, _ sql: String, _ params: [(any PGEncodable)?]) async throws -> [String?] {
        try await store.withConnection { conn in
            guard let row = try conn.query(sql, params).first else { return [] }
            return try (0..<row.count).map { try row.decodeIfPresent(String.self, at: $0) }
        }
    }
}

/// `spotguard-ingest` plus `copies` coordinators, all stopped (clean exit expected) afterwards.
func withReplicaStack(
    copies: Int = 1, environment: [String: String] = [:], perCopy: [[String: String]] = [],
    _ body: (ServiceProcess, [ServiceProcess]) async throws -> Void
) async throws {
    try await ServiceProcess.withIngest { ingest in
        var started: [ServiceProcess] = []
        do {
            for i in 0..<copies {
                let own = environment.merging(i < perCopy.count ? perCopy[i] : [:]) { _, copy in copy }
                started.append(try await ServiceProcess.start("spotguard-replicas", portVariable: "SPOTGUARD_REPLICAS_PORT", environment: own))
            }
            try await body(ingest, started)
        } catch {
            for s in started { _ = await s.stop() }
            throw error
        }
        for s in started { #expect(await s.stop() == 0, "spotguard-replicas did not shut down cleanly") }
    }
}

extension IntegrationTests {
    @Suite struct ReplicaTests {
        /// Seed 000's "Manual Replica Testing" checklist, with the agents played over HTTP.
        @Test func manualReplicaChecklist() async throws {
            let store = try await TestStack.store()
            try await withReplicaStack { ingest, _ in
                let agent = try await ReplicaAgent.make(ingest, store: store)
                // mutual exclusion, both ways (agents start with auto-switch and auto-terminate on)
                let refused = try await agent.call("POST", "/manual-replica/enable")
                #expect(refused.status == 409 && refused.errorCode == "auto_mode_active")
                let modes = try await agent.call("POST", "/config", #"{"auto_switch_enabled": false, "auto_terminate_enabled": false}"#)
                #expect(modes.status == 200 && modes.json["auto_switch_enabled"] as? Bool == false)

                // labels are an object of strings, as EC2 tags are
                for (tags, code, field) in [
                    (#"[1]"#, "invalid_type", "tags"), (#"{"owner": 5}"#, "invalid_value", "tags.owner"),
                    (#"{"": "x"}"#, "invalid_value", "tags"),
                ] {
                    let bad = try await agent.call("POST", "/replicas", #"{"tags": \#(tags)}"#)
                    #expect(bad.status == 400 && bad.errorCode == code && bad.errorField == field, "\(tags): \(bad.status) \(bad.errorCode ?? "-")")
                }
                // create → a row in replica_instances, in the cheapest pool outside the primary's zone
                let created = try await agent.call("POST", "/replicas", #"{"created_by": "ops@example.com", "tags": {"purpose": "testing"}}"#)
                #expect(created.status == 201)
                let replicaId = try #require(created.id("replica_id"))
                #expect((created.json["pool"] as? [String: Any])?["id"] as? String == agent.pool("c"))
                #expect(created.json["hourly_cost"] as? Double == 0.029)
                let row = try await ReplicaQuery.one(store, "SELECT status, replica_type, pool_id FROM replica_instances WHERE id = $1::uuid", [replicaId])
                #expect(row == ["launching", "manual", agent.pool("c")])
                let second = try await agent.call("POST", "/replicas")
                #expect(second.status == 409 && second.errorCode == "replica_exists")

                // the primary's agent launches it; the replica syncs, receiving state through the server
                let replicaInstance = try await agent.launchReplica(replicaId)
                let early = try await agent.call("POST", "/replicas/\(replicaId)/promote", "{}")
                #expect(early.status == 409 && early.errorCode == "illegal_transition")
                let state = Data([0x1f, 0x8b, 0x08, 0x00] + (0..<400).map { UInt8($0 % 251) })
                let upload = try await ingest.send(
                    "POST", "/api/agents/\(agent.id)/replicas/\(replicaId)/state-transfer", token: agent.token,
                    contentType: "application/gzip", body: state)
                #expect(upload.status == 201 && upload.json["size_bytes"] as? Int == state.count)
                let notGzip = try await ingest.send(
                    "POST", "/api/agents/\(agent.id)/replicas/\(replicaId)/state-transfer", token: agent.token,
                    contentType: "application/gzip", body: Data(repeating: 7, count: 100))
                #expect(notGzip.status == 400 && notGzip.errorCode == "not_gzip")
                let fetched = try await ingest.send("GET", "/api/agents/\(agent.id)/replicas/\(replicaId)/state-transfer", token: agent.token)
                #expect(fetched.status == 200 && fetched.body == state)
                // the seeds' agents send gzipped JSON as Content-Encoding: gzip, Content-Type: application/json
                let seedState = Data([0x1f, 0x8b, 0x08, 0x00] + (0..<300).map { UInt8($0 % 241) })
                let seedUpload = try await ingest.send(
                    "POST", "/api/agents/\(agent.id)/replicas/\(replicaId)/state-transfer", token: agent.token,
                    contentType: "application/json", body: seedState, headers: ["Content-Encoding": "gzip"])
                #expect(seedUpload.status == 201 && seedUpload.json["size_bytes"] as? Int == seedState.count)
                let plainJSON = try await ingest.send(
                    "POST", "/api/agents/\(agent.id)/replicas/\(replicaId)/state-transfer", token: agent.token, json: "{}")
                #expect(plainJSON.status == 415 && plainJSON.errorCode == "unsupported_media_type")
                let brotli = try await ingest.send(
                    "POST", "/api/agents/\(agent.id)/replicas/\(replicaId)/state-transfer", token: agent.token,
                    contentType: "application/json", body: seedState, headers: ["Content-Encoding": "br"])
                #expect(brotli.status == 415 && brotli.errorCode == "unsupported_content_encoding")
                let refetched = try await ingest.send("GET", "/api/agents/\(agent.id)/replicas/\(replicaId)/state-transfer", token: agent.token)
                #expect(refetched.status == 200 && refetched.body == seedState)
                try await agent.syncToReady(replicaId)
                let listed = try await agent.call("GET", "/replicas")
                let view = try #require((listed.json["replicas"] as? [[String: Any]])?.first)
                #expect(view["status"] as? String == "ready" && view["sync_status"] as? String == "synced")
                #expect(view["instance_id"] as? String == replicaInstance && view["created_by"] as? String == "ops@example.com")

                // promote → agent remapped to the replica's instance, switch recorded with clean prices
                let promoted = try await agent.call("POST", "/replicas/\(replicaId)/promote", #"{"demote_old_primary": false}"#)
                #expect(promoted.status == 200 && promoted.json["new_instance_id"] as? String == replicaInstance)
                #expect(promoted.json["old_instance_id"] as? String == agent.instance)
                let remapped = try await ReplicaQuery.one(
                    store, "SELECT instance_id, current_pool_id, replica_count::text FROM agents WHERE id = $1::uuid", [agent.id])
                #expect(remapped == [replicaInstance, agent.pool("c"), "0"])
                let switchRow = try await ReplicaQuery.one(
                    store,
                    """
                    SELECT event_trigger, old_instance_id, new_instance_id, old_spot_price::text, new_spot_price::text,
                           old_price_confidence::text, new_price_data_source, savings_confidence
                      FROM switches WHERE agent_id = $1::uuid
                    """, [agent.id])
                #expect(switchRow == ["manual", agent.instance, replicaInstance, "0.010000", "0.029000", "1.00", "measured", "high"])
                let active = try await ReplicaQuery.one(store, "SELECT is_active::text FROM instances WHERE id = $1", [replicaInstance])
                #expect(active == ["true"])
                // the replica's agent learns it is primary; the old primary is told to terminate itself
                let forReplica = try await agent.poll(replicaInstance)
                #expect(forReplica.map { $0["command_type"] as? String } == ["promote"])
                let forOld = try await agent.poll(agent.instance)
                #expect(forOld.map { $0["command_type"] as? String } == ["terminate"])
                #expect(forOld.first?["terminate_wait_seconds"] as? Int == 1800)
                let terminate = "/commands/\(forOld.first?["command_id"] as? String ?? "")/result"
                let shapeless = try await agent.call("POST", terminate, #"{"status": "succeeded", "result": "done"}"#)
                #expect(shapeless.status == 400 && shapeless.errorCode == "invalid_type" && shapeless.errorField == "result")
                let terminated = try await agent.call("POST", terminate, #"{"status": "succeeded"}"#)
                #expect(terminated.status == 200 && terminated.json["status"] as? String == "succeeded")
                let oldRow = try await ReplicaQuery.one(store, "SELECT is_active::text FROM instances WHERE id = $1", [agent.instance])
                #expect(oldRow == ["false"], "the old primary's instance is closed once its agent terminated it")
                let again = try await agent.call("POST", "/replicas/\(replicaId)/promote", "{}")
                #expect(again.status == 200, "promoting a promoted replica again answers as the first time")
                #expect(try await SEFQuery.count(store, "SELECT count(*) FROM switches WHERE agent_id = $1::uuid", [agent.id]) == 1)

                // delete → terminated; its pending launch is withdrawn
                let another = try await agent.call("POST", "/replicas")
                let anotherId = try #require(another.id("replica_id"))
                let deleted = try await agent.call("DELETE", "/replicas/\(anotherId)")
                #expect(deleted.status == 200 && deleted.id("replica_id") == anotherId)
                let ended = try await ReplicaQuery.one(
                    store, "SELECT status, is_active::text FROM replica_instances WHERE id = $1::uuid", [anotherId])
                #expect(ended == ["terminated", "false"])
                #expect(try await agent.poll(replicaInstance).isEmpty, "the cancelled launch is not handed out")
                let deletedAgain = try await agent.call("DELETE", "/replicas/\(anotherId)")
                #expect(deletedAgain.status == 200)
            }
        }

        /// Seed 000's "Automatic Interruption Testing" checklist: rebalance → risk → replica →
        /// sync → termination notice → promotion, logged; plus the path without a replica.
        @Test func automaticInterruptionChecklist() async throws {
            let store = try await TestStack.store()
            try await withInbox([RoutingKey.failoverCompleted, RoutingKey.failoverFailed]) { inbox in
                try await withReplicaStack { ingest, _ in
                    let agent = try await ReplicaAgent.make(ingest, store: store)
                    let bogus = try await agent.call("POST", "/interruption", #"{"signal_type": "instance-stop"}"#)
                    #expect(bogus.status == 400 && bogus.errorCode == "unknown_signal_type")

                    // a pool with no record (and no band: the middle one, 12.5 % a month) and a new
                    // instance: 0.4 × 0.5 = 0.2, recorded, no replica
                    let calm = try await agent.call("POST", "/interruption", #"{"signal_type": "rebalance-recommendation", "timestamp": 1637500000}"#)
                    #expect(calm.status == 200 && calm.json["action"] as? String == "recorded")
                    #expect(calm.json["risk_score"] as? Double == 0.2)
                    // three terminations in this pool in the last days: the rate saturates, 0.4 ≥ 0.30 → replica in the cheapest safe pool
                    try await store.transaction { [agent] conn in
                        for day in 1...3 {
                            _ = try conn.execute(
                                """
                                INSERT INTO spot_interruption_events (agent_id, instance_id, pool_id, signal_type, signal_time, detected_at)
                                VALUES ($1::uuid, $2, $3, 'termination-notice', now() - make_interval(days => $4), now() - make_interval(days => $4))
                                """, [agent.id, ReplicaAgent.randomInstance(), agent.pool("a"), day])
                        }
                    }
                    let risky = try await agent.call("POST", "/interruption", #"{"signal_type": "rebalance-recommendation", "timestamp": 1637500600}"#)
                    #expect(risky.status == 200 && risky.json["action"] as? String == "replica_created")
                    #expect(risky.json["risk_score"] as? Double == 0.4)
                    let replicaId = try #require(risky.id("replica_id"))
                    let repeated = try await agent.call("POST", "/interruption", #"{"signal_type": "rebalance-recommendation", "timestamp": 1637500600}"#)
                    #expect(repeated.json["event_id"] as? String == risky.json["event_id"] as? String)
                    let placed = try await ReplicaQuery.one(store, "SELECT replica_type, pool_id FROM replica_instances WHERE id = $1::uuid", [replicaId])
                    #expect(placed == ["automatic-rebalance", agent.pool("c")])

                    // the replica syncs in the background
                    let replicaInstance = try await agent.launchReplica(replicaId)
                    try await agent.syncToReady(replicaId)

                    // termination notice → promoted at once, logged with its failover time
                    let failover = try await agent.call(
                        "POST", "/termination-imminent", #"{"instance_id": "\#(agent.instance)", "termination_time": "2030-01-01T00:02:00Z"}"#)
                    #expect(failover.status == 200 && failover.json["action"] as? String == "replica_promoted")
                    #expect(failover.json["new_instance_id"] as? String == replicaInstance)
                    let ms = try #require(failover.json["failover_time_ms"] as? Int)
                    let logged = try await ReplicaQuery.one(
                        store,
                        """
                        SELECT response_action, replica_id::text, failover_completed::text, failover_time_ms::text, success::text
                          FROM spot_interruption_events WHERE agent_id = $1::uuid AND instance_id = $2 AND signal_type = 'termination-notice'
                        """, [agent.id, agent.instance])
                    #expect(logged == ["replica_promoted", replicaId, "true", String(ms), "true"])
                    let switchRow = try await ReplicaQuery.one(
                        store, "SELECT event_trigger, new_instance_id, old_terminated_at::text FROM switches WHERE agent_id = $1::uuid", [agent.id])
                    #expect(switchRow.prefix(2) == ["failover", replicaInstance] && switchRow.last != nil)
                    let old = try await ReplicaQuery.one(store, "SELECT is_active::text FROM instances WHERE id = $1", [agent.instance])
                    #expect(old == ["false"])

                    // a repeated notice answers the same and promotes nothing more (in the seed's
                    // spelling, `instance-termination`, an alias of termination-notice)
                    let noticeAgain = try await agent.call(
                        "POST", "/interruption", #"{"signal_type": "instance-termination", "instance_id": "\#(agent.instance)"}"#)
                    #expect(noticeAgain.status == 200 && noticeAgain.json["new_instance_id"] as? String == replicaInstance)
                    #expect(noticeAgain.json["failover_time_ms"] as? Int == ms)
                    #expect(try await SEFQuery.count(store, "SELECT count(*) FROM switches WHERE agent_id = $1::uuid", [agent.id]) == 1)

                    // another agent without a replica: 409 with the seed's body, an emergency replica
                    let bare = try await ReplicaAgent.make(ingest, store: store)
                    let noReplica = try await bare.call("POST", "/termination-imminent", #"{"termination_time": "2030-01-01T00:02:00Z"}"#)
                    #expect(noReplica.status == 409 && noReplica.json["action"] as? String == "emergency_snapshot_required")
                    #expect(noReplica.json["error"] as? String == "No replica available")
                    let emergencyId = try #require(noReplica.id("emergency_replica_id"))
                    let emergency = try await ReplicaQuery.one(store, "SELECT replica_type FROM replica_instances WHERE id = $1::uuid", [emergencyId])
                    #expect(emergency == ["automatic-termination"])
                    let orders = try await bare.poll(bare.instance).compactMap { $0["command_type"] as? String }
                    #expect(orders.sorted() == ["launch_replica", "snapshot"], "the dying primary is told to snapshot and to launch")
                    let noReplicaAgain = try await bare.call("POST", "/termination-imminent", "{}")
                    #expect(noReplicaAgain.id("emergency_replica_id") == emergencyId, "one emergency replica per notice")

                    // failover.completed and failover.failed reached the bus (through the outbox)
                    func reports() throws -> [FailoverReport] {
                        try inbox.all.map { try $0.decode(FailoverReport.self).payload }
                            .filter { [agent.id, bare.id].contains($0.agentId.uuidString.lowercased()) }
                    }
                    #expect(try await TestStack.eventually { try reports().count == 2 })
                    let completed = try #require(try reports().first { $0.reason == nil })
                    #expect(completed.newInstanceId == replicaInstance && completed.failoverTimeMs == ms)
                    #expect(try reports().first { $0.reason != nil }?.replicaId?.uuidString.lowercased() == emergencyId)
                }
            }
        }

        /// Manual mode: exactly one replica per agent with three coordinators (one leading the
        /// reconciler, a pass every second, the others answering calls); a promotion and a lost
        /// replica are replaced; disabling terminates them all.
        @Test func manualModeKeepsExactlyOneReplicaAcrossThreeCoordinators() async throws {
            let store = try await TestStack.store()
            try await withReplicaStack(copies: 3, environment: ["SPOTGUARD_REPLICAS_RECONCILE_SECONDS": "1"]) { ingest, coordinators in
                var agents: [ReplicaAgent] = []
                for _ in 0..<6 { agents.append(try await ReplicaAgent.make(ingest, store: store)) }
                let ids = agents.map(\.id)
                func activeManual() async throws -> [String: Int] {
                    try await store.withConnection { conn in
                        var out: [String: Int] = [:]
                        for row in try conn.query(
                            """
                            SELECT agent_id::text, count(*)::int FROM replica_instances
                             WHERE agent_id = ANY($1::uuid[]) AND replica_type = 'manual' AND is_active GROUP BY agent_id
                            """, [PGArray(ids)])
                        { out[try row.decode(String.self, at: 0)] = try row.decode(Int.self, at: 1) }
                        return out
                    }
                }
                func created() async throws -> Int {
                    try await SEFQuery.count(store, "SELECT count(*) FROM replica_instances WHERE agent_id = ANY($1::uuid[])", [PGArray(ids)])
                }
                // the seed's way: flags set in the database; the reconcilers notice
                _ = try await store.withConnection { conn in
                    try conn.execute(
                        """
                        UPDATE agents SET auto_switch_enabled = false, auto_terminate_enabled = false, manual_replica_enabled = true
                         WHERE id = ANY($1::uuid[])
                        """, [PGArray(ids)])
                }
                #expect(try await TestStack.eventually { try await activeManual().count == ids.count })
                // several more passes change nothing
                let settled = try await created()
                #expect(settled == ids.count)
                let cycles = try await SEFQuery.count(
                    store, "SELECT count(*) FROM system_events WHERE event_type = 'replica.launching' AND agent_id = ANY($1::uuid[])", [PGArray(ids)])
                #expect(cycles == ids.count)
                #expect(try await ReplicaQuery.awaitCycles(coordinators, 3))
                let afterCycles = try await created()
                let perAgent = Set(try await activeManual().values)
                #expect(afterCycles == settled && perAgent == [1])

                // switching to the ready replica gets the new primary a new replica at once
                let first = agents[0]
                let replicaId = try #require(
                    try await ReplicaQuery.one(
                        store, "SELECT id::text FROM replica_instances WHERE agent_id = $1::uuid AND is_active", [first.id]
                    ).first ?? nil)
                let notReady = try await first.call("POST", "/manual-switch")
                #expect(notReady.status == 409 && notReady.errorCode == "replica_not_ready")
                let replicaInstance = try await first.launchReplica(replicaId)
                try await first.syncToReady(replicaId)
                let switched = try await first.call("POST", "/manual-switch")
                #expect(switched.status == 200 && switched.json["new_instance_id"] as? String == replicaInstance)
                let next = try #require(switched.id("new_replica_id"))
                #expect(next != replicaId)
                let sef = try await first.call("GET", "/sef-status")
                #expect(sef.json["instance_id"] as? String == replicaInstance)
                #expect((sef.json["replicas"] as? [[String: Any]])?.map { ($0["id"] as? String)?.lowercased() } == [next])
                #expect(((sef.json["modes"] as? [String: Any])?["manual_replica_enabled"]) as? Bool == true)
                let noAuto = try await first.call("POST", "/config", #"{"auto_switch_enabled": true}"#)
                #expect(noAuto.status == 409 && noAuto.errorCode == "manual_mode_active")

                // a replica lost behind the coordinators' back (failed in the database) is replaced by a reconcile
                let second = agents[1]
                _ = try await store.withConnection { conn in
                    try conn.execute(
                        "UPDATE replica_instances SET status = 'failed', is_active = false, terminated_at = now() WHERE agent_id = $1::uuid AND is_active",
                        [second.id])
                }
                #expect(try await TestStack.eventually { try await activeManual()[second.id] == 1 })
                #expect(Set(try await activeManual().values) == [1])

                // disabling terminates them all
                for agent in agents {
                    let off = try await agent.call("POST", "/manual-replica/disable")
                    #expect(off.status == 200 && off.json["terminated_replicas"] as? Int == 1)
                }
                #expect(try await activeManual().isEmpty)
            }
        }

        /// kill -9 of the coordinator holding a termination notice: the broker hands the call to
        /// the second copy, which promotes exactly once, and the waiting agent gets the answer.
        @Test func failoverSurvivesACoordinatorKilledMidway() async throws {
            let store = try await TestStack.store()
            try await ServiceProcess.withIngest { ingest in
                // a short lease: the reconciler's lead of the copy killed below lapses at once for the tests after it
                let first = try await ServiceProcess.start(
                    "spotguard-replicas", portVariable: "SPOTGUARD_REPLICAS_PORT",
                    environment: ["SPOTGUARD_REPLICAS_RECONCILE_SECONDS": "1", "SPOTGUARD_REPLICAS_LEASE_SECONDS": "2"])
                let agent = try await ReplicaAgent.make(ingest, store: store)
                let (replicaId, replicaInstance) = try await agent.readyReplica()

                // hold the agent's row, so the coordinator that takes the notice blocks inside its transaction
                let blocker = try await ReplicaQuery.holdRow("SELECT 1 FROM agents WHERE id = $1::uuid FOR UPDATE", [agent.id])
                let notice = Task { try await agent.call("POST", "/termination-imminent", #"{"instance_id": "\#(agent.instance)"}"#) }
                let blocked = try await TestStack.eventually { try await ReplicaQuery.coordinatorsWaitingOnALock(store) == 1 }
                #expect(blocked, "the coordinator never reached the agent's lock")
                first.process.signal(SIGKILL)
                #expect(await first.process.exitStatus() == 128 + SIGKILL)
                let second = try await ServiceProcess.start("spotguard-replicas", portVariable: "SPOTGUARD_REPLICAS_PORT")
                _ = try await blocker.withConnection { try $0.execute("COMMIT") }
                await blocker.shutdown()

                let answer = try await notice.value
                #expect(answer.status == 200 && answer.json["new_instance_id"] as? String == replicaInstance)
                #expect(try await SEFQuery.count(store, "SELECT count(*) FROM switches WHERE agent_id = $1::uuid", [agent.id]) == 1)
                let promoted = try await ReplicaQuery.one(store, "SELECT status FROM replica_instances WHERE id = $1::uuid", [replicaId])
                #expect(promoted == ["promoted"])
                #expect(await second.stop() == 0)
            }
        }

        /// A coordinator copy paused (SIGSTOP) inside a termination notice's transaction — the
        /// agent's row locked, the promotion half done — cannot commit after another copy acted:
        /// the database ends the paused transaction after the copy's lease (its
        /// idle-in-transaction timeout), the other copy takes the agent's retried call and
        /// promotes, and the paused copy, resumed, finds its transaction gone. One promotion, one
        /// switch, the answer given while the first copy still slept.
        @Test func aCopyPausedInsideAFailoverCannotCommitAfterAnotherActed() async throws {
            let store = try await TestStack.store()
            try await ServiceProcess.withIngest { ingest in
                // a 2 s lease is a 2 s idle-in-transaction limit; 2 s broker heartbeats give its call back
                let first = try await ServiceProcess.start(
                    "spotguard-replicas", portVariable: "SPOTGUARD_REPLICAS_PORT",
                    environment: [
                        "SPOTGUARD_REPLICAS_RECONCILE_SECONDS": "1", "SPOTGUARD_REPLICAS_LEASE_SECONDS": "2", "SPOTGUARD_AMQP_HEARTBEAT_SECONDS": "2",
                    ])
                let agent = try await ReplicaAgent.make(ingest, store: store)
                let (replicaId, replicaInstance) = try await agent.readyReplica()

                // hold the replica's row: the copy that takes the notice locks the agent, then waits here
                let blocker = try await ReplicaQuery.holdRow("SELECT 1 FROM replica_instances WHERE id = $1::uuid FOR UPDATE", [replicaId])
                let notice = #"{"instance_id": "\#(agent.instance)"}"#
                let firstCall = Task { try await agent.call("POST", "/termination-imminent", notice) }
                let blocked = try await TestStack.eventually { try await ReplicaQuery.coordinatorsWaitingOnALock(store) == 1 }
                #expect(blocked, "the coordinator never reached the replica's lock")
                first.process.signal(SIGSTOP)
                let second = try await ServiceProcess.start("spotguard-replicas", portVariable: "SPOTGUARD_REPLICAS_PORT")
                // the paused copy's statement gets its lock now, and its transaction then sits idle
                _ = try await blocker.withConnection { try $0.execute("COMMIT") }
                await blocker.shutdown()

                // what an agent does: the call again until it is answered
                var answer = try await firstCall.value
                let deadline = ContinuousClock.now + .seconds(40)
                while answer.status != 200, ContinuousClock.now < deadline {
                    answer = try await agent.call("POST", "/termination-imminent", notice)
                }
                #expect(answer.status == 200 && answer.json["new_instance_id"] as? String == replicaInstance, "\(answer.status) \(answer.json)")

                first.process.signal(SIGCONT)
                // the resumed copy is back on the bus and the database, and has done what it would do
                let back = try await TestStack.eventually(timeout: .seconds(30)) { (try? await first.send("GET", "/health/ready"))?.status == 200 }
                #expect(back, "the resumed copy did not come back")
                #expect(try await SEFQuery.count(store, "SELECT count(*) FROM switches WHERE agent_id = $1::uuid", [agent.id]) == 1)
                #expect(
                    try await SEFQuery.count(
                        store, "SELECT count(*) FROM spot_interruption_events WHERE agent_id = $1::uuid AND response_action = 'replica_promoted'",
                        [agent.id]) == 1)
                let promoted = try await ReplicaQuery.one(store, "SELECT status FROM replica_instances WHERE id = $1::uuid", [replicaId])
                #expect(promoted == ["promoted"])
                #expect(await second.stop() == 0)
                #expect(await first.stop() == 0)
            }
        }

        /// Commands reach a long-polling agent when issued; results close them.
        @Test func longPollIsWokenByANewCommand() async throws {
            let store = try await TestStack.store()
            try await withReplicaStack { ingest, _ in
                let agent = try await ReplicaAgent.make(ingest, store: store)
                #expect(try await agent.poll(agent.instance, wait: 0).isEmpty)
                let started = ContinuousClock.now
                let poll = Task { try await agent.call("GET", "/pending-commands?instance_id=\(agent.instance)&wait=20") }
                // once the poll holds (ingest's gauge says so), issue a command
                #expect(try await TestStack.eventually { try await ReplicaQuery.metric(ingest, "spotguard_command_polls_waiting") >= 1 })
                let created = try await agent.call("POST", "/create-emergency-replica", #"{"signal_type": "termination-notice"}"#)
                #expect(created.status == 201)
                let commands = try await poll.value.json["commands"] as? [[String: Any]] ?? []
                #expect(ContinuousClock.now - started < .seconds(15), "the poll was answered by the wake-up, not its 20 s timeout")
                let launch = try #require(commands.first)
                #expect(launch["command_type"] as? String == "launch_replica" && launch["priority"] as? Int == 10)
                #expect((launch["payload"] as? [String: Any])?["pool_id"] as? String == agent.pool("c"))
                let id = try #require(launch["command_id"] as? String)
                let failed = try await agent.call("POST", "/commands/\(id)/result", #"{"status": "failed", "error_message": "InsufficientInstanceCapacity"}"#)
                #expect(failed.status == 200)
                let replica = try await ReplicaQuery.one(
                    store, "SELECT status, failure_reason FROM replica_instances WHERE id = $1::uuid", [created.id("replica_id")])
                #expect(replica == ["failed", "launch failed: InsufficientInstanceCapacity"])
                let late = try await agent.call("POST", "/commands/\(id)/result", #"{"status": "succeeded", "instance_id": "i-0123456789abcdef0"}"#)
                #expect(late.status == 409 && late.errorCode == "command_closed")
                let bad = try await agent.call("GET", "/pending-commands?wait=999")
                #expect(bad.status == 400 && bad.errorField == "wait")
            }
        }

        /// An automatic switch is void once its agent's auto-switch was turned off (a decision
        /// pass that read the agent just before the change): the poll cancels it instead of
        /// handing it out. A switch an operator forced is still delivered.
        @Test func anAutomaticSwitchIsVoidOnceAutoSwitchIsOff() async throws {
            let store = try await TestStack.store()
            try await withReplicaStack { ingest, _ in
                let agent = try await ReplicaAgent.make(ingest, store: store)
                let row = try await ReplicaQuery.one(store, "SELECT client_id::text FROM agents WHERE id = $1::uuid", [agent.id])
                let (client, agentId) = (try #require(UUID(uuidString: row.first.flatMap { $0 } ?? "")), try #require(UUID(uuidString: agent.id)))
                func issue(_ by: String) async throws -> UUID {
                    try await store.transaction { conn in
                        try Commands.issue(
                            try .init(
                                .switch, clientId: client, agentId: agentId, targetInstanceId: agent.instance, payload: [String: String](),
                                targetMode: .onDemand, issuedBy: by),
                            producer: "test", on: conn)
                    }
                }
                let automatic = try await issue("decisions")
                let off = try await agent.call("POST", "/config", #"{"auto_switch_enabled": false}"#)
                #expect(off.status == 200)
                let forced = try await issue("user")
                let delivered = try await agent.poll(agent.instance, wait: 0).compactMap { $0["command_id"] as? String }
                #expect(delivered == [forced.uuidString.lowercased()] || delivered == [forced.uuidString], "\(delivered)")
                let voided = try await ReplicaQuery.one(store, "SELECT status, error_message FROM commands WHERE id = $1", [automatic.uuidString])
                #expect(voided == ["cancelled", "superseded: auto-switch was turned off after it was issued"])
            }
            await store.shutdown()
        }

        /// Agents silent for 10 minutes go offline and replicas stuck past 180 s fail, each
        /// announced on the bus; a rebalance replica unused after 2 hours is terminated (the
        /// clocks are moved back in the database).
        /// A primary promoted by a failover and lost before its first heartbeat is a loss of its
        /// own: its interruption is recorded (and counted) like the first, not swallowed as a
        /// repeat of the previous primary's because both last spoke at the same heartbeat.
        @Test func aPrimaryLostBeforeItSpokeIsALossOfItsOwn() async throws {
            let store = try await TestStack.store()
            try await withReplicaStack(environment: ["SPOTGUARD_REPLICAS_SILENCE_SECONDS": "2", "SPOTGUARD_REPLICAS_RECONCILE_SECONDS": "1"]) {
                ingest, _ in
                let agent = try await ReplicaAgent.make(ingest, store: store)
                _ = try await store.withConnection { conn in
                    try conn.execute("UPDATE agents SET last_heartbeat_at = now() - interval '1 minute' WHERE id = $1::uuid", [agent.id])
                }
                var primary = agent.instance
                for loss in 1...2 {
                    // a ready replica, launched by whichever instance is the primary now
                    let created = try await agent.call("POST", "/create-emergency-replica", #"{"signal_type": "rebalance-recommendation"}"#)
                    let replicaId = try #require(created.id("replica_id"), "loss \(loss): \(created.status)")
                    var launch: [String: Any]?
                    _ = try await TestStack.eventually {
                        launch = try await agent.poll(primary).first { ($0["replica_id"] as? String)?.lowercased() == replicaId }
                        return launch != nil
                    }
                    let replicaInstance = ReplicaAgent.randomInstance()
                    let launched = try await agent.call(
                        "POST", "/commands/\(try #require(launch?["command_id"] as? String))/result",
                        #"{"status": "succeeded", "instance_id": "\#(replicaInstance)"}"#)
                    #expect(launched.status == 200)
                    try await agent.syncToReady(replicaId)
                    // the primary stays silent: the replica's agent is asked to look, and finds it gone
                    var check: [String: Any]?
                    _ = try await TestStack.eventually(timeout: .seconds(30)) {
                        check = try await agent.poll(replicaInstance).first { $0["command_type"] as? String == "check_primary" }
                        return check != nil
                    }
                    let answered = try await agent.call(
                        "POST", "/commands/\(try #require(check?["command_id"] as? String, "loss \(loss): no check_primary"))/result",
                        #"{"status": "succeeded", "result": {"primary_state": "terminated"}}"#)
                    #expect(answered.status == 200)
                    #expect(try await ReplicaQuery.one(store, "SELECT instance_id FROM agents WHERE id = $1::uuid", [agent.id]) == [replicaInstance])
                    primary = replicaInstance
                }
                let losses = try await SEFQuery.count(
                    store, "SELECT count(*) FROM spot_interruption_events WHERE agent_id = $1::uuid AND signal_type = 'instance-lost' AND success",
                    [agent.id])
                #expect(losses == 2, "each lost primary is an interruption of its own")
            }
        }

        @Test func silentAgentsAndStuckReplicasAreReported() async throws {
            let store = try await TestStack.store()
            try await withInbox([RoutingKey.agentOffline, RoutingKey.replicaAlert]) { inbox in
                try await withReplicaStack(environment: ["SPOTGUARD_REPLICAS_RECONCILE_SECONDS": "1"]) { ingest, coordinators in
                    let agent = try await ReplicaAgent.make(ingest, store: store)
                    let created = try await agent.call("POST", "/replicas")
                    let replicaId = try #require(created.id("replica_id"))
                    let rebalance = try #require(
                        try await agent.call(
                            "POST", "/create-emergency-replica", #"{"signal_type": "rebalance-recommendation"}"#
                        ).id("replica_id"))
                    _ = try await store.withConnection { conn in
                        _ = try conn.execute("UPDATE agents SET last_heartbeat_at = now() - interval '11 minutes' WHERE id = $1::uuid", [agent.id])
                        _ = try conn.execute(
                            "UPDATE replica_instances SET created_at = now() - interval '2 hours 1 minute' WHERE id = $1::uuid", [rebalance])
                        return try conn.execute(
                            "UPDATE replica_instances SET status_changed_at = now() - interval '181 seconds' WHERE id = $1::uuid", [replicaId])
                    }
                    func alerts() throws -> [String] {
                        try inbox.all.map { try $0.decode(AgentAlert.self).payload }.filter { $0.agentId.uuidString.lowercased() == agent.id }.map(\.kind)
                    }
                    #expect(try await TestStack.eventually { try alerts().count >= 2 })
                    #expect(Set(try alerts()) == ["agent_offline", "replica_stuck"])
                    #expect(try await ReplicaQuery.one(store, "SELECT status FROM agents WHERE id = $1::uuid", [agent.id]) == ["offline"])
                    let failed = try await ReplicaQuery.one(store, "SELECT status, failure_reason FROM replica_instances WHERE id = $1::uuid", [replicaId])
                    #expect(failed == ["failed", "stuck in launching for more than 180 s"])
                    let expired = try await ReplicaQuery.one(store, "SELECT status, failure_reason FROM replica_instances WHERE id = $1::uuid", [rebalance])
                    #expect(expired == ["terminated", "no termination followed the rebalance recommendation"])
                    #expect(try await ReplicaQuery.awaitCycles(coordinators, 2))
                    #expect(try alerts().count == 2, "later passes announce nothing twice")
                }
            }
        }
    }
}
