import DecisionApp
import Foundation
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore

/// `spotguard-bench decisions-pass POOLS AGENTS`: the decision pass over a market of POOLS
/// pools (a day of 5-minute clean prices each) and AGENTS auto-switch
/// agents, timed three times: the first pass writes a switch and a ledger row for most agents,
/// the later ones find those switches pending.
enum DecisionPassBench {
    static func run(pools poolCount: Int, agents agentCount: Int, store: PostgresStore) async throws {
        let poolIds = benchPools(poolCount)
        let pools = poolIds.map(\.rawValue)
        let now = Date()
        let bucket = Date(timeIntervalSince1970: (now.timeIntervalSince1970 / 300).rounded(.down) * 300)
        try await store.transaction { try Pools.ensure(poolIds, on: $0) }
        try await BenchFixtures.cleanPrices(pools, bucket: bucket, store: store)
        let (client, _) = try await ClientDirectory(store: store, ttl: .seconds(0)).createClient(name: "bench", email: nil)
        try await BenchFixtures.agents(agentCount, of: client, in: pools, store: store)
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
