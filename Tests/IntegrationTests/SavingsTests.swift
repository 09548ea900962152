import Foundation
import SpotRuntime
import SpotStore
import Testing

extension IntegrationTests {
    @Suite struct SavingsTests {
        /// A known day: the agent ran 2 h in pool a (0.04 $/h) and, after a switch, 2 h in pool b
        /// (0.02 $/h) while the old instance ran 30 min more; a replica ran 2 h in pool b; on-demand
        /// costs 0.10 $/h. On-demand baseline 4 h × 0.10 = 0.40; actual 2.5 × 0.04 + 2 × 0.02 = 0.14;
        /// replica 2 × 0.02 = 0.04; savings 0.22 (55 %). The client reads it, and its switch
        /// history with the decision's reason; another client reads neither.
        @Test func savingsAndSwitchHistoryPerClient() async throws {
            let store = try await TestStack.store()
            try await ServiceProcess.with(try await ServiceProcess.console()) { console in
                let admin = try TestStack.env.require("SPOTGUARD_ADMIN_TOKEN")
                func client(_ name: String) async throws -> (id: String, token: String) {
                    let reply = try await console.send("POST", "/api/admin/clients", token: admin, json: #"{"name": "\#(name)"}"#)
                    return (try #require(reply.id("client_id")), try #require(reply.json["token"] as? String))
                }
                let owner = try await client("Savings owner")
                let other = try await client("Savings other")
                let family = TestStack.uniqueName("sv").filter(\.isLetter).lowercased().prefix(12)
                let (poolA, poolB) = ("\(family).large.us-east-1a", "\(family).large.us-east-1b")
                let (old, new, replicaInstance) = (ReplicaAgent.randomInstance(), ReplicaAgent.randomInstance(), ReplicaAgent.randomInstance())
                // the day before yesterday, 00:00 UTC
                let day = Date(timeIntervalSince1970: ((Date().timeIntervalSince1970 / 86_400).rounded(.down) - 2) * 86_400)
                @Sendable func at(_ hours: Double) -> Date { day.addingTimeInterval(hours * 3600) }
                let agent = try await store.transaction { conn -> String in
                    for pool in [poolA, poolB] {
                        try conn.execute(
                            "INSERT INTO spot_pools (id, pool_name, instance_type, region, az) VALUES ($1, $1, $2, 'us-east-1', $3)",
                            [pool, "\(family).large", String(pool.suffix(10))])
                    }
                    try conn.execute(
                        """
                        INSERT INTO pricing_snapshots_clean (pool_id, time_bucket, spot_price, on_demand_price, confidence_score, data_source, source_type)
                        SELECT p.pool, $3::timestamptz + b * interval '5 minutes', p.price, 0.10, 1.0, 'measured', 'primary'
                          FROM (VALUES ($1, 0.04), ($2, 0.02)) p(pool, price), generate_series(0, 71) b
                        """, [poolA, poolB, day])
                    let agent = try conn.query(
                        """
                        INSERT INTO agents (client_id, logical_agent_id, instance_id, instance_type, region, az, current_pool_id, current_mode)
                        VALUES ($1::uuid, 'web-savings', $2, $3, 'us-east-1', 'us-east-1b', $4, 'spot') RETURNING id::text
                        """, [owner.id, new, "\(family).large", poolB])[0].decode(String.self, at: 0)
                    try conn.execute(
                        """
                        INSERT INTO instances (id, client_id, agent_id, instance_type, region, az, current_mode, current_pool_id, is_active,
                                               installed_at, terminated_at)
                        VALUES ($1, $3::uuid, $4::uuid, $5, 'us-east-1', 'us-east-1a', 'spot', $6, false, $8, $9),
                               ($2, $3::uuid, $4::uuid, $5, 'us-east-1', 'us-east-1b', 'spot', $7, false, $10, $11)
                        """, [old, new, owner.id, agent, "\(family).large", poolA, poolB, at(0), at(2.5), at(2), at(4)])
                    let command = try conn.query(
                        """
                        INSERT INTO commands (client_id, agent_id, command_type, target_mode, target_pool_id, status, issued_by, created_at)
                        VALUES ($1::uuid, $2::uuid, 'switch', 'spot', $3, 'succeeded', 'decisions', $4) RETURNING id::text
                        """, [owner.id, agent, poolB, at(1.9)])[0].decode(String.self, at: 0)
                    try conn.execute(
                        """
                        INSERT INTO agent_decision_history (agent_id, client_id, engine, decision, current_pool_id, target_pool_id, target_mode,
                                                            inputs, scores, expected_savings_per_hour, reason, command_id, decided_at)
                        VALUES ($1::uuid, $2::uuid, 'rules', 'switch_pool', $3, $4, 'spot', '{}', '{}', 0.02, $5, $6::uuid, $7)
                        """, [agent, owner.id, poolA, poolB, "\(poolB) is cheaper by 0.02000 $/h over recent hours", command, at(1.9)])
                    try conn.execute(
                        """
                        INSERT INTO switches (client_id, agent_id, command_id, old_instance_id, old_mode, old_pool_id, new_instance_id, new_mode,
                                              new_pool_id, on_demand_price, old_spot_price, new_spot_price, old_price_confidence,
                                              new_price_confidence, old_price_data_source, new_price_data_source, savings_impact,
                                              savings_confidence, event_trigger, initiated_at, instance_ready_at, old_terminated_at)
                        VALUES ($1::uuid, $2::uuid, $3::uuid, $4, 'spot', $5, $6, 'spot', $7, 0.10, 0.04, 0.02, 1, 0.80, 'measured',
                                'interpolated', 0.02, 'medium', 'auto_switch', $8, $9, $10)
                        """, [owner.id, agent, command, old, poolA, new, poolB, at(1.95), at(2), at(2.5)])
                    try conn.execute(
                        """
                        INSERT INTO replica_instances (agent_id, instance_id, replica_type, pool_id, status, is_active, created_at, launched_at,
                                                       terminated_at, status_changed_at)
                        VALUES ($1::uuid, $2, 'manual', $3, 'terminated', false, $4, $4, $5, $5)
                        """, [agent, replicaInstance, poolB, at(1), at(3)])
                    return agent
                }
                let summary = try await decisions(["savings", "--from", String(ISO8601DateFormatter().string(from: day).prefix(10))])
                #expect((summary["agent_days"] as? Int ?? 0) >= 1)
                let rows = try await ReplicaQuery.one(
                    store,
                    """
                    SELECT on_demand_cost::float8::text, actual_cost::float8::text, replica_cost::float8::text, savings::float8::text,
                           savings_percent::text, instance_hours::float8::text,
                           (SELECT count(*) FROM replica_cost_log WHERE agent_id = $1::uuid)::text
                      FROM savings_snapshots WHERE agent_id = $1::uuid AND day = $2::timestamptz::date
                    """, [agent, day])
                #expect(rows == ["0.4", "0.14", "0.04", "0.22", "55.00", "4.5", "2"])
                // a second run writes the same figures and no second replica slice
                _ = try await decisions(["savings", "--from", String(ISO8601DateFormatter().string(from: day).prefix(10))])
                #expect(try await SEFQuery.count(store, "SELECT count(*) FROM replica_cost_log WHERE agent_id = $1::uuid", [agent]) == 2)

                let dayText = String(ISO8601DateFormatter().string(from: day).prefix(10))
                let savings = try await console.send("GET", "/api/client/\(owner.id)/savings?from=\(dayText)&to=\(dayText)", token: owner.token)
                #expect(savings.status == 200)
                let total = savings.json["total"] as? [String: Any] ?? [:]
                #expect((total["savings"] as? Double).map { abs($0 - 0.22) < 1e-9 } == true)
                #expect(total["savings_percent"] as? Double == 55)
                #expect((total["replica_cost"] as? Double).map { abs($0 - 0.04) < 1e-9 } == true)
                let agents = savings.json["agents"] as? [[String: Any]] ?? []
                #expect(agents.map { $0["logical_agent_id"] as? String } == ["web-savings"])
                #expect((savings.json["daily"] as? [[String: Any]])?.compactMap { $0["day"] as? String } == [dayText])

                let history = try await console.send("GET", "/api/client/\(owner.id)/switches?limit=10", token: owner.token)
                #expect(history.status == 200)
                let first = (history.json["switches"] as? [[String: Any]])?.first ?? [:]
                #expect(first["event_trigger"] as? String == "auto_switch")
                #expect((first["reason"] as? String)?.contains(poolB) == true)
                #expect((first["new"] as? [String: Any])?["price_data_source"] as? String == "interpolated")
                #expect(first["savings_confidence"] as? String == "medium")
                #expect((first["total_seconds"] as? Double).map { abs($0 - 180) < 1e-6 } == true)

                // an instance of that day reported late (an agent back from an outage): the next
                // run, without --from, recomputes from its day
                let late = try await store.transaction { conn -> String in
                    let agent = try conn.query(
                        """
                        INSERT INTO agents (client_id, logical_agent_id, instance_type, region, current_mode)
                        VALUES ($1::uuid, 'web-late', $2, 'us-east-1', 'spot') RETURNING id::text
                        """, [owner.id, "\(family).large"])[0].decode(String.self, at: 0)
                    try conn.execute(
                        """
                        INSERT INTO instances (id, client_id, agent_id, instance_type, region, az, current_mode, current_pool_id, is_active,
                                               installed_at, terminated_at)
                        VALUES ($1, $2::uuid, $3::uuid, $4, 'us-east-1', 'us-east-1a', 'spot', $5, false, $6, $7)
                        """, [ReplicaAgent.randomInstance(), owner.id, agent, "\(family).large", poolA, at(6), at(8)])
                    return agent
                }
                _ = try await decisions(["savings"])
                let lateRow = try await ReplicaQuery.one(
                    store,
                    "SELECT on_demand_cost::float8::text, savings::float8::text FROM savings_snapshots WHERE agent_id = $1::uuid AND day = $2::timestamptz::date",
                    [late, day])
                #expect(lateRow == ["0.2", "0.12"])

                // tenant isolation and bad input
                let foreign = try await console.send("GET", "/api/client/\(owner.id)/savings", token: other.token)
                #expect(foreign.status == 404 && foreign.errorCode == "client_not_found")
                let foreignSwitches = try await console.send("GET", "/api/client/\(owner.id)/switches", token: other.token)
                #expect(foreignSwitches.status == 404)
                let none = try await console.send("GET", "/api/client/\(other.id)/switches", token: other.token)
                #expect(none.status == 200 && none.json["count"] as? Int == 0)
                let badLimit = try await console.send("GET", "/api/client/\(owner.id)/switches?limit=0", token: owner.token)
                #expect(badLimit.status == 400 && badLimit.errorField == "limit")
                let badDate = try await console.send("GET", "/api/client/\(owner.id)/savings?from=yesterday", token: owner.token)
                #expect(badDate.status == 400 && badDate.errorCode == "invalid_date")
                let noToken = try await console.send("GET", "/api/client/\(owner.id)/savings")
                #expect(noToken.status == 401)
            }
            await store.shutdown()
        }
    }
}
