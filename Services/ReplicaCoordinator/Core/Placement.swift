import SpotModels

/// A pool a replica could run in, with its latest clean price.
public struct PoolQuote: Sendable, Equatable {
    public var pool: PoolID
    public var price: Double
    public var confidence: Double
    /// Interruption signals seen in the pool recently (its "safety").
    public var recentInterruptions: Int

    public init(pool: PoolID, price: Double, confidence: Double, recentInterruptions: Int = 0) {
        self.pool = pool
        self.price = price
        self.confidence = confidence
        self.recentInterruptions = recentInterruptions
    }
}

/// Where a replica goes: the cheapest pool of the primary's instance type and region, never in
/// the primary's availability zone (one capacity event must not take both), optionally
/// skipping zones and pools above a price. `safe` also skips pools with recent interruption
/// signals, for replicas launched because of one. Ties go to the lower pool id, so every
/// coordinator copy chooses the same pool.
public enum Placement {
    public static func choose(
        from quotes: [PoolQuote], instanceType: InstanceType, primaryAZ: AvailabilityZone?, excludeZones: Set<String> = [],
        maxHourlyCost: Double? = nil, safe: Bool = false
    ) -> PoolQuote? {
        quotes
            .filter { q in
                q.pool.instanceType == instanceType && q.pool.az != primaryAZ && !excludeZones.contains(q.pool.az.rawValue)
                    && (primaryAZ == nil || q.pool.region == primaryAZ!.region)
                    && (maxHourlyCost == nil || q.price <= maxHourlyCost!) && (!safe || q.recentInterruptions == 0)
            }
            .min { ($0.price, $0.pool.rawValue) < ($1.price, $1.pool.rawValue) }
    }
}
