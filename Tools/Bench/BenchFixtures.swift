import Foundation
import SpotStore

/// The synthetic market the benchmarks measure on, seeded in bulk the way a test seeds its
/// fixtures: a day of clean prices for 10,000 pools and a thousand agents would take the
/// product's own paths (ingest, the SEF) longer than the measurement itself. Like `Tests/`,
/// this file is outside the table-ownership rule (`deploy/check-table-owners.py`); everything
/// else the benchmarks write goes through the tables' owners.
enum BenchFixtures {
    /// A day of 5-minute clean buckets per pool ending at `bucket`, as the SEF leaves them, one
    /// batch of 1,000 pools a transaction.
    static func cleanPrices(_ pools: [String], bucket: Date, store: PostgresStore) async throws {
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
    }

    /// One measured clean price per pool in the current bucket.
    static func currentPrices(_ pools: [(String, Double)], store: PostgresStore) async throws {
        try await store.transaction { conn in
            for (pool, price) in pools {
                _ = try conn.execute(
                    """
                    INSERT INTO pricing_snapshots_clean (pool_id, time_bucket, spot_price, confidence_score, data_source, source_type)
                    VALUES ($1, to_timestamp(floor(extract(epoch FROM now()) / 300) * 300), $2, 1.00, 'measured', 'primary')
                    ON CONFLICT DO NOTHING
                    """, [pool, price])
            }
        }
    }

    /// `count` online auto-switch agents of `client`, spread over `pools`.
    static func agents(_ count: Int, of client: UUID, in pools: [String], store: PostgresStore) async throws {
        try await store.transaction { conn in
            _ = try conn.execute(
                """
                INSERT INTO agents (client_id, logical_agent_id, instance_type, region, az, current_pool_id, current_mode, status)
                SELECT $1, 'bench-' || i, left(p, length(p) - 11), 'us-east-1', right(p, 10), p, 'spot', 'online'
                  FROM generate_series(0, $2 - 1) i, LATERAL (SELECT ($3::text[])[1 + (i * 7919) % array_length($3::text[], 1)] AS p) x
                """, [client, count, PGArray(pools)])
        }
    }
}
