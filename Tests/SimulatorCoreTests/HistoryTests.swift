import Foundation
import SimulatorCore
import SpotMarket
import Testing

@Suite struct HistoryTests {
    let end = Date(timeIntervalSince1970: 1_796_000_123)

    func plan(seed: UInt64 = 3) throws -> (Market, History) {
        let market = try Market.synthetic(seed: seed)
        let workloads = [
            History.Workload(logical: "a", type: "m5.large", moves: true), History.Workload(logical: "b", type: "c5.large", moves: true),
            History.Workload(logical: "c", type: "m5.large", moves: false),
        ]
        let faults = FaultModel(seed: seed, interruptionScale: 20)
        return (market, History.plan(market: market, workloads: workloads, end: end, days: 7, faults: faults))
    }

    /// Reports every five minutes for each type over the last week but ingest's oldest minutes,
    /// all pools each, with two outages a type; the last hour reads the hour before the live
    /// run's first, so the series goes on.
    @Test func reportsCoverTheWeekWithTwoOutagesAType() throws {
        let (market, history) = try plan()
        #expect(history.start >= end.addingTimeInterval(-7 * 86_400 + 600) && history.start < end.addingTimeInterval(-7 * 86_400 + 900))
        #expect(history.reports.allSatisfy { $0.at >= history.start && $0.at < end })
        #expect(history.reports.map(\.at) == history.reports.map(\.at).sorted())
        for type in ["m5.large", "c5.large"] {
            let times = history.reports.filter { $0.type == type }.map(\.at)
            let full = Int((end.timeIntervalSince(history.start) / History.reportSeconds).rounded(.up))
            #expect(times.count < full && times.count > full - 2 * 19, "two outages of 30–90 min: \(full - times.count) reports missing")
            let gaps = zip(times, times.dropFirst()).filter { $1.timeIntervalSince($0) > History.reportSeconds }.count
            #expect((1...2).contains(gaps))
        }
        let last = try #require(history.reports.last { $0.type == "m5.large" })
        #expect(last.prices.map(\.pool) == market.pools(of: "m5.large"))
        #expect(last.prices.map(\.price) == market.pools(of: "m5.large").map { market.price($0, hour: -1)! })
    }

    /// Each chain starts in the cheapest pool; a workload that moves moves on an interruption,
    /// or after the dwell to the cheapest pool, away from one dearer by the factor; the other
    /// one never moves.
    @Test func workloadsMoveAsTheRulesSay() throws {
        var (interrupted, priced) = (0, 0)
        for seed in 1...6 as ClosedRange<UInt64> {
            let (_, history) = try plan(seed: seed)
            for name in ["a", "b", "c"] {
                let chain = try #require(history.moves[name])
                #expect(chain[0].leftPrice == nil)
                #expect(name != "c" || chain.count == 1)
                for (before, move) in zip(chain, chain.dropFirst()) {
                    #expect(move.pool != before.pool)
                    #expect(move.at < end)
                    if move.interrupted {
                        interrupted += 1
                        continue
                    }
                    priced += 1
                    #expect(move.at.timeIntervalSince(before.at) >= Double(History.dwellHours) * 3600)
                    #expect(try #require(move.leftPrice) > move.price * History.moveFactor)
                }
            }
        }
        #expect(interrupted > 0 && priced > 0, "six weeks of three workloads: \(interrupted) interruptions, \(priced) price moves")
    }

    @Test func instanceIdsAreEC2ShapedAndFixedBySeed() {
        let id = History.instanceId(seed: 1, logical: "a", index: 2)
        #expect(id.wholeMatch(of: /i-[0-9a-f]{17}/) != nil)
        #expect(id == History.instanceId(seed: 1, logical: "a", index: 2))
        #expect(id != History.instanceId(seed: 1, logical: "a", index: 3))
    }
}
