import Foundation
import SEFCore
import SpotModels
import Testing

@Suite struct GapFillerTests {
    let policy = SEFPolicy()
    let t: Int64 = 1_700_000_100

    func outcome(_ gap: Gap, before: [(Int64, Double)], after: [(Int64, Double)], peers: [PoolID: [Int64: Double]] = [:]) -> GapOutcome {
        GapFiller.fill(
            gap,
            context: GapContext(
                before: before.map { MeasuredPoint(bucket: t + $0.0, price: $0.1) },
                after: after.map { MeasuredPoint(bucket: t + $0.0, price: $0.1) }, peers: peers),
            policy: policy)
    }

    func fills(_ o: GapOutcome) -> [Fill] {
        if case .filled(let f) = o { return f }
        Issue.record("expected fills, got \(o)")
        return []
    }

    @Test func methodsFollowGapLength() {
        #expect(policy.method(forGap: 600) == .linear)
        #expect(policy.method(forGap: 900) == .weightedAverage)
        #expect(policy.method(forGap: 1800) == .weightedAverage)
        #expect(policy.method(forGap: 2100) == .crossPool)
        #expect(policy.method(forGap: 14_400) == .crossPool)
        #expect(policy.method(forGap: 14_700) == nil)
    }

    @Test func shortGapIsLinear() {
        let f = fills(outcome(Gap(start: t, end: t + 600), before: [(0, 0.05)], after: [(600, 0.06)]))
        #expect(f.map(\.price) == [0.055])
        #expect(f.map(\.method) == [.linear])
        #expect(f[0].confidence == 0.85)
        #expect(f[0].bucket == t + 300)
    }

    @Test func seedExampleGivesLinearValuesForTwentyMinutes() {
        let f = fills(outcome(Gap(start: t, end: t + 1200), before: [(0, 0.050)], after: [(1200, 0.060)]))
        #expect(f.map(\.price) == [0.0525, 0.055, 0.0575])
        #expect(f.map(\.bucket) == [t + 300, t + 600, t + 900])
        #expect(f.allSatisfy { $0.method == .weightedAverage && $0.confidence < 1 && $0.priceBefore == 0.05 && $0.priceAfter == 0.06 })
    }

    @Test func weightedAverageLeansOnRecentHistoryWithDecay() {
        // before: a spike 30 min earlier weighs exp(-3) of the edge and 10 min earlier exp(-1)
        let f = fills(outcome(Gap(start: t, end: t + 900), before: [(-1800, 0.10), (-600, 0.05), (0, 0.05)], after: [(900, 0.05)]))
        let wEdge = 1.0, w10 = exp(-1.0), w30 = exp(-3.0)
        let side = (0.05 * wEdge + 0.05 * w10 + 0.10 * w30) / (wEdge + w10 + w30)
        let expected = BucketResolver.roundPrice(side + (0.05 - side) * (1.0 / 3.0))
        #expect(f.first?.price == expected)
        #expect(f.first!.price > 0.05)
        // a point beyond the 30-minute window is ignored
        let g = fills(outcome(Gap(start: t, end: t + 900), before: [(-2100, 0.10), (0, 0.05)], after: [(900, 0.05)]))
        #expect(g.allSatisfy { $0.price == 0.05 })
    }

    @Test func longGapTakesPeersRelativeMovement() {
        let gap = Gap(start: t, end: t + 3600)
        let peer = PoolID(rawValue: "t3.medium.us-east-1b")!
        var series: [Int64: Double] = [:]
        for k in stride(from: Int64(0), through: 3600, by: 300) { series[t + k] = 0.10 }
        series[t + 1800] = 0.12  // the peer rose 20 % above its path at the middle
        let f = fills(outcome(gap, before: [(0, 0.05)], after: [(3600, 0.05)], peers: [peer: series]))
        #expect(f.count == 11)
        #expect(f.first { $0.bucket == t + 1800 }?.price == 0.06)
        #expect(f.first { $0.bucket == t + 900 }?.price == 0.05)
        #expect(f.allSatisfy { $0.method == .crossPool && $0.peers == [peer] && $0.confidence == 0.65 })
    }

    @Test func longGapUsesMedianOfPeersAndLinearWhereNoPeerWasMeasured() {
        let gap = Gap(start: t, end: t + 2400)
        let ids = ["a", "b", "c"].map { PoolID(rawValue: "t3.medium.us-east-1\($0)")! }
        var peers: [PoolID: [Int64: Double]] = [:]
        for (i, id) in ids.enumerated() {
            peers[id] = [t: 1, t + 2400: 1, t + 600: [1.1, 1.3, 0.9][i]]
        }
        let f = fills(outcome(gap, before: [(0, 0.04)], after: [(2400, 0.06)], peers: peers))
        let at600 = f.first { $0.bucket == t + 600 }!
        #expect(at600.price == BucketResolver.roundPrice(0.045 * 1.1))
        let at1200 = f.first { $0.bucket == t + 1200 }!
        #expect(at1200.price == 0.05)
        #expect(at1200.confidence == 0.5)
    }

    @Test func longGapWithoutPeersIsNotFilled() {
        #expect(outcome(Gap(start: t, end: t + 3600), before: [(0, 0.05)], after: [(3600, 0.06)]) == .unfilled(reason: .noPeerData))
    }

    @Test func blackoutIsNotFilled() {
        let peer = PoolID(rawValue: "t3.medium.us-east-1b")!
        let o = outcome(Gap(start: t, end: t + 14_700), before: [(0, 0.05)], after: [(14_700, 0.06)], peers: [peer: [t: 1, t + 14_700: 1]])
        #expect(o == .unfilled(reason: .blackout))
    }

    @Test func gapsBetweenMeasuredBuckets() {
        let measured: [Int64] = [0, 300, 600, 1800, 2100, 3000].map { t + $0 }
        #expect(GapFiller.gaps(in: measured) == [Gap(start: t + 600, end: t + 1800), Gap(start: t + 2100, end: t + 3000)])
        #expect(Gap(start: t, end: t + 1200).missingBuckets == [t + 300, t + 600, t + 900])
    }
}
