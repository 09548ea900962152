import DecisionApp
import Foundation
import IngestApp
import SEFApp
import SpotFleet
import SpotRuntime
import SpotStore
import Testing

extension IntegrationTests {
    /// Bounded storage (docs/operations/retention.md): the retention jobs keep each table to its
    /// days, the raw price trail by dropping whole day partitions.
    @Suite struct RetentionTests {
        /// A simulated month, a day at a time, long ago (so no other test's rows are in reach):
        /// each day adds 48 raw points and 48 clean buckets to one pool and runs the SEF's job with
        /// that day as now and 9 days kept. The tables stop growing once nine days are full.
        @Test func theSEFsTablesStayBoundedOverASimulatedMonth() async throws {
            let store = try await TestStack.store()
            let pool = "sgret" + String(UUID().uuidString.lowercased().filter(\.isLetter).prefix(4)) + ".large.us-east-1a"
            var values = TestStack.env.values
            for table in ["pricing_submissions_raw", "pricing_client_sources", "pricing_client_buckets", "pricing_snapshots_clean"] {
                values[RetentionRule.variable(table)] = "9"
            }
            let configuration = try SEFConfiguration(env: EnvironmentReader(values))
            let retention = RetentionService.sef(configuration: configuration, store: store, logger: TestStack.logger)
            let day = 86_400.0
            let base = (Date().timeIntervalSince1970 / day).rounded(.down) * day - 120 * day
            try await store.withConnection { conn in
                _ = try conn.execute(
                    "INSERT INTO spot_pools (id, pool_name, instance_type, region, az) VALUES ($1, $1, split_part($1, '.', 1) || '.large', 'us-east-1', 'us-east-1a')",
                    [pool])
            }
            func count(_ sql: String) async throws -> Int {
                try await store.withConnection { try $0.query(sql, [pool]).first?.decode(Int.self, at: 0) ?? -1 }
            }
            var raw: [Int] = []
            var clean: [Int] = []
            var partitions: [Int] = []
            for d in 0..<35 {
                let start = Date(timeIntervalSince1970: base + Double(d) * day)
                try await store.withConnection { conn in
                    _ = try conn.query("SELECT pricing_raw_partitions(ARRAY[($1::timestamptz AT TIME ZONE 'UTC')::date])", [start])
                    _ = try conn.execute(
                        """
                        INSERT INTO pricing_submissions_raw (submission_id, client_id, source_type, pool_id, spot_price, observed_at, submitted_at,
                            received_at, time_bucket)
                        SELECT gen_random_uuid(), gen_random_uuid(), 'primary', $1, 0.1, t, t, t, t
                          FROM generate_series($2::timestamptz, $2::timestamptz + interval '23 hours 30 minutes', interval '30 minutes') t
                        """, [pool, start])
                    _ = try conn.execute(
                        """
                        INSERT INTO pricing_snapshots_clean (pool_id, time_bucket, spot_price, confidence_score, data_source, source_type)
                        SELECT $1, t, 0.1, 1, 'measured', 'primary'
                          FROM generate_series($2::timestamptz, $2::timestamptz + interval '23 hours 30 minutes', interval '30 minutes') t
                        """, [pool, start])
                }
                // the job at the end of the simulated day
                let removed = try #require(try await retention.apply(force: true, now: start.addingTimeInterval(day - 1)))
                #expect(removed.keys.contains("pricing_submissions_raw"))
                raw.append(try await count("SELECT count(*) FROM pricing_submissions_raw WHERE pool_id = $1"))
                clean.append(try await count("SELECT count(*) FROM pricing_snapshots_clean WHERE pool_id = $1"))
                partitions.append(
                    try await store.withConnection { conn in
                        try conn.query(
                            """
                            SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                             WHERE i.inhparent = 'pricing_submissions_raw'::regclass
                               AND c.relname BETWEEN 'pricing_submissions_raw_' || to_char($1::timestamptz AT TIME ZONE 'UTC', 'YYYYMMDD')
                                                 AND 'pricing_submissions_raw_' || to_char($2::timestamptz AT TIME ZONE 'UTC' + interval '2 days', 'YYYYMMDD')
                            """, [Date(timeIntervalSince1970: base), start]
                        ).first?.decode(Int.self, at: 0) ?? -1
                    })
            }
            // nine whole days kept (the cutoff falls in the tenth day back: it keeps its later half)
            #expect(raw.max() ?? 0 <= 10 * 48, "raw rows per simulated day: \(raw)")
            #expect(Set(raw.suffix(20)).count == 1, "the raw trail stops growing: \(raw)")
            #expect(Set(clean.suffix(20)).count == 1 && (clean.max() ?? 0) <= 10 * 48, "clean rows per simulated day: \(clean)")
            // the kept days, and the two made ahead
            #expect(partitions.suffix(20).allSatisfy { $0 <= 12 }, "partitions of the simulated month: \(partitions)")
            #expect(raw[34] > 0 && clean[34] > 0)

            // and a month later, nothing of it is left
            _ = try await retention.apply(force: true, now: Date(timeIntervalSince1970: base + 70 * day))
            #expect(try await count("SELECT count(*) FROM pricing_submissions_raw WHERE pool_id = $1") == 0)
            #expect(try await count("SELECT count(*) FROM pricing_snapshots_clean WHERE pool_id = $1") == 0)
        }

        /// The fleet's event log is kept to its days by the decision engine's job.
        @Test func oldSystemEventsGo() async throws {
            let store = try await TestStack.store()
            let key = "retention-test-\(UUID())"
            try await store.withConnection { conn in
                _ = try conn.execute(
                    """
                    INSERT INTO system_events (event_type, severity, component, message, dedup_key, created_at)
                    VALUES ('test', 'info', 'test', 'old', $1 || '-old', now() - interval '200 days'),
                           ('test', 'info', 'test', 'new', $1 || '-new', now() - interval '1 day')
                    """, [key])
            }
            let retention = DecisionService.retention(configuration: try DecisionConfiguration(env: TestStack.env), store: store, logger: TestStack.logger)
            let removed = try #require(try await retention.apply(force: true))
            #expect((removed["system_events"] ?? 0) >= 1)
            let left = try await store.withConnection { conn in
                try conn.query("SELECT message FROM system_events WHERE dedup_key LIKE $1 || '%'", [key]).map { try $0.decode(String.self, at: 0) }
            }
            #expect(left == ["new"])
        }
        /// Finished commands go after their days unless a switch names them (the fleet's history
        /// keeps its commands); unfinished ones and recent ones stay.
        @Test func oldFinishedCommandsGoUnlessASwitchNamesThem() async throws {
            let store = try await TestStack.store()
            let (client, _) = try await ClientDirectory(store: store, ttl: .seconds(1)).createClient(name: "Command retention", email: nil)
            let ids = try await store.transaction { conn -> [String: UUID] in
                let agent = try conn.query("INSERT INTO agents (client_id, logical_agent_id) VALUES ($1, 'commands') RETURNING id", [client])[0]
                    .decode(UUID.self, at: 0)
                var ids: [String: UUID] = [:]
                for (name, status, age) in [
                    ("old", "succeeded", "200 days"), ("switched", "succeeded", "200 days"), ("pending", "pending", "200 days"),
                    ("recent", "failed", "1 day"),
                ] {
                    ids[name] = try conn.query(
                        """
                        INSERT INTO commands (client_id, agent_id, command_type, status, issued_by, created_at)
                        VALUES ($1, $2, 'snapshot', $3, 'user', now() - $4::interval) RETURNING id
                        """, [client, agent, status, age])[0].decode(UUID.self, at: 0)
                }
                _ = try conn.execute(
                    """
                    INSERT INTO switches (client_id, agent_id, command_id, old_instance_id, new_instance_id, event_trigger, initiated_at)
                    VALUES ($1, $2, $3, 'i-old', 'i-new', 'manual', now() - interval '200 days')
                    """, [client, agent, ids["switched"]!])
                return ids
            }
            let retention = DecisionService.retention(configuration: try DecisionConfiguration(env: TestStack.env), store: store, logger: TestStack.logger)
            let removed = try #require(try await retention.apply(force: true))
            #expect((removed["commands"] ?? 0) >= 1, "\(removed)")
            let left = try await store.withConnection { conn in
                Set(try conn.query("SELECT id FROM commands WHERE client_id = $1", [client]).map { try $0.decode(UUID.self, at: 0) })
            }
            #expect(left == Set(["switched", "pending", "recent"].map { ids[$0]! }))
        }

        /// Shipped state outlives its agent no longer: an agent silent for 40 days loses its
        /// versions and chunks, an agent heard from a minute ago keeps what its versions name,
        /// and of its unnamed chunks only the one stored two days ago goes (a version being
        /// shipped names its chunks only once it is committed).
        @Test func theStateOfAgentsLongSilentGoes() async throws {
            let store = try await TestStack.store()
            let (client, _) = try await ClientDirectory(store: store, ttl: .seconds(1)).createClient(name: "Retention test", email: nil)
            func agent(silentFor interval: String) async throws -> UUID {
                try await store.withConnection {
                    try $0.query(
                        "INSERT INTO agents (client_id, logical_agent_id, last_heartbeat_at) VALUES ($1, 'retained-' || $2, now() - $2::interval) RETURNING id",
                        [client, interval])[0].decode(UUID.self, at: 0)
                }
            }
            let (silent, heard) = (try await agent(silentFor: "40 days"), try await agent(silentFor: "1 minute"))
            func chunk(_ agent: UUID, _ byte: UInt8, storedAgo interval: String) async throws -> PGBytes {
                let sha = PGBytes(Array(repeating: byte, count: 32))
                try await store.withConnection { conn in
                    _ = try conn.execute(
                        "INSERT INTO state_chunks (agent_id, sha256, content, size_bytes, stored_at) VALUES ($1, $2, 'x', 1, now() - $3::interval)",
                        [agent, sha, interval])
                }
                return sha
            }
            for agent in [silent, heard] {
                let named = try await chunk(agent, 1, storedAgo: "2 days")
                try await store.withConnection { conn in
                    _ = try conn.execute(
                        """
                        INSERT INTO state_versions (agent_id, version, store, manifest, chunks, total_bytes, file_count, created_at)
                        VALUES ($1, 1, 'spotguard', '{}', ARRAY[$2::bytea], 1, 1, now() - interval '2 days')
                        """, [agent, named])
                }
            }
            _ = try await chunk(heard, 2, storedAgo: "2 days")
            _ = try await chunk(heard, 3, storedAgo: "1 minute")

            let retention = RetentionService.ingest(configuration: try IngestConfiguration(env: TestStack.env), store: store, logger: TestStack.logger)
            let removed = try #require(try await retention.apply(force: true))
            #expect((removed["state_versions"] ?? 0) >= 1 && (removed["state_chunks"] ?? 0) >= 2, "\(removed)")
            let left = try await store.withConnection { conn in
                (
                    versions: try conn.query("SELECT agent_id FROM state_versions WHERE agent_id = ANY ($1)", [PGArray([silent, heard])])
                        .map { try $0.decode(UUID.self, at: 0) },
                    chunks: try conn.query(
                        "SELECT get_byte(sha256, 0) FROM state_chunks WHERE agent_id = $1 ORDER BY 1", [heard]
                    ).map { try $0.decode(Int.self, at: 0) },
                    silentChunks: try conn.query("SELECT count(*) FROM state_chunks WHERE agent_id = $1", [silent])[0].decode(Int.self, at: 0)
                )
            }
            #expect(left.versions == [heard])
            #expect(left.chunks == [1, 3], "the named chunk and the one just stored stay")
            #expect(left.silentChunks == 0)
        }
    }
}
