import Foundation
import SpotStore
import Testing

@testable import DecisionApp

extension IntegrationTests {
    /// The decision pass's memory of the day's hourly prices: it reads only the hour marks it
    /// does not hold plus the latest two, and hands back each pool's series oldest first.
    @Suite struct PassMemoryTests {
        @Test func theSeriesFollowTheHourMarksAndTheLatestCorrections() async throws {
            let store = try await TestStack.store()
            let family = TestStack.uniqueName("pm").filter(\.isLetter).lowercased().prefix(10)
            let (a, b, c) = ("\(family).large.us-east-1a", "\(family).large.us-east-1b", "\(family).large.us-east-1c")
            let now = Date()
            let marks = PassMemory.hourMarks(at: now)
            @Sendable func write(_ rows: [(String, Date, Double)], on conn: PGConnection) throws {
                try conn.execute(
                    """
                    INSERT INTO pricing_snapshots_clean (pool_id, time_bucket, spot_price, on_demand_price, confidence_score, data_source, source_type)
                    SELECT pool, at, price, 0.10, 1.0, 'measured', 'primary'
                      FROM unnest($1::text[], $2::timestamptz[], $3::float8[]) AS u(pool, at, price)
                    ON CONFLICT (pool_id, time_bucket) DO UPDATE SET spot_price = EXCLUDED.spot_price
                    """, [PGArray(rows.map(\.0)), PGArray(rows.map(\.1)), PGArray(rows.map(\.2))])
            }
            try await store.transaction { conn in
                for pool in [a, b, c] {
                    try conn.execute(
                        "INSERT INTO spot_pools (id, pool_name, instance_type, region, az) VALUES ($1, $1, $2, 'us-east-1', $3)",
                        [pool, "\(family).large", String(pool.suffix(10))])
                }
                try write([(a, marks[0], 0.01), (a, marks[22], 0.02), (a, marks[23], 0.03), (b, marks[23], 0.05)], on: conn)
            }
            let memory = PassMemory()
            func series(at date: Date) async throws -> [String: [(Date, Double)]] {
                try await store.withConnection { try memory.hourly(at: date, on: $0) }
            }
            let first = try await series(at: now)
            #expect(first[a]?.map(\.0) == [marks[0], marks[22], marks[23]] && first[a]?.map(\.1) == [0.01, 0.02, 0.03])
            #expect(first[b]?.map(\.1) == [0.05] && first[c] == nil)
            // the SEF corrects the latest mark and a pool appears; an old mark changing is not re-read
            try await store.transaction { conn in
                try write([(a, marks[23], 0.035), (c, marks[23], 0.07), (a, marks[0], 0.5)], on: conn)
            }
            let second = try await series(at: now)
            #expect(second[a]?.map(\.1) == [0.01, 0.02, 0.035] && second[c]?.map(\.1) == [0.07] && second[b]?.map(\.1) == [0.05])
            // an hour later the oldest mark is gone and the new one has no price yet
            let later = try await series(at: now.addingTimeInterval(3600))
            #expect(later[a]?.map(\.0) == [marks[22], marks[23]] && later[a]?.map(\.1) == [0.02, 0.035])
        }
    }
}
