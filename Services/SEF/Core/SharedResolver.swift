import Foundation
import SpotModels

/// One client's price of one bucket: `BucketResolver` applied to that client's submissions
/// alone (its own source priority and dual-source rule).
public struct ClientValue: Sendable, Equatable {
    public var clientId: UUID
    public var resolved: ResolvedBucket

    public init(clientId: UUID, resolved: ResolvedBucket) {
        self.clientId = clientId
        self.resolved = resolved
    }
}

/// What the shared price of a bucket comes from, besides the bucket's own values.
public struct SharedContext: Sendable, Equatable {
    /// Per other client, its measured prices of the pool around the bucket (within a day):
    /// what a single client's value is checked against.
    public var neighbours: [UUID: [Double]]
    /// The pool's last shared measured price before the bucket (within a day): what decides
    /// between two clients that disagree.
    public var history: Double?
    /// Of the clients that disagree, the one SpotGuard heard from first about this pool (by the
    /// server's clock, which nobody can back-date): what decides when there is no history.
    public var incumbent: UUID?

    public init(neighbours: [UUID: [Double]] = [:], history: Double? = nil, incumbent: UUID? = nil) {
        self.neighbours = neighbours
        self.history = history
        self.incumbent = incumbent
    }
}

/// The shared price of a pool's bucket from the values of the clients that measured it, such
/// that no client can move what another sees (DESIGN principle 9).
///
/// - Values of one bucket agree when the largest is at most `clientAgreement` times the
///   smallest (clients read the same AWS price; 10 % leaves room for a change within the five
///   minutes). With three or more clients, values further than that from the median of all are
///   dropped first; one client cannot move the median beyond the honest values.
/// - Agreeing values give their median (an even count: the mean of the middle two), the
///   lowest confidence among them, the best source type.
/// - A value measured by one client alone is checked against the other clients' prices of the
///   pool around it: further than `outlierFactor` from their median, it is not taken (the bucket
///   stays a gap, filled from its neighbours) — so back-dated or invented prices cannot replace
///   what others measured, while a pool only one client measures is that client's to report.
/// - Two values (or groups) that disagree: the one closer to the pool's last shared price wins;
///   without one, the value of the client that reported the pool first (server time); without
///   that either, neither is taken. Either way the bucket is marked `disputed`.
///
/// A pure function of the values and the context; the context (prices around the bucket)
/// can change when other buckets get late data, so a bucket shared by several clients is
/// final once the periodic scan re-resolved its window.
public enum SharedResolver {
    public struct Outcome: Sendable, Equatable {
        /// nil: no value is taken; the bucket is not measured.
        public var shared: ResolvedBucket?
        /// The clients whose values the shared price was taken from.
        public var accepted: Set<UUID>
        public var disputed: Bool
    }

    public static func resolve(_ values: [ClientValue], context: SharedContext, policy: SEFPolicy) -> Outcome {
        let (k, agreement) = (policy.outlierFactor, policy.clientAgreement)
        var candidates = values
        var disputed = false
        if candidates.count >= 3 {
            let m = median(candidates.map(\.resolved.spotPrice))
            let kept = candidates.filter { within($0.resolved.spotPrice, m, agreement) }
            if kept.count < candidates.count { disputed = true }
            candidates = kept
        }
        if candidates.count == 1, let only = candidates.first {
            let others = context.neighbours.filter { $0.key != only.clientId }.values.flatMap { $0 }
            if !others.isEmpty, !within(only.resolved.spotPrice, median(others), k) {
                return Outcome(shared: nil, accepted: [], disputed: true)
            }
        } else if !candidates.isEmpty, !agree(candidates.map(\.resolved.spotPrice), agreement) {
            disputed = true
            let winner: ClientValue
            if let reference = context.history {
                // the one closest to the pool's last price
                winner = candidates.min {
                    (abs(log($0.resolved.spotPrice / reference)), $0.clientId.uuidString) < (
                        abs(log($1.resolved.spotPrice / reference)), $1.clientId.uuidString
                    )
                }!
            } else if let incumbent = context.incumbent, let value = candidates.first(where: { $0.clientId == incumbent }) {
                winner = value
            } else {
                return Outcome(shared: nil, accepted: [], disputed: true)
            }
            candidates = candidates.filter { within($0.resolved.spotPrice, winner.resolved.spotPrice, agreement) }
        }
        guard !candidates.isEmpty else { return Outcome(shared: nil, accepted: [], disputed: true) }
        return Outcome(shared: combine(candidates, policy: policy), accepted: Set(candidates.map(\.clientId)), disputed: disputed)
    }

    /// The median of the agreeing values, as one bucket.
    static func combine(_ values: [ClientValue], policy: SEFPolicy) -> ResolvedBucket {
        if values.count == 1 { return values[0].resolved }
        let rank: [PriceSourceType: Int] = [.primary: 0, .replicaAutomatic: 1, .replicaManual: 2, .interpolated: 3]
        let onDemand = values.compactMap(\.resolved.onDemandPrice)
        return ResolvedBucket(
            spotPrice: BucketResolver.roundPrice(median(values.map(\.resolved.spotPrice))),
            onDemandPrice: onDemand.isEmpty ? nil : BucketResolver.roundPrice(median(onDemand)),
            confidence: values.map(\.resolved.confidence).min()!,
            sourceType: values.map(\.resolved.sourceType).min { rank[$0]! < rank[$1]! }!,
            averagedDualSource: values.contains { $0.resolved.averagedDualSource },
            used: values.reduce(into: Set<UUID>()) { $0.formUnion($1.resolved.used) })
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    static func within(_ x: Double, _ reference: Double, _ k: Double) -> Bool {
        reference > 0 && x >= reference / k && x <= reference * k
    }

    /// Whether the prices agree: the highest at most `k` times the lowest.
    public static func agree(_ xs: [Double], _ k: Double) -> Bool {
        guard let lo = xs.min(), let hi = xs.max(), lo > 0 else { return false }
        return hi <= lo * k
    }
}
