import DecisionCore
import Foundation
import SpotMarket
import Testing

@Suite struct LearnedEngineTests {
    /// Three pools whose prices follow a daily wave (each with its own phase) and a little
    /// noise: a rise within 6 hours is predictable from the hour and the recent trend.
    static func wavyMarket(days: Int) -> (prices: [String: [Double?]], start: Date) {
        let start = Date(timeIntervalSince1970: 1_704_067_200)  // 2024-01-01T00:00Z
        var prices: [String: [Double?]] = [:]
        var seed: UInt64 = 7
        func noise() -> Double {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Double(seed >> 11) / Double(1 << 53) - 0.5
        }
        for (i, pool) in ["w9.large.us-east-1a", "w9.large.us-east-1b", "w9.large.us-east-1c"].enumerated() {
            prices[pool] = (0..<(days * 24)).map { h in
                0.03 * (1 + 0.2 * sin(2 * Double.pi * Double(h) / 24 + Double(i) * 2) + 0.01 * noise())
            }
        }
        return (prices, start)
    }

    @Test func fitsAPredictableMarketDeterministically() throws {
        let market = Self.wavyMarket(days: 10)
        let pools = market.prices.keys.sorted()
        let od = Dictionary(uniqueKeysWithValues: pools.map { ($0, 0.1) })
        let samples = RiseModel.samples(prices: market.prices, markets: [pools], onDemand: od, startHour: market.start)
        #expect(samples.count == 3 * (240 - 23 - 6))
        let model = try #require(RiseModel.fit(samples))
        #expect(model.holdoutAuc > 0.9, "the wave is predictable: AUC \(model.holdoutAuc)")
        #expect(model.holdoutLogLoss < model.holdoutBaseLogLoss)
        #expect(abs(Double(model.positives) / Double(model.samples) - 0.1) < 0.02, "the threshold is the market's 90th percentile rise")
        #expect(model.riseThreshold > 0.05 && model.meanRise > 0)
        #expect(RiseModel.fit(samples) == model, "same data, same parameters")
        // a flat market has nothing to learn
        let flat = Dictionary(uniqueKeysWithValues: pools.map { ($0, [Double?](repeating: 0.03, count: 240)) })
        #expect(RiseModel.fit(RiseModel.samples(prices: flat, markets: [pools], onDemand: od, startHour: market.start)) == nil)
    }

    /// A hand-set model that expects pools priced below their day's mean to rise: the engine
    /// does not move into such a pool although its price now is lower, and says why; with a
    /// model that sees nothing it moves like the rules.
    @Test func avoidsAPoolTheModelExpectsToRise() {
        let n = PriceFeatures.names.count
        let vsMean = PriceFeatures.names.firstIndex(of: "vs_mean_24h")!
        var weights = Array(repeating: 0.0, count: n)
        weights[vsMean] = -20
        let model = RiseModel(
            features: PriceFeatures.names, means: Array(repeating: 0, count: n), scales: Array(repeating: 0.01, count: n), weights: weights,
            bias: -10, horizonHours: 6, riseThreshold: 0.1, meanRise: 0.5, samples: 100, positives: 10, holdoutLogLoss: 0, holdoutBaseLogLoss: 0,
            holdoutAuc: 0.5)
        let calm = PoolState(pool: "p.us-east-1a", price: 0.040, recentMean: 0.040, risk: 0.1, hourly: Array(repeating: 0.040, count: 24))
        // cheaper now, but far below its own day: the model expects it back up
        let dipped = PoolState(pool: "p.us-east-1b", price: 0.030, recentMean: 0.030, risk: 0.1, hourly: Array(repeating: 0.060, count: 23) + [0.030])
        let input = DecisionInput(current: .spot(calm.pool), onDemandPrice: 0.1, pools: [calm, dipped], hoursSinceSwitch: 100, hourOfDay: 12)
        let learned = LearnedEngine(model: model)
        let p = learned.riseProbabilities(input)
        #expect(p[dipped.pool]! > 0.99 && p[calm.pool]! < 0.001)
        let decision = learned.decide(input)
        #expect(decision.action == .stay)
        #expect(decision.reason.contains("model: chance of a ≥ 10.0 % rise within 6 h"))
        #expect(decision.scores["rise_probability_current"].map { $0 < 0.001 } == true)
        #expect(RulesEngine().decide(input).target == .spot(dipped.pool), "the rules alone take the dip")
        // a model with no opinion leaves the choice to the prices
        var blind = model
        blind.weights = Array(repeating: 0, count: n)
        blind.bias = 0
        #expect(LearnedEngine(model: blind).decide(input).target == .spot(dipped.pool))
    }

    @Test func changeEventsBecomeAnHourlyGrid() throws {
        let t0 = Date(timeIntervalSince1970: 1_704_067_200)
        let history = try #require(
            PriceHistory(events: [(t0, "x1.large.us-east-1a", 0.1), (t0.addingTimeInterval(3 * 3600 + 60), "x1.large.us-east-1a", 0.2)]))
        #expect(history.hours == 4)
        #expect(history.prices["x1.large.us-east-1a"]! == [0.1, 0.1, 0.1, 0.1], "a change at 03:01 holds from 04:00")
        #expect(history.types["x1.large.us-east-1a"] == "x1.large")
        #expect(PriceHistory(events: []) == nil)
    }
}
