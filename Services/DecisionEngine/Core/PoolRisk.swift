import Foundation
import SpotMarket

/// The interruption risk of a spot pool, 0…1, with its parts (stored in pool_risk_analysis):
///
///     risk = 0.6 × interruption + 0.15 × volatility + 0.15 × age + 0.10 × time of day
///
/// - interruption: the pool's monthly interruption rate on a scale where 25 % is 1, from the
///   shared `InterruptionModel` (the Advisor band as a prior, the fleet's decayed record over it).
/// - volatility: robust variation (`robustVolatility`) of the last 24 h of clean prices, 5 % is 1.
/// - age: how long the instance has run, a week is 1 (for a pool: its fleet's mean).
/// - time of day: how much of the pool's interruptions fell within an hour of this hour of the
///   day, above an even spread (needs at least 5 interruptions, else 0).
///
/// The conservative profile's bands apply to it (below 0.2 a pool is safe, 0.2–0.5 needs over
/// 50 % savings, above 0.5 it is avoided); the default cost engine uses the hourly rate only.
public struct PoolRiskModel: Sendable, Equatable {
    public var interruptions = InterruptionModel()
    public var rateScale = 0.25
    public var volatilityScale = 0.05
    public var ageScaleHours = 168.0

    public init() {}

    public struct Inputs: Sendable, Equatable {
        public var band: AdvisorBand?
        public var evidence: InterruptionModel.Evidence
        public var priceVolatility: Double
        public var instanceAgeHours: Double
        /// Interruptions of the pool by hour of day (UTC), 24 entries or empty.
        public var interruptionsByHour: [Int]
        public var hourOfDay: Int

        public init(
            band: AdvisorBand?, evidence: InterruptionModel.Evidence = .init(), priceVolatility: Double = 0,
            instanceAgeHours: Double = 0, interruptionsByHour: [Int] = [], hourOfDay: Int = 0
        ) {
            self.band = band
            self.evidence = evidence
            self.priceVolatility = priceVolatility
            self.instanceAgeHours = instanceAgeHours
            self.interruptionsByHour = interruptionsByHour
            self.hourOfDay = hourOfDay
        }
    }

    public struct Score: Sendable, Equatable, Codable {
        public var interruption: Double
        public var volatility: Double
        public var age: Double
        public var timeOfDay: Double
        /// The blended monthly interruption rate behind `interruption`.
        public var monthlyRate: Double
        /// The same per instance-hour, unrounded: what the cost engine prices.
        public var hourlyRate: Double
        public var total: Double
    }

    public func score(_ i: Inputs) -> Score {
        func unit(_ x: Double) -> Double { x.isFinite ? min(1, max(0, x)) : 0 }
        let hourly = interruptions.hourly(band: i.band, evidence: i.evidence)
        let rate = min(1, hourly * 730)
        let interruption = unit(rate / rateScale)
        let volatility = unit(i.priceVolatility / volatilityScale)
        let age = unit(i.instanceAgeHours / ageScaleHours)
        var timeOfDay = 0.0
        let total = i.interruptionsByHour.reduce(0, +)
        if i.interruptionsByHour.count == 24, total >= 5 {
            let near = (-1...1).map { i.interruptionsByHour[(i.hourOfDay + $0 + 24) % 24] }.reduce(0, +)
            let even = 3.0 / 24
            timeOfDay = unit((Double(near) / Double(total) - even) / (1 - even))
        }
        let risk = 0.6 * interruption + 0.15 * volatility + 0.15 * age + 0.10 * timeOfDay
        func r(_ x: Double) -> Double { (x * 1000).rounded() / 1000 }
        return Score(
            interruption: r(interruption), volatility: r(volatility), age: r(age), timeOfDay: r(timeOfDay), monthlyRate: r(rate),
            hourlyRate: hourly, total: r(risk))
    }

    /// Price variation that a short spike does not inflate: the median absolute deviation
    /// over the median (scaled to a standard deviation for normal data). A risk measure that a
    /// six-hour spike kept high for a day would keep workloads on on-demand after the market
    /// recovered.
    public static func robustVolatility(_ prices: [Double]) -> Double {
        let valid = prices.filter { $0.isFinite && $0 > 0 }.sorted()
        guard valid.count >= 2 else { return 0 }
        func median(_ xs: [Double]) -> Double {
            let n = xs.count
            return n % 2 == 1 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2
        }
        let m = median(valid)
        return 1.4826 * median(valid.map { abs($0 - m) }.sorted()) / m
    }
}
