import Foundation

/// The interruption risk of a spot instance that got a rebalance recommendation (seed 003):
///
///     risk = 0.4 × pool interruption history + 0.3 × instance age + 0.3 × price volatility
///
/// each component scaled to 0…1 and saturating: history is the pool's monthly interruption
/// rate from the interruption model the decision engine uses too (the Advisor band as a prior,
/// the fleet's decayed record over it), saturating at `rateScale` (25 % a month, the decision
/// engine's scale); age at `ageSaturationHours` of uptime (a long-running instance has been
/// exposed to more capacity swings), volatility at a coefficient of variation of
/// `volatilitySaturation` over the last 6 hours of clean prices. A replica is launched when the
/// risk reaches `threshold` (0.30).
public struct RiskModel: Sendable, Equatable {
    public var threshold = 0.30
    public var rateScale = 0.25
    public var ageSaturationHours = 168.0
    public var volatilitySaturation = 0.05

    public init() {}

    public struct Inputs: Sendable, Equatable {
        /// The pool's interruption rate a month (0.1 = 10 %).
        public var poolMonthlyRate: Double
        public var instanceAgeHours: Double
        public var priceVolatility: Double

        public init(poolMonthlyRate: Double, instanceAgeHours: Double, priceVolatility: Double) {
            self.poolMonthlyRate = poolMonthlyRate
            self.instanceAgeHours = instanceAgeHours
            self.priceVolatility = priceVolatility
        }
    }

    public struct Score: Sendable, Equatable, Codable {
        public var history: Double
        public var age: Double
        public var volatility: Double
        public var total: Double
    }

    public func score(_ inputs: Inputs) -> Score {
        func unit(_ x: Double, _ saturation: Double) -> Double { x.isFinite ? min(1, max(0, x / saturation)) : 0 }
        let history = unit(inputs.poolMonthlyRate, rateScale)
        let age = unit(inputs.instanceAgeHours, ageSaturationHours)
        let volatility = unit(inputs.priceVolatility, volatilitySaturation)
        let total = 0.4 * history + 0.3 * age + 0.3 * volatility
        return Score(history: history, age: age, volatility: volatility, total: (total * 1000).rounded() / 1000)
    }

    public func warrantsReplica(_ score: Score) -> Bool { score.total >= threshold }
}
