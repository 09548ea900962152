import Foundation
import SpotModels

/// The thresholds and confidence scores of the SEF data path, in one place.
///
/// Confidence of a clean bucket (seed 000 fixes 1.00 for primary, 0.95 for replica and
/// "about 0.70" for interpolated; the rest is ours):
///
/// | bucket resolved from | confidence |
/// | --- | --- |
/// | primary, alone or with a replica that agrees within the tolerance | 1.00 |
/// | replica-automatic or replica-manual only | 0.95 |
/// | primary and replica disagree: their average, flagged `averaged_dual_source` | 0.90 |
/// | linear fill of a 10-minute gap (one missing bucket) | 0.85 |
/// | weighted-average fill of a 15–30 minute gap | 0.75 |
/// | cross-pool fill of a 35 minute – 4 hour gap, peers measured at that bucket | 0.65 |
/// | cross-pool fill where no peer was measured at that bucket (linear shape) | 0.50 |
///
/// Only buckets at 0.95 or more feed the ML dataset, so averaged and interpolated prices
/// never train a model.
public struct SEFPolicy: Sendable, Equatable {
    public static let bucketSeconds: Int64 = 300

    /// Primary and replica agree when |replica − primary| / primary is below this.
    public var dualSourceTolerance = 0.005
    /// Gap length = time between the measured buckets around it.
    public var linearMaxGap: Int64 = 600
    public var weightedMaxGap: Int64 = 1800
    public var crossPoolMaxGap: Int64 = 14_400
    /// Gaps longer than this are recorded for operators (`pricing_gaps`).
    public var flagGapsOver: Int64 = 600
    /// Unfilled gaps longer than this raise a `quality.alert`.
    public var alertUnfilledOver: Int64 = 1800
    /// Weighted-average fills look this far beyond each edge of the gap...
    public var weightedWindow: Int64 = 1800
    /// ...and weigh a point by exp(−distance from the edge / decay).
    public var weightedDecay: Double = 600

    /// Clients' prices of one bucket agree when the highest is at most this times the lowest.
    public var clientAgreement = 1.10
    /// One client's price is not taken when it is further than this factor from the other
    /// clients' prices of the pool around it (`SharedResolver`).
    public var outlierFactor = 3.0
    /// How far around a bucket the other clients' prices are looked at.
    public var neighbourWindow: Int64 = 86_400

    public var confidencePrimary = 1.00
    public var confidenceReplica = 0.95
    public var confidenceAveraged = 0.90
    public var confidenceLinear = 0.85
    public var confidenceWeighted = 0.75
    public var confidenceCrossPool = 0.65
    public var confidenceCrossPoolWithoutPeers = 0.50

    public init() {}

    /// The 5-minute bucket an observation falls in.
    public static func bucket(of date: Date) -> Int64 {
        let seconds = Int64(date.timeIntervalSince1970.rounded(.down))
        return seconds - ((seconds % bucketSeconds) + bucketSeconds) % bucketSeconds
    }

    public func method(forGap seconds: Int64) -> InterpolationMethod? {
        switch seconds {
        case ...linearMaxGap: .linear
        case ...weightedMaxGap: .weightedAverage
        case ...crossPoolMaxGap: .crossPool
        default: nil
        }
    }
}
