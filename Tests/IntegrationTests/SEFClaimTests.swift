import Foundation
import SEFApp
import SpotRuntime
import SpotStore
import Testing

extension IntegrationTests {
    /// Work that must happen once per pool or once per period is claimed with row locks:
    /// three copies running it at the same moment never do any of it twice.
    @Suite struct SEFClaimTests {
        @Test func threeCopiesScanEveryDuePoolExactlyOnce() async throws {
            let store = try await TestStack.store(poolSize: 6)
            let family = "sgclaim" + String(UUID().uuidString.lowercased().filter(\.isLetter).prefix(4))
            let pools = (0..<30).map { "\(family).large.us-east-\($0 / 5 + 1)\(["a", "b", "c", "d", "f"][$0 % 5])" }
            try await store.withConnection { conn in
                // nothing else is due (pools other tests created included); the 30 new pools are
                _ = try conn.execute("INSERT INTO sef_pool_scans (pool_id) SELECT id FROM spot_pools ON CONFLICT DO NOTHING")
                _ = try conn.execute("UPDATE sef_pool_scans SET next_scan_at = now() + interval '1 hour'")
                _ = try conn.execute(
                    """
                    INSERT INTO spot_pools (id, pool_name, instance_type, region, az)
                    SELECT p, p, split_part(p, '.', 1) || '.large', substr(split_part(p, '.', 3), 1, length(split_part(p, '.', 3)) - 1),
                           split_part(p, '.', 3)
                      FROM unnest($1::text[]) AS p
                    """, [PGArray(pools)])
                _ = try conn.execute(
                    "INSERT INTO sef_pool_scans (pool_id, next_scan_at) SELECT p, now() - interval '1 second' FROM unnest($1::text[]) AS p",
                    [PGArray(pools)])
            }
            let configuration = try SEFConfiguration(env: TestStack.env)
            let copies = (0..<3).map { _ in Maintenance(store: store, configuration: configuration, logger: TestStack.logger) }
            let scanned = try await withThrowingTaskGroup(of: Int.self) { group in
                for copy in copies { group.addTask { try await copy.scanDuePools().pools } }
                return try await group.reduce(0, +)
            }
            #expect(scanned == 30)
            let done = try await store.withConnection { conn in
                try conn.query(
                    "SELECT count(*) FROM sef_pool_scans WHERE pool_id = ANY($1::text[]) AND last_scan_at IS NOT NULL AND next_scan_at > now()",
                    [PGArray(pools)]
                ).first?.decode(Int.self, at: 0)
            }
            #expect(done == 30)
            // and nothing is due again until the interval passed
            #expect(try await copies[0].scanDuePools().pools == 0)
            await store.shutdown()
        }

        /// A stopping SEF ends its scan round after the pool in hand instead of scanning every
        /// due pool first: the rest stay due for the next round or another copy.
        @Test func aStoppingSEFLeavesTheRestOfItsScanRound() async throws {
            let store = try await TestStack.store()
            let family = "sgstop" + String(UUID().uuidString.lowercased().filter(\.isLetter).prefix(4))
            let pools = (0..<2000).map { "\(family)\($0 / 5).large.us-east-1\(["a", "b", "c", "d", "f"][$0 % 5])" }
            func scanned() async throws -> Int {
                try await SEFQuery.count(
                    store, "SELECT count(*) FROM sef_pool_scans WHERE pool_id = ANY($1::text[]) AND last_scan_at IS NOT NULL", [PGArray(pools)])
            }
            try await store.withConnection { conn in
                _ = try conn.execute("INSERT INTO sef_pool_scans (pool_id) SELECT id FROM spot_pools ON CONFLICT DO NOTHING")
                _ = try conn.execute("UPDATE sef_pool_scans SET next_scan_at = now() + interval '1 hour'")
                _ = try conn.execute(
                    """
                    INSERT INTO spot_pools (id, pool_name, instance_type, region, az)
                    SELECT p, p, split_part(p, '.', 1) || '.large', 'us-east-1', split_part(p, '.', 3) FROM unnest($1::text[]) AS p
                    """, [PGArray(pools)])
                _ = try conn.execute(
                    "INSERT INTO sef_pool_scans (pool_id, next_scan_at) SELECT p, now() - interval '1 second' FROM unnest($1::text[]) AS p",
                    [PGArray(pools)])
            }
            let sef = try await ServiceProcess.start("spotguard-sef", portVariable: "SPOTGUARD_SEF_PORT")
            let begun = await TestStack.eventually { (try? await scanned()) ?? 0 > 0 }
            #expect(await sef.stop() == 0, "spotguard-sef did not shut down cleanly")
            let done = try await scanned()
            #expect(begun && done < pools.count, "\(done) of \(pools.count) pools scanned before the SEF stopped")
            try await store.withConnection { conn in
                _ = try conn.execute("DELETE FROM sef_pool_scans WHERE pool_id = ANY($1::text[])", [PGArray(pools)])
                _ = try conn.execute("DELETE FROM spot_pools WHERE id = ANY($1::text[])", [PGArray(pools)])
            }
            await store.shutdown()
        }

        @Test func threeCopiesRunADueJobOnce() async throws {
            let store = try await TestStack.store(poolSize: 6)
            try await store.withConnection { conn in
                _ = try conn.execute("UPDATE scheduled_jobs SET next_run_at = now() - interval '1 second' WHERE name = 'sef.ml_refresh'")
            }
            let configuration = try SEFConfiguration(env: TestStack.env)
            let copies = (0..<3).map { _ in Maintenance(store: store, configuration: configuration, logger: TestStack.logger) }
            let runs = try await withThrowingTaskGroup(of: Int.self) { group in
                for copy in copies { group.addTask { try await copy.refreshMLDataset(force: false) == nil ? 0 : 1 } }
                return try await group.reduce(0, +)
            }
            #expect(runs == 1)
            let next = try await store.withConnection { conn in
                try conn.query(
                    "SELECT next_run_at > now() + interval '5 hours', last_result ? 'rows' FROM scheduled_jobs WHERE name = 'sef.ml_refresh'"
                ).first.map { [try $0.decode(Bool.self, at: 0), try $0.decode(Bool.self, at: 1)] }
            }
            #expect(next == [true, true])
            await store.shutdown()
        }
    }
}
