import DecisionApp
import Foundation
import SpotRuntime
import SpotStore

/// `spotguard-bench decisions-pass POOLS AGENTS`: the decision pass over a market of POOLS
/// pools (a day of 5-minute clean prices each) and AGENTS auto-switch
/// agents, timed three times: the first pass writes a switch and a ledger row for most agents,
/// the later ones find those switches pending.
enum DecisionPassBench {
    static func run(pools poolCount: Int, agents agentCount: Int, store: PostgresStore) async throws {
        let zones = ["a", "b", "c", "d", "f"]
        let types = (0..<max(1, poolCount / zones.count)).map { i -> String in
            let letters = Array("abcdefghijklmnopqrstuvwxyz")
            var n = i
            var name = ""
            for _ in 0..<4 {
                name.append(letters[n % 26])
                n /= 26
            }
            return "bq\(name).large"
        }
        let pools = types.flatMap { t in zones.map { "\(t).us-east-1\($0)" } }
        let now = Date()
        let bucket = Date(timeIntervalSince1970: (now.timeIntervalSince1970 / 300).rounded(.down) * 300)
        try await store.transaction { conn in
            _ = try conn.execute(
                """
                INSERT INTO spot_pools (id, pool_name, instance_type, region, az)
                SELECT p, p, left(p, length(p) - 11), 'us-east-1', right(p, 10) FROM unnest($1::text[]) p ON CONFLICT DO NOTHING
                """, [PGArray(pools)])
        }
        // a day of 5-minute buckets per pool, as the SEF leaves it, one batch of pools at a time
        for start in stride(from: 0, to: pools.count, by: 1000) {
            let batch = Array(pools[start..<min(pools.count, start + 1000)])
            try await store.transaction { conn in
                _ = try conn.execute(
                    """
                    INSERT INTO pricing_snapshots_clean (pool_id, time_bucket, spot_price, on_demand_price, confidence_score, data_source, source_type)
                    SELECT p.pool, $2::timestamptz - b * interval '5 minutes',
                           (0.02 + (($3::int + p.n) % 97) / 10000.0) * (1 + ((extract(epoch FROM $2::timestamptz)::bigint / 300 - b) / 12 % 3) / 100.0),
                           0.096, 1.0, 'measured', 'primary'
                      FROM unnest($1::text[]) WITH ORDINALITY AS p(pool, n), generate_series(0, 287) b
                    """, [PGArray(batch), bucket, start])
            }
        }
        try await store.transaction { conn in
            let client = try conn.query(
                "INSERT INTO clients (name, token_key_id, token_hash) VALUES ('bench', $1, $2) RETURNING id",
                [String(UUID().uuidString.lowercased().filter(\.isHexDigit).prefix(16)), PGBytes(Array(repeating: 0, count: 32))]
            )[0].decode(UUID.self, at: 0)
            _ = try conn.execute(
                """
                INSERT INTO agents (client_id, logical_agent_id, instance_type, region, az, current_pool_id, current_mode, status)
                SELECT $1, 'bench-' || i, left(p, length(p) - 11), 'us-east-1', right(p, 10), p, 'spot', 'online'
                  FROM generate_series(0, $2 - 1) i, LATERAL (SELECT ($3::text[])[1 + (i * 7919) % array_length($3::text[], 1)] AS p) x
                """, [client, agentCount, PGArray(pools)])
        }
        // as autovacuum would have by the time a pass runs on a real day's data
        _ = try await store.withConnection { try $0.execute("ANALYZE") }
        let pass = DecisionPass(store: store, configuration: try DecisionConfiguration(env: EnvironmentReader()), bands: [:])
        var times: [Double] = []
        var first = DecisionPass.Summary()
        var last = DecisionPass.Summary()
        for i in 0..<3 {
            let started = ContinuousClock.now
            guard let summary = try await pass.run(force: true) else { continue }
            times.append((ContinuousClock.now - started).seconds)
            if i == 0 { first = summary }
            last = summary
        }
        func phases(_ s: DecisionPass.Summary) -> String { s.seconds.sorted { $0.key < $1.key }.map { "\($0.key):\($0.value)" }.joined(separator: ",") }
        print(
            "pass_pools=\(first.pools) pass_agents=\(first.agents) pass_switches=\(first.switches)",
            String(format: "pass_first_seconds=%.3f pass_next_seconds=%.3f", times.first ?? -1, times.dropFirst().min() ?? -1),
            "pass_first_phases=\(phases(first)) pass_next_phases=\(phases(last))")
    }
}
