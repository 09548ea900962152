import Foundation
import SpotModels

/// A measured clean price of one bucket (epoch seconds, a multiple of 300).
public struct MeasuredPoint: Sendable, Equatable {
    public var bucket: Int64
    public var price: Double
    public var onDemandPrice: Double?

    public init(bucket: Int64, price: Double, onDemandPrice: Double? = nil) {
        self.bucket = bucket
        self.price = price
        self.onDemandPrice = onDemandPrice
    }
}

/// Missing buckets between two measured ones.
public struct Gap: Sendable, Equatable, Hashable {
    /// The last measured bucket before the gap.
    public var start: Int64
    /// The first measured bucket after it.
    public var end: Int64

    public init(start: Int64, end: Int64) {
        self.start = start
        self.end = end
    }

    public var seconds: Int64 { end - start }
    public var missingBuckets: [Int64] { Array(stride(from: start + SEFPolicy.bucketSeconds, to: end, by: Int(SEFPolicy.bucketSeconds))) }
}

public struct Fill: Sendable, Equatable {
    public var bucket: Int64
    public var price: Double
    public var onDemandPrice: Double?
    public var method: InterpolationMethod
    public var confidence: Double
    public var priceBefore: Double
    public var priceAfter: Double
    /// Pools whose movement shaped a cross-pool fill.
    public var peers: [PoolID]
}

public enum GapOutcome: Sendable, Equatable {
    case filled([Fill])
    case unfilled(reason: UnfilledReason)
}

public enum UnfilledReason: String, Sendable, Codable {
    /// Longer than the longest gap the policy fills (4 hours by default).
    case blackout
    /// Long enough for a cross-pool fill, but no peer pool was measured at both edges.
    case noPeerData = "no_peer_data"
}

/// Everything a gap fill may look at: the pool's measured prices around the gap and the
/// measured prices of peer pools (same type, same region) inside it.
public struct GapContext: Sendable {
    /// Measured points at or before `gap.start`, ascending; the last one is the edge.
    public var before: [MeasuredPoint]
    /// Measured points at or after `gap.end`, ascending; the first one is the edge.
    public var after: [MeasuredPoint]
    /// Peer pool → bucket → measured price, for buckets from `gap.start` to `gap.end`.
    public var peers: [PoolID: [Int64: Double]]

    public init(before: [MeasuredPoint], after: [MeasuredPoint], peers: [PoolID: [Int64: Double]] = [:]) {
        self.before = before
        self.after = after
        self.peers = peers
    }
}

/// Fills the missing buckets of one gap (pure; the same inputs give the same fills).
///
/// - short (≤ 10 min): linear between the edge prices;
/// - medium (15–30 min): each side's estimate is a weighted average of that side's measured
///   points within 30 minutes of the edge, weights decaying exponentially with distance from
///   the edge; the two estimates are blended linearly across the gap. With one point per side
///   this is the linear fill (seed example 0.050 → 0.060 gives 0.0525, 0.055, 0.0575);
/// - long (35 min – 4 h): the linear path scaled, per bucket, by the median of the peers'
///   deviation from their own linear path over the same interval — the peers' relative
///   movement transferred to this pool;
/// - longer: not filled (blackout).
public enum GapFiller {
    public static func fill(_ gap: Gap, context: GapContext, policy: SEFPolicy) -> GapOutcome {
        guard let first = context.before.last, let last = context.after.first, first.bucket == gap.start, last.bucket == gap.end
        else { preconditionFailure("gap context must end and start at the gap's edges") }
        guard let method = policy.method(forGap: gap.seconds) else { return .unfilled(reason: .blackout) }
        let onDemand = first.onDemandPrice ?? last.onDemandPrice
        func fraction(_ t: Int64) -> Double { Double(t - gap.start) / Double(gap.seconds) }

        switch method {
        case .linear:
            return .filled(
                gap.missingBuckets.map { t in
                    let price = first.price + (last.price - first.price) * fraction(t)
                    return Fill(
                        bucket: t, price: BucketResolver.roundPrice(price), onDemandPrice: onDemand, method: .linear,
                        confidence: policy.confidenceLinear, priceBefore: first.price, priceAfter: last.price, peers: [])
                })
        case .weightedAverage:
            let b = sideEstimate(context.before.reversed(), edge: gap.start, policy: policy)
            let a = sideEstimate(context.after, edge: gap.end, policy: policy)
            return .filled(
                gap.missingBuckets.map { t in
                    let price = b + (a - b) * fraction(t)
                    return Fill(
                        bucket: t, price: BucketResolver.roundPrice(price), onDemandPrice: onDemand, method: .weightedAverage,
                        confidence: policy.confidenceWeighted, priceBefore: first.price, priceAfter: last.price, peers: [])
                })
        case .crossPool:
            let usable = context.peers.filter { _, series in
                (series[gap.start] ?? 0) > 0 && (series[gap.end] ?? 0) > 0
            }
            guard !usable.isEmpty else { return .unfilled(reason: .noPeerData) }
            let peerIds = usable.keys.sorted { $0.rawValue < $1.rawValue }
            return .filled(
                gap.missingBuckets.map { t in
                    let f = fraction(t)
                    let ratios = peerIds.compactMap { id -> Double? in
                        let s = usable[id]!
                        guard let p = s[t] else { return nil }
                        let path = s[gap.start]! + (s[gap.end]! - s[gap.start]!) * f
                        return p / path
                    }
                    let base = first.price + (last.price - first.price) * f
                    let price = base * (median(ratios) ?? 1)
                    return Fill(
                        bucket: t, price: BucketResolver.roundPrice(price), onDemandPrice: onDemand, method: .crossPool,
                        confidence: ratios.isEmpty ? policy.confidenceCrossPoolWithoutPeers : policy.confidenceCrossPool,
                        priceBefore: first.price, priceAfter: last.price, peers: peerIds)
                })
        }
    }

    /// Weighted average of the points within the window of `edge`, nearest first.
    static func sideEstimate(_ points: some Sequence<MeasuredPoint>, edge: Int64, policy: SEFPolicy) -> Double {
        var sum = 0.0
        var weights = 0.0
        for p in points {
            let distance = abs(p.bucket - edge)
            if distance > policy.weightedWindow { break }
            let w = exp(-Double(distance) / policy.weightedDecay)
            sum += w * p.price
            weights += w
        }
        return sum / weights
    }

    static func median(_ values: [Double]) -> Double? {
        guard !values.isEmpty else { return nil }
        let s = values.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// The gaps between consecutive measured buckets (ascending input).
    public static func gaps(in measured: [Int64]) -> [Gap] {
        zip(measured, measured.dropFirst()).compactMap { a, b in
            b - a > SEFPolicy.bucketSeconds ? Gap(start: a, end: b) : nil
        }
    }
}
