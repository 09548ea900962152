import Foundation
import SpotModels
import SpotRuntime
import SpotStore
import Testing

extension IntegrationTests {
    @Suite struct TenantPriceTests {
        /// Tenant B's agent reports three pools for three hours (with a gap). Tenant A then posts,
        /// back-dated into those hours and later in each bucket than B, prices 100 times lower and
        /// higher — into B's buckets and into B's gap. B's clean prices, the decision for B's agent
        /// and B's savings stay exactly what they were. A's prices within 10 % of B's count by the
        /// median rule only: the shared price of such a bucket is the mean of the two, and B's
        /// decisions still use B's own.
        @Test func oneTenantCannotMoveAnothersPrices() async throws {
            let store = try await TestStack.store()
            try await ServiceProcess.withIngest { ingest in
                try await withSEF {
                    let b = try await PriceFleet.make(ingest)
                    let base = IntegrationTests.SEFTests.base(hoursAgo: 3)
                    // B's agent on an instance of its own, which ran in pool a for those hours (its savings)
                    let instance = ReplicaAgent.randomInstance()
                    #expect(
                        try await ingest.send(
                            "POST", "/api/agents/register", token: b.token,
                            json: """
                                {"logical_agent_id": "agent-\(b.family)", "instance_id": "\(instance)", "pool_id": "\(b.pool("a"))", "mode": "spot"}
                                """
                        ).status == 200)
                    _ = try await store.withConnection {
                        try $0.execute(
                            "UPDATE instances SET installed_at = $2, terminated_at = $3, is_active = false, on_demand_price = 0.096 WHERE id = $1",
                            [instance, base, base + 170 * 60])
                    }
                    let buckets = (0..<36).filter { !(20...22).contains($0) }  // B's gap: three buckets
                    let prices = [("a", 0.040), ("b", 0.041), ("c", 0.043)]
                    for i in buckets {
                        #expect(try await b.report(prices, at: base + Double(i * 300) + 10) == 202)
                    }
                    func raw(_ client: String) async throws -> Int {
                        try await SEFQuery.count(
                            store, "SELECT count(*) FROM pricing_submissions_raw WHERE pool_id LIKE $1 || '.%' AND client_id = $2::uuid",
                            [b.family, client])
                    }
                    let clientB = try await ReplicaQuery.one(store, "SELECT client_id::text FROM agents WHERE id = $1::uuid", [b.agent]).first!!
                    #expect(try await TestStack.eventually { try await raw(clientB) == buckets.count * 3 })
                    _ = try await sefCommand("gap-scan")
                    let cleanBefore = try await SEFQuery.clean(store, family: b.family)
                    #expect(cleanBefore.filter { $0.dataSource == "interpolated" }.count == 9)

                    func switches() async throws -> Int {
                        try await SEFQuery.count(store, "SELECT count(*) FROM commands WHERE agent_id = $1::uuid AND command_type = 'switch'", [b.agent])
                    }
                    let today = Timestamp.format(base).prefix(10)
                    func savings() async throws -> [String?] {
                        _ = try await decisions(["savings", "--from", String(today)])
                        return try await ReplicaQuery.one(
                            store,
                            """
                            SELECT coalesce(string_agg(day::text || ' ' || on_demand_cost::text || ' ' || actual_cost::text || ' ' || savings::text, '; '
                                   ORDER BY day), '') FROM savings_snapshots WHERE client_id = $1::uuid
                            """, [clientB])
                    }
                    _ = try await decisionPass()
                    #expect(try await switches() == 0, "B's agent is in the cheapest pool")
                    let savingsBefore = try await savings()

                    // tenant A: its own client and agent, reporting B's pools
                    let admin = try TestStack.env.require("SPOTGUARD_ADMIN_TOKEN")
                    let created = try await ingest.send("POST", "/api/admin/clients", token: admin, json: #"{"name": "Tenant A"}"#)
                    let tokenA = try #require(created.json["token"] as? String)
                    let clientA = try #require(created.json["client_id"] as? String)
                    let registered = try await ingest.send(
                        "POST", "/api/agents/register", token: tokenA, json: #"{"logical_agent_id": "tenant-a-\#(b.family)"}"#)
                    let a = PriceFleet(ingest: ingest, token: tokenA, agent: try #require(registered.json["agent_id"] as? String), family: b.family)
                    var sentA = 0
                    for i in 0..<36 {
                        // later in the bucket than B's report: B's pool a made dear, pool b cheap, pool c either
                        let factor = i % 2 == 0 ? 0.01 : 100
                        #expect(try await a.report([("a", 0.040 * 100), ("b", 0.041 * 0.01), ("c", 0.043 * factor)], at: base + Double(i * 300) + 200) == 202)
                        sentA += 3
                    }
                    #expect(try await TestStack.eventually { try await raw(clientA) == sentA })
                    _ = try await sefCommand("gap-scan")
                    // the same prices; where A disagreed, the bucket is marked disputed for review
                    func values(_ rows: [CleanRow]) -> [String] {
                        rows.map { r in
                            var r = r; r.flag = nil; return r.description
                        }
                    }
                    let cleanAfter = try await SEFQuery.clean(store, family: b.family)
                    #expect(values(cleanAfter) == values(cleanBefore), "\(Set(values(cleanAfter)).symmetricDifference(values(cleanBefore)).sorted().prefix(6))")
                    #expect(cleanAfter.contains { $0.flag == "disputed" } && cleanAfter.allSatisfy { $0.flag == nil || $0.flag == "disputed" })
                    _ = try await decisionPass()
                    #expect(try await switches() == 0, "A's invented prices moved B's agent")
                    #expect(try await savings() == savingsBefore)
                    #expect(savingsBefore.first??.isEmpty == false, "B has savings to compare")
                    let notTaken = try await SEFQuery.count(
                        store, "SELECT count(*) FROM pricing_client_buckets WHERE client_id = $1::uuid AND NOT accepted", [clientA])
                    #expect(notTaken == sentA)

                    // within 10 % of B's: the median rule (the mean of two), and B decides on its own prices
                    let last = base + Double(35 * 300)
                    #expect(try await a.report([("a", 0.0424)], at: last + 250) == 202)
                    #expect(try await TestStack.eventually { try await raw(clientA) == sentA + 1 })
                    _ = try await sefCommand("gap-scan")
                    let shared = try await SEFQuery.clean(store, family: b.family).first { $0.az == "a" && $0.bucket == last }
                    #expect(shared?.price == "0.041200")
                    #expect(
                        values(try await SEFQuery.clean(store, family: b.family).filter { $0.az != "a" || $0.bucket != last })
                            == values(cleanBefore.filter { $0.az != "a" || $0.bucket != last }))
                    _ = try await decisionPass()
                    #expect(try await switches() == 0)
                }
            }
            await store.shutdown()
        }
    }
}
