import Foundation
import SpotModels
import SpotRuntime
import SpotStore
import Testing
import ToolSupport

/// Runs `spotguard-decisions ARGS` (a one-shot subcommand) against the test stack; returns its JSON summary.
func decisions(_ arguments: [String]) async throws -> [String: Any] {
    let output = FileManager.default.temporaryDirectory.appendingPathComponent("decisions-\(UUID()).json").path
    defer { try? FileManager.default.removeItem(atPath: output) }
    let status = try await ChildProcess(try TestStack.binDir + "/spotguard-decisions", arguments, output: output).exitStatus()
    #expect(status == 0, "spotguard-decisions \(arguments) exited \(status)")
    return (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output)))) as? [String: Any] ?? [:]
}

func decisionPass() async throws -> [String: Any] { try await decisions(["pass"]) }

extension IntegrationTests {
    @Suite struct DecisionTests {
        /// A price drop in a pool, reported by an agent and cleaned by the SEF, makes the pass
        /// switch the auto-switch agent there (command + ledger row, fetched by its long-poll)
        /// and leaves the manual-mode agent alone — three passes at once make that one switch
        /// once; the agent's switch report is then recorded.
        @Test func aPriceDropSwitchesAutoAgentsOnly() async throws {
            let store = try await TestStack.store()
            try await ServiceProcess.withIngest { ingest in
                try await withSEF {
                    let fleet = try await PriceFleet.make(ingest)
                    // PriceFleet's agent runs in pool a with auto-switch on (the default); a second one in manual mode
                    let autoAgent = fleet.agent.lowercased()
                    let instance = "i-0a1b2c3d4e5f60718"
                    let reg = try await ingest.send(
                        "POST", "/api/agents/register", token: fleet.token,
                        json: """
                            {"logical_agent_id": "manual-\(fleet.family)", "instance_id": "\(ReplicaAgent.randomInstance())", "pool_id": "\(fleet.pool("a"))", "mode": "spot"}
                            """)
                    let manual = try #require(reg.id("agent_id"))
                    _ = try await store.withConnection { conn in
                        try conn.execute(
                            "UPDATE agents SET auto_switch_enabled = false, auto_terminate_enabled = false, manual_replica_enabled = true WHERE id = $1::uuid",
                            [manual])
                    }
                    func clean(_ az: String) async throws -> String? {
                        try await ReplicaQuery.one(
                            store, "SELECT spot_price::text FROM pricing_snapshots_clean WHERE pool_id = $1 ORDER BY time_bucket DESC LIMIT 1",
                            [fleet.pool(az)]
                        ).first ?? nil
                    }
                    func commands(_ agent: String) async throws -> Int {
                        try await SEFQuery.count(store, "SELECT count(*) FROM commands WHERE agent_id = $1::uuid AND command_type = 'switch'", [agent])
                    }
                    let now = Date()
                    #expect(try await fleet.report([("a", 0.040), ("b", 0.041), ("c", 0.043)], at: now - 2) == 202)
                    #expect(try await TestStack.eventually { try await clean("c") == "0.043000" })
                    _ = try await decisionPass()
                    #expect(try await commands(autoAgent) == 0, "the agent's pool is the cheapest: it stays")

                    // pool b drops to half
                    #expect(try await fleet.report([("a", 0.040), ("b", 0.020), ("c", 0.043)], at: now - 1) == 202)
                    #expect(try await TestStack.eventually { try await clean("b") == "0.020000" })
                    // while its agent reports no subnet in b's zone, b is no target
                    func usable(_ zones: [String]?) async throws {
                        _ = try await store.withConnection { conn in
                            try conn.execute(
                                "UPDATE agents SET usable_zones = string_to_array($2, ',') WHERE id = $1::uuid",
                                [autoAgent, zones.map { $0.map { String(fleet.pool($0).split(separator: ".").last!) }.joined(separator: ",") }])
                        }
                    }
                    try await usable(["a", "c"])
                    _ = try await decisionPass()
                    #expect(try await commands(autoAgent) == 0, "b's zone has no subnet of the workload's VPC")
                    try await usable(nil)
                    // three copies of the engine pass at once: the same one switch as one copy would make
                    async let first = decisionPass()
                    async let second = decisionPass()
                    async let third = decisionPass()
                    let summaries = try await [first, second, third]
                    #expect(summaries.map { $0["switches"] as? Int ?? 0 }.reduce(0, +) >= 1)
                    #expect(try await commands(autoAgent) == 1)
                    #expect(
                        try await SEFQuery.count(
                            store, "SELECT count(*) FROM agent_decision_history WHERE agent_id = $1::uuid AND decision = 'switch_pool'", [autoAgent]) == 1)
                    #expect(try await commands(manual) == 0, "manual-mode agents are never switched automatically")
                    let command = try await ReplicaQuery.one(
                        store,
                        "SELECT id::text, target_pool_id, target_mode, target_instance_id FROM commands WHERE agent_id = $1::uuid AND command_type = 'switch'",
                        [autoAgent])
                    #expect(Array(command.dropFirst()) == [fleet.pool("b"), "spot", instance])
                    let ledger = try await ReplicaQuery.one(
                        store,
                        """
                        SELECT engine, decision, current_pool_id, target_pool_id, command_id::text, (expected_savings_per_hour > 0)::text,
                               (inputs->'pools' IS NOT NULL)::text
                          FROM agent_decision_history WHERE agent_id = $1::uuid
                        """, [autoAgent])
                    #expect(ledger == ["cost", "switch_pool", fleet.pool("a"), fleet.pool("b"), command.first ?? nil, "true", "true"])
                    let reason = try await ReplicaQuery.one(store, "SELECT reason FROM agent_decision_history WHERE agent_id = $1::uuid", [autoAgent])
                    #expect(reason.first??.contains(fleet.pool("b")) == true)
                    #expect(
                        try await SEFQuery.count(
                            store, "SELECT count(*) FROM pool_risk_analysis WHERE pool_id LIKE $1 || '.%'", [fleet.family]) >= 3)

                    // a second pass while the switch is pending issues nothing more
                    let again = try await decisionPass()
                    #expect((again["skipped_pending"] as? Int ?? 0) >= 1)
                    #expect(try await commands(autoAgent) == 1)
                    // and the agent gets it from its long-poll
                    let polled = try await ingest.send(
                        "GET", "/api/agents/\(autoAgent)/pending-commands?instance_id=\(instance)&wait=0", token: fleet.token)
                    let fetched = (polled.json["commands"] as? [[String: Any]])?.compactMap { $0["command_type"] as? String }
                    #expect(fetched == ["switch"])

                    // the agent switches and reports it; the running decision engine records the switch
                    let engine = try await ServiceProcess.start("spotguard-decisions", portVariable: "SPOTGUARD_DECISIONS_PORT")
                    try await ServiceProcess.with(engine) { _ in
                        let newInstance = ReplicaAgent.randomInstance()
                        func report(_ newId: String) -> String {
                            """
                            {"command_id": "\(command.first!! )", "old_instance": {"instance_id": "\(instance)", "mode": "spot", "pool_id": "\(fleet.pool("a"))"},
                             "new_instance": {"instance_id": "\(newId)", "mode": "spot", "pool_id": "\(fleet.pool("b"))"},
                             "timing": {"initiated_at": "\(Timestamp.format(now))", "instance_ready_at": "\(Timestamp.format(now + 60))",
                                        "old_terminated_at": "\(Timestamp.format(now + 90))"},
                             "pricing": {"on_demand": 0.096, "old_spot": 0.040}}
                            """
                        }
                        let bad = try await ingest.send("POST", "/api/agents/\(autoAgent)/switch-report", token: fleet.token, json: report(instance))
                        #expect(bad.status == 400 && bad.errorField == "new_instance.instance_id")
                        let sent = try await ingest.send("POST", "/api/agents/\(autoAgent)/switch-report", token: fleet.token, json: report(newInstance))
                        #expect(sent.status == 202)
                        #expect(
                            try await TestStack.eventually {
                                try await SEFQuery.count(store, "SELECT count(*) FROM switches WHERE agent_id = $1::uuid", [autoAgent]) == 1
                            })
                        let row = try await ReplicaQuery.one(
                            store,
                            """
                            SELECT event_trigger, old_spot_price::text, new_spot_price::text, old_price_data_source, new_price_data_source,
                                   new_price_confidence::text, savings_impact::text, (old_terminated_at IS NOT NULL)::text
                              FROM switches WHERE agent_id = $1::uuid
                            """, [autoAgent])
                        #expect(row == ["auto_switch", "0.040000", "0.020000", "reported", "measured", "1.00", "0.020000", "true"])
                        let agentRow = try await ReplicaQuery.one(store, "SELECT instance_id, current_pool_id FROM agents WHERE id = $1::uuid", [autoAgent])
                        #expect(agentRow == [newInstance, fleet.pool("b")])
                        let commandStatus = try await ReplicaQuery.one(store, "SELECT status FROM commands WHERE id = $1::uuid", [command.first!!])
                        #expect(commandStatus == ["succeeded"])
                        let instances = try await ReplicaQuery.one(
                            store, "SELECT (SELECT is_active FROM instances WHERE id = $1)::text, (SELECT is_active FROM instances WHERE id = $2)::text",
                            [instance, newInstance])
                        #expect(instances.last == "true")
                    }
                }
            }
            await store.shutdown()
        }

        /// `train` fits the learned engine on pricing_snapshots_ml and saves it; the next pass
        /// decides an agent set to `learned` with it (the ledger says so, and what the model
        /// expects), while the cost engine's escape still holds: spot above on-demand is left at once.
        @Test func theLearnedEngineIsTrainedOnCleanHistoryAndUsedByThePass() async throws {
            let store = try await TestStack.store()
            let family = TestStack.uniqueName("ml").filter(\.isLetter).lowercased().prefix(10)
            let pools = ["a", "b", "c"].map { "\(family).large.us-east-1\($0)" }
            let agent = try await store.transaction { conn -> String in
                for pool in pools {
                    try conn.execute(
                        "INSERT INTO spot_pools (id, pool_name, instance_type, region, az) VALUES ($1, $1, $2, 'us-east-1', $3)",
                        [pool, "\(family).large", String(pool.suffix(10))])
                }
                // ten days of hourly prices following a daily wave, one phase per pool
                try conn.execute(
                    """
                    INSERT INTO pricing_snapshots_ml (pool_id, time_bucket, spot_price, on_demand_price, confidence_score)
                    SELECT p.pool, date_trunc('hour', now()) - h * interval '1 hour',
                           round((0.03 * (1 + 0.2 * sin(2 * pi() * h / 24 + p.n * 2)))::numeric, 6), 0.10, 1.0
                      FROM unnest($1::text[]) WITH ORDINALITY AS p(pool, n), generate_series(1, 240) h
                    """, [PGArray(pools)])
                try conn.execute(
                    """
                    INSERT INTO pricing_snapshots_clean (pool_id, time_bucket, spot_price, on_demand_price, confidence_score, data_source, source_type)
                    SELECT p.pool, to_timestamp(floor(extract(epoch FROM now()) / 300) * 300), p.price, 0.10, 1.0, 'measured', 'primary'
                      FROM unnest($1::text[], $2::float8[]) AS p(pool, price)
                    """, [PGArray(pools), PGArray([0.12, 0.02, 0.041])])
                let client = try conn.query(
                    "INSERT INTO clients (name, token_key_id, token_hash) VALUES ('learned', $1, $2) RETURNING id",
                    [String(UUID().uuidString.lowercased().filter(\.isHexDigit).prefix(16)), PGBytes(Array(repeating: 0, count: 32))]
                )[0].decode(UUID.self, at: 0)
                return try conn.query(
                    """
                    INSERT INTO agents (client_id, logical_agent_id, instance_type, region, az, current_pool_id, current_mode, decision_engine)
                    VALUES ($1, 'learned-1', $2, 'us-east-1', 'us-east-1a', $3, 'spot', 'learned') RETURNING id::text
                    """, [client, "\(family).large", pools[0]])[0].decode(String.self, at: 0)
            }
            let trained = try await decisions(["train", "--days", "30"])
            let model = try #require(trained["id"] as? Int)
            #expect((trained["samples"] as? Int ?? 0) >= 3 * (240 - 30), "every pool-hour with a day behind it and 6 h ahead is an example")
            #expect((trained["holdout_auc"] as? Double ?? 0) > 0.6, "the wave is learnable")
            #expect(
                try await SEFQuery.count(store, "SELECT count(*) FROM decision_models WHERE id = $1 AND jsonb_array_length(params->'weights') = 9", [model])
                    == 1)

            let summary = try await decisionPass()
            #expect(summary["model"] as? Int == model)
            let ledger = try await ReplicaQuery.one(
                store,
                "SELECT engine, decision, target_pool_id, reason, (scores ? 'rise_probability_current')::text FROM agent_decision_history WHERE agent_id = $1::uuid",
                [agent])
            #expect(ledger.prefix(3) == ["learned", "switch_pool", pools[1]])
            #expect(ledger.count == 5 && ledger[3]?.contains("model: chance of a ≥") == true && ledger[4] == "true")
            await store.shutdown()
        }

        /// No ratchet in the live pass: an interruption weighs less as it ages (half-life a week),
        /// and every instance-hour in a pool counts as evidence against it — those of instances
        /// gone and of replicas too — so a pool the fleet left is not judged by its one bad day.
        @Test func oldInterruptionsFadeAndLeftInstancesStillCount() async throws {
            let store = try await TestStack.store()
            let family = TestStack.uniqueName("fade").filter(\.isLetter).lowercased().prefix(10)
            let type = "\(family).large"
            let pools = ["a", "b", "c", "d"].map { "\(type).us-east-1\($0)" }
            try await store.transaction { conn in
                for pool in pools {
                    try conn.execute(
                        "INSERT INTO spot_pools (id, pool_name, instance_type, region, az) VALUES ($1, $1, $2, 'us-east-1', $3)",
                        [pool, type, String(pool.suffix(10))])
                }
                try conn.execute(
                    """
                    INSERT INTO pricing_snapshots_clean (pool_id, time_bucket, spot_price, on_demand_price, confidence_score, data_source, source_type)
                    SELECT p, to_timestamp(floor(extract(epoch FROM now()) / 300) * 300), 0.03, 0.10, 1.0, 'measured', 'primary' FROM unnest($1::text[]) p
                    """, [PGArray(pools)])
                let client = try conn.query(
                    "INSERT INTO clients (name, token_key_id, token_hash) VALUES ('fade', $1, $2) RETURNING id",
                    [String(UUID().uuidString.lowercased().filter(\.isHexDigit).prefix(16)), PGBytes(Array(repeating: 0, count: 32))]
                )[0].decode(UUID.self, at: 0)
                let agent = try conn.query(
                    """
                    INSERT INTO agents (client_id, logical_agent_id, instance_type, region, az, auto_switch_enabled)
                    VALUES ($1, 'fade-1', $2, 'us-east-1', 'us-east-1a', false) RETURNING id
                    """, [client, type])[0].decode(UUID.self, at: 0)
                // a: one termination notice 27 days ago; b, c, d: one today
                for (pool, daysAgo) in [(pools[0], 27.0), (pools[1], 0), (pools[2], 0), (pools[3], 0)] {
                    try conn.execute(
                        """
                        INSERT INTO spot_interruption_events (agent_id, signal_type, signal_time, detected_at, pool_id)
                        VALUES ($1, 'termination-notice', now() - make_interval(days => $3::int) - make_interval(secs => random() * 100),
                                now() - make_interval(days => $3::int), $2)
                        """, [agent, pool, Int(daysAgo)])
                }
                for _ in 0..<10 {
                    // c: ten instances ran there for ten days and were terminated yesterday
                    try conn.execute(
                        """
                        INSERT INTO instances (id, client_id, agent_id, instance_type, region, az, current_mode, current_pool_id, is_active, installed_at, terminated_at)
                        VALUES ($1, $2, $3, $4, 'us-east-1', 'us-east-1c', 'spot', $5, false, now() - interval '11 days', now() - interval '1 day')
                        """, [ReplicaAgent.randomInstance(), client, agent, type, pools[2]])
                    // d: ten replicas have been running there for ten days
                    try conn.execute(
                        """
                        INSERT INTO replica_instances (agent_id, instance_id, replica_type, pool_id, instance_type, region, az, status, launched_at)
                        VALUES ($1, $2, 'automatic-rebalance', $3, $4, 'us-east-1', 'us-east-1d', 'ready', now() - interval '10 days')
                        """, [agent, ReplicaAgent.randomInstance(), pools[3], type])
                }
            }
            _ = try await decisionPass()
            var rate: [String: Double] = [:]
            for pool in pools {
                let row = try await ReplicaQuery.one(
                    store, "SELECT (details->>'monthly_rate') FROM pool_risk_analysis WHERE pool_id = $1 ORDER BY analyzed_at DESC LIMIT 1", [pool])
                rate[pool] = row.first.flatMap { $0.flatMap(Double.init) }
            }
            // no Advisor band for this type: the prior is 12.5 % a month, worth 720 instance-hours
            let (a, b, c, d) = (try #require(rate[pools[0]]), try #require(rate[pools[1]]), try #require(rate[pools[2]]), try #require(rate[pools[3]]))
            #expect(b >= 0.99, "one fresh interruption over no exposure: \(b)")
            #expect(a < 0.25, "27 days old, it weighs 2^(-27/7) ≈ 7 %: \(a)")
            // 10 × 10 days ending yesterday: about 1,380 decayed instance-hours beside the prior's 720
            #expect(c < 0.5, "instances gone still count: \(c)")
            #expect(d < 0.5, "replicas count: \(d)")
            await store.shutdown()
        }

        /// From a clone, without AWS's files: `spotguard-sim sample-data` writes two weeks of a
        /// made-up market in ../shared/data's columns, and the backtest runs on it (its spikes
        /// sit at the same fractions of the history as in a month; at fixed hours a two-week
        /// history crashed it).
        @Test func theBacktestRunsOnGeneratedSampleData() async throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sample-\(UUID())").path
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let written = try await runCommand("spotguard-sim", ["sample-data", "--out", dir, "--days", "14", "--seed", "7"])
            #expect(written.status == 0 && written.lines.count == 3, "\(written.lines)")
            let history = try String(contentsOfFile: "\(dir)/spot_price_history_us-east-1_sample_hourly.csv", encoding: .utf8)
            #expect(history.hasPrefix("timestamp,region,az,instance_type,product_description,spot_price,az_id\n"))
            let rowCount: Int = history.split(separator: "\n").count
            #expect(rowCount == 1 + 14 * 24 * 24, "an hourly price for each of 24 pools")
            let run = try await runCommand(
                "spotguard-decisions",
                ["backtest", "--data", dir, "--advisor", "\(dir)/spot-advisor-data_sample.json", "--workloads", "10", "--seeds", "1"])
            #expect(run.status == 0, "\(run.lines.suffix(5))")
            let rows: [String] = run.lines.filter { $0.hasPrefix("| ") }
            #expect(rows.contains { $0.hasPrefix("| engine: cost |") }, "\(run.lines.prefix(20))")
            #expect(rows.contains { $0.hasPrefix("| hindsight oracle |") })
            #expect(run.lines.contains { $0.contains("for 6 h from hour 135") }, "the spikes at a month's fractions of 336 hours")
        }
    }
}
