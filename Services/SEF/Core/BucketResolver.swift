import Foundation
import SpotModels

/// One raw submission as the resolver sees it.
public struct RawSubmission: Sendable, Hashable {
    public var submissionId: UUID
    public var sourceType: PriceSourceType
    public var spotPrice: Double
    public var onDemandPrice: Double?
    public var observedAt: Date

    public init(submissionId: UUID, sourceType: PriceSourceType, spotPrice: Double, onDemandPrice: Double?, observedAt: Date) {
        self.submissionId = submissionId
        self.sourceType = sourceType
        self.spotPrice = spotPrice
        self.onDemandPrice = onDemandPrice
        self.observedAt = observedAt
    }
}

/// The measured price of one pool in one 5-minute bucket.
public struct ResolvedBucket: Sendable, Equatable {
    public var spotPrice: Double
    public var onDemandPrice: Double?
    public var confidence: Double
    public var sourceType: PriceSourceType
    /// Set when primary and replica disagreed and the price is their average.
    public var averagedDualSource: Bool
    /// The submissions the price was taken from; every other one is a duplicate.
    public var used: Set<UUID>

    public init(spotPrice: Double, onDemandPrice: Double?, confidence: Double, sourceType: PriceSourceType, averagedDualSource: Bool, used: Set<UUID>) {
        self.spotPrice = spotPrice
        self.onDemandPrice = onDemandPrice
        self.confidence = confidence
        self.sourceType = sourceType
        self.averagedDualSource = averagedDualSource
        self.used = used
    }
}

/// Turns the raw submissions of one bucket into its clean price.
///
/// A pure function of the *set* of submissions: order, redeliveries and which worker saw
/// what first cannot change the result (so arrival time is not an input either). Within one
/// source type the latest observation wins (ties: the lowest submission id), because a spot
/// price holds until it changes. Across source types primary > replica-automatic > replica-manual; a
/// primary and the best replica that agree within the tolerance give the primary's price,
/// otherwise their average, flagged for review.
public enum BucketResolver {
    ///
    /// Only the best submission of each source type matters (`best(_:)`), so a bucket with
    /// thousands of submissions is resolved from at most three; the store looks those up by
    /// index instead of reading the bucket.
    public static func resolve(_ submissions: [RawSubmission], policy: SEFPolicy) -> ResolvedBucket? {
        var best: [PriceSourceType: RawSubmission] = [:]
        for s in Self.best(submissions) { best[s.sourceType] = s }
        let replica = best[.replicaAutomatic] ?? best[.replicaManual]
        let onDemand = [PriceSourceType.primary, .replicaAutomatic, .replicaManual].lazy.compactMap { best[$0]?.onDemandPrice }.first
        if let primary = best[.primary] {
            guard let replica, primary.spotPrice > 0,
                abs(replica.spotPrice - primary.spotPrice) / primary.spotPrice >= policy.dualSourceTolerance
            else {
                return ResolvedBucket(
                    spotPrice: primary.spotPrice, onDemandPrice: primary.onDemandPrice ?? onDemand,
                    confidence: policy.confidencePrimary, sourceType: .primary, averagedDualSource: false,
                    used: [primary.submissionId])
            }
            return ResolvedBucket(
                spotPrice: roundPrice((primary.spotPrice + replica.spotPrice) / 2),
                onDemandPrice: primary.onDemandPrice ?? replica.onDemandPrice ?? onDemand,
                confidence: policy.confidenceAveraged, sourceType: .primary, averagedDualSource: true,
                used: [primary.submissionId, replica.submissionId])
        }
        guard let replica else { return nil }
        return ResolvedBucket(
            spotPrice: replica.spotPrice, onDemandPrice: replica.onDemandPrice ?? onDemand,
            confidence: policy.confidenceReplica, sourceType: replica.sourceType, averagedDualSource: false,
            used: [replica.submissionId])
    }

    /// Prices are stored with six decimals; rounding here keeps the clean row and any
    /// comparison with it identical whichever worker computed it.
    public static func roundPrice(_ p: Double) -> Double {
        (p * 1_000_000).rounded() / 1_000_000
    }

    static func isLater(_ a: RawSubmission, than b: RawSubmission) -> Bool {
        if a.observedAt != b.observedAt { return a.observedAt > b.observedAt }
        return a.submissionId.uuidString < b.submissionId.uuidString
    }

    /// The best submission of each measured source type: the latest observation, ties to the
    /// lowest submission id.
    public static func best(_ submissions: [RawSubmission]) -> [RawSubmission] {
        var best: [PriceSourceType: RawSubmission] = [:]
        for s in submissions where s.sourceType != .interpolated {
            if let current = best[s.sourceType], !isLater(s, than: current) { continue }
            best[s.sourceType] = s
        }
        return best.values.sorted { $0.sourceType.rawValue < $1.sourceType.rawValue }
    }
}
