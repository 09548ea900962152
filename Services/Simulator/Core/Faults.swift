import SpotMarket

/// What goes wrong in the simulated cloud, drawn per instance and simulated hour (interruptions)
/// and per pool and simulated hour (capacity), reproducibly from the seed.
public struct FaultModel: Sendable, Equatable {
    public var seed: UInt64
    /// Multiplies the Advisor band's monthly interruption rate (1 = AWS's published frequency).
    public var interruptionScale: Double
    /// The share of interruptions that a rebalance recommendation announces first.
    public var rebalanceShare: Double
    /// The chance that a pool has no spot capacity during a simulated hour.
    public var capacityShortage: Double

    public init(seed: UInt64, interruptionScale: Double = 1, rebalanceShare: Double = 0.5, capacityShortage: Double = 0.02) {
        self.seed = seed
        self.interruptionScale = interruptionScale
        self.rebalanceShare = rebalanceShare
        self.capacityShortage = capacityShortage
    }

    public enum Interruption: Sendable, Equatable {
        case notice
        case rebalanceThenNotice
    }

    /// The chance that a spot instance is interrupted during one simulated hour: the band's
    /// monthly frequency spread over a 30-day month's 720 hours, scaled.
    public func hourlyChance(_ band: AdvisorBand?) -> Double { min(1, (band?.monthlyRate ?? 0.125) * interruptionScale / 720) }

    /// Whether the instance with this launch number is interrupted in simulated hour `hour`.
    public func interruption(instance: Int, hour: Int, band: AdvisorBand?) -> Interruption? {
        guard Draw.unit(seed, "interrupt:\(instance)", hour) < hourlyChance(band) else { return nil }
        return Draw.unit(seed, "rebalance:\(instance)", hour) < rebalanceShare ? .rebalanceThenNotice : .notice
    }

    /// Whether `pool` is out of spot capacity in simulated hour `hour`.
    public func outOfCapacity(pool: String, hour: Int) -> Bool { Draw.unit(seed, "capacity:\(pool)", hour) < capacityShortage }
}

/// What the simulated cloud charged, against running every workload on demand.
public struct Bill: Sendable, Equatable, Codable {
    public var spot = 0.0
    public var onDemand = 0.0
    /// The part of both spent on replica instances.
    public var replicas = 0.0
    /// One on-demand instance of each workload's type for as long as the workload existed.
    public var baseline = 0.0
    public var instanceHours = 0.0

    public init() {}

    public mutating func charge(pricePerHour: Double, hours: Double, spot isSpot: Bool, replica: Bool) {
        let cost = pricePerHour * hours
        if isSpot { spot += cost } else { onDemand += cost }
        if replica { replicas += cost }
        instanceHours += hours
    }

    public var total: Double { spot + onDemand }
    /// Savings against the baseline, in percent (nil before anything was charged).
    public var savingsPercent: Double? { baseline > 0 ? (1 - total / baseline) * 100 : nil }
}
