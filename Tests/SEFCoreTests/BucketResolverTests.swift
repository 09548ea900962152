import Foundation
import SEFCore
import SpotMarket
import SpotModels
import Testing

@Suite struct BucketResolverTests {
    let policy = SEFPolicy()
    let t0 = Date(timeIntervalSince1970: 1_700_000_100)

    func sub(_ source: PriceSourceType, _ price: Double, at offset: TimeInterval = 0, id: UUID = UUID(), od: Double? = nil) -> RawSubmission {
        RawSubmission(submissionId: id, sourceType: source, spotPrice: price, onDemandPrice: od, observedAt: t0 + offset)
    }

    @Test func primaryAloneHasFullConfidence() throws {
        let r = try #require(BucketResolver.resolve([sub(.primary, 0.05)], policy: policy))
        #expect(r.spotPrice == 0.05)
        #expect(r.confidence == 1.00)
        #expect(r.sourceType == .primary)
        #expect(!r.averagedDualSource)
    }

    @Test func replicaAloneHasConfidence095() throws {
        let r = try #require(BucketResolver.resolve([sub(.replicaManual, 0.05)], policy: policy))
        #expect(r.confidence == 0.95)
        #expect(r.sourceType == .replicaManual)
    }

    @Test func replicaAutomaticBeatsReplicaManual() throws {
        let r = try #require(BucketResolver.resolve([sub(.replicaManual, 0.07), sub(.replicaAutomatic, 0.06)], policy: policy))
        #expect(r.sourceType == .replicaAutomatic)
        #expect(r.spotPrice == 0.06)
    }

    @Test func agreeingReplicaKeepsPrimaryValue() throws {
        // 0.4 % apart: below the 0.5 % tolerance
        let r = try #require(BucketResolver.resolve([sub(.primary, 0.0500), sub(.replicaAutomatic, 0.0502)], policy: policy))
        #expect(r.spotPrice == 0.05)
        #expect(r.confidence == 1.00)
        #expect(!r.averagedDualSource)
        #expect(r.used.count == 1)
    }

    @Test func disagreeingReplicaIsAveragedAndFlagged() throws {
        let r = try #require(BucketResolver.resolve([sub(.primary, 0.0456), sub(.replicaManual, 0.0460)], policy: policy))
        #expect(r.spotPrice == 0.0458)
        #expect(r.averagedDualSource)
        #expect(r.confidence == 0.90)
        #expect(r.used.count == 2)
    }

    @Test func seedPairAveragesTo00457WhenTheirDifferenceExceedsTheTolerance() throws {
        // 0.0456 and 0.0458 differ by 0.44 %: under the default 0.5 % they agree (primary's
        // value); a stricter tolerance gives the seed's average 0.0457
        let pair = [sub(.primary, 0.0456), sub(.replicaAutomatic, 0.0458)]
        #expect(BucketResolver.resolve(pair, policy: policy)?.spotPrice == 0.0456)
        var strict = policy
        strict.dualSourceTolerance = 0.004
        let r = try #require(BucketResolver.resolve(pair, policy: strict))
        #expect(r.spotPrice == 0.0457)
        #expect(r.averagedDualSource)
    }

    @Test func toleranceBoundaryIsExclusive() throws {
        // exactly 0.5 % apart is a disagreement
        let r = try #require(BucketResolver.resolve([sub(.primary, 0.1), sub(.replicaManual, 0.1005)], policy: policy))
        #expect(r.averagedDualSource)
    }

    @Test func latestObservationOfASourceWins() throws {
        let r = try #require(BucketResolver.resolve([sub(.primary, 0.05, at: 0), sub(.primary, 0.06, at: 120), sub(.primary, 0.04, at: 60)], policy: policy))
        #expect(r.spotPrice == 0.06)
    }

    @Test func resultIgnoresOrderAndRepeats() {
        var subs: [RawSubmission] = []
        for i in 0..<12 {
            let source = PriceSourceType.allCases.filter { $0 != .interpolated }[i % 3]
            subs.append(sub(source, 0.04 + Double(i % 5) * 0.001, at: TimeInterval(i % 4) * 30, od: i % 2 == 0 ? 0.1 : nil))
        }
        let reference = BucketResolver.resolve(subs, policy: policy)
        for seed in 0..<50 {
            var rng = SplitMix64(seed: UInt64(seed))
            var shuffled = subs + subs.prefix(seed % 7)
            shuffled.shuffle(using: &rng)
            #expect(BucketResolver.resolve(shuffled, policy: policy) == reference)
        }
    }

    @Test func onDemandFallsBackToTheReplica() throws {
        let r = try #require(BucketResolver.resolve([sub(.primary, 0.05, at: 60), sub(.replicaManual, 0.05, at: 0, od: 0.096)], policy: policy))
        #expect(r.onDemandPrice == 0.096)
        #expect(r.sourceType == .primary)
    }

    @Test func theBestOfEachSourceDecidesAlone() {
        // what lets the store read three rows per bucket instead of all of them
        var rng = SplitMix64(seed: 3)
        for _ in 0..<200 {
            let subs = (0..<Int.random(in: 1...12, using: &rng)).map { _ in
                sub(
                    [.primary, .replicaAutomatic, .replicaManual].randomElement(using: &rng)!,
                    Double(Int.random(in: 400...520, using: &rng)) / 10_000, at: TimeInterval(Int.random(in: 0...4, using: &rng) * 60),
                    od: Bool.random(using: &rng) ? 0.1 : nil)
            }
            #expect(BucketResolver.resolve(BucketResolver.best(subs), policy: policy) == BucketResolver.resolve(subs, policy: policy))
            #expect(BucketResolver.best(subs).count <= 3)
        }
    }

    @Test func bucketsAreFiveMinuteFloors() {
        #expect(SEFPolicy.bucket(of: Date(timeIntervalSince1970: 1_700_000_299)) == 1_700_000_100)
        #expect(SEFPolicy.bucket(of: Date(timeIntervalSince1970: 1_700_000_100)) == 1_700_000_100)
        #expect(SEFPolicy.bucket(of: Date(timeIntervalSince1970: 1_700_000_099)) == 1_699_999_800)
    }

    @Test func reportSubmissionIdsAreStableAndDistinct() {
        let report = PricingReport(
            reportId: UUID(), clientId: UUID(), agentId: UUID(), instanceId: nil,
            pools: [], onDemandPrice: nil, observedAt: t0, receivedAt: t0)
        let a = PoolID(rawValue: "t3.medium.us-east-1a")!
        let b = PoolID(rawValue: "t3.medium.us-east-1b")!
        #expect(report.submissionId(for: a) == report.submissionId(for: a))
        #expect(report.submissionId(for: a) != report.submissionId(for: b))
        #expect(report.submissionId(for: a).uuidString.dropFirst(14).first == "5")
    }
}
