import Foundation
import SpotMarket

/// The simulated spot market of one region: an hourly price grid per pool (replayed from a
/// price file, or generated from a seed), on-demand prices per type, and each pool's Spot
/// Advisor interruption band. Simulated hour `h` reads grid hour `h mod hours`, so a month of
/// history runs for as long as the simulator does.
public struct Market: Sendable {
    public struct Zone: Sendable, Equatable {
        public var name: String
        public var id: String
    }

    public var region: String
    public var history: PriceHistory
    /// instance type → on-demand $/h
    public var onDemand: [String: Double]
    /// pool id → interruption band
    public var bands: [String: AdvisorBand]
    public var zones: [Zone]

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    public init(region: String, history: PriceHistory, onDemand: [String: Double], bands: [String: AdvisorBand]) throws {
        let priced = history.types.filter { onDemand[$0.value] != nil && $0.key.hasPrefix("\($0.value).\(region)") }
        guard !priced.isEmpty else { throw Invalid(description: "no pool of \(region) has both spot prices and an on-demand price") }
        var history = history
        history.prices = history.prices.filter { priced[$0.key] != nil }
        history.types = priced
        self.region = region
        self.history = history
        self.onDemand = onDemand.filter { Set(priced.values).contains($0.key) }
        self.bands = bands
        let names = Set(priced.keys.map { String($0.split(separator: ".").last ?? "") }).sorted()
        zones = names.map { Zone(name: $0, id: Self.zoneIds[$0] ?? "\(region.prefix(2))\($0.last.map(String.init) ?? "")-az") }
    }

    public var pools: [String] { history.prices.keys.sorted() }
    public var instanceTypes: [String] { history.instanceTypes }
    public func pools(of type: String) -> [String] { history.pools(of: type) }
    public func type(of pool: String) -> String? { history.types[pool] }

    /// The price of `pool` in simulated hour `hour`.
    public func price(_ pool: String, hour: Int) -> Double? {
        guard let series = history.prices[pool], history.hours > 0 else { return nil }
        let i = ((hour % history.hours) + history.hours) % history.hours
        return series[i] ?? series.lazy.compactMap { $0 }.first
    }

    /// The hours in `range` at which the price of `pool` changed (the range's first hour always
    /// counts), with the new price: what DescribeSpotPriceHistory lists.
    public func changes(_ pool: String, hours range: Range<Int>) -> [(hour: Int, price: Double)] {
        var out: [(Int, Double)] = []
        var last: Double?
        for h in range {
            guard let p = price(pool, hour: h) else { continue }
            if p != last { out.append((h, p)) }
            last = p
        }
        return out
    }

    // MARK: markets

    /// moto's default account's zone ids for us-east-1, so the simulator and moto agree.
    static let zoneIds = [
        "us-east-1a": "use1-az6", "us-east-1b": "use1-az1", "us-east-1c": "use1-az2", "us-east-1d": "use1-az4", "us-east-1e": "use1-az3",
        "us-east-1f": "use1-az5",
    ]

    /// us-east-1 on-demand Linux list prices (January 2024) of the synthetic market's types.
    public static let defaultOnDemand = ["m5.large": 0.096, "c5.large": 0.085, "r5.large": 0.126, "t3.medium": 0.0416]

    /// A market made up from `seed`: per pool a discount of 55–75 % below on-demand, hourly
    /// mean-reverting noise (AR(1), σ 2 %) and a ±3 % daily wave, and now and then (4 % of
    /// pool-days) a spike of 2–8 hours to 0.9–1.4 × on-demand. Bands drawn per pool (35 % <5 %,
    /// 30 % 5–10 %, 20 % 10–15 %, 10 % 15–20 %, 5 % >20 %).
    public static func synthetic(
        seed: UInt64, region: String = "us-east-1", onDemand: [String: Double] = defaultOnDemand, zones: Int = 6, days: Int = 14,
        start: Date = Date(timeIntervalSince1970: 1_704_067_200)
    ) throws -> Market {
        let hours = days * 24
        var prices: [String: [Double?]] = [:]
        var types: [String: String] = [:]
        var bands: [String: AdvisorBand] = [:]
        let letters = "abcdefghij".prefix(max(1, min(10, zones)))
        for (type, od) in onDemand {
            for letter in letters {
                let pool = "\(type).\(region)\(letter)"
                var rng = Draw.generator(seed, "market:\(pool)")
                let base = od * (1 - (0.55 + 0.2 * Double.random(in: 0..<1, using: &rng)))
                let phase = Double.random(in: 0..<24, using: &rng)
                var x = 0.0
                var series: [Double?] = []
                var spikeLeft = 0
                var spikePrice = 0.0
                for h in 0..<hours {
                    // Box–Muller for the noise
                    let (u1, u2) = (Double.random(in: Double.ulpOfOne..<1, using: &rng), Double.random(in: 0..<1, using: &rng))
                    x = 0.9 * x + 0.02 * (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
                    if h % 24 == 0, Double.random(in: 0..<1, using: &rng) < 0.04 {
                        spikeLeft = Int.random(in: 2...8, using: &rng)
                        spikePrice = od * Double.random(in: 0.9...1.4, using: &rng)
                    }
                    var p = base * exp(x) * (1 + 0.03 * sin(2 * .pi * (Double(h) + phase) / 24))
                    if spikeLeft > 0 {
                        p = spikePrice
                        spikeLeft -= 1
                    }
                    series.append((p * 10_000).rounded() / 10_000)
                }
                prices[pool] = series
                types[pool] = type
                let u = Draw.unit(seed, "band:\(pool)")
                bands[pool] = AdvisorBand([0.35, 0.65, 0.85, 0.95, 1.0].firstIndex { u < $0 } ?? 4)
            }
        }
        return try Market(region: region, history: PriceHistory(start: start, hours: hours, prices: prices, types: types), onDemand: onDemand, bands: bands)
    }

    /// A market replayed from a price file (see `PriceHistory.parse`); bands per type from the
    /// Advisor table where given, else drawn as in `synthetic`.
    public static func replay(
        csv: String, region: String, onDemand: [String: Double], advisor: [String: [String: AdvisorBand]]? = nil, seed: UInt64
    ) throws -> Market {
        let history = try PriceHistory.parse(csv: csv)
        var bands: [String: AdvisorBand] = [:]
        for (pool, type) in history.types {
            let u = Draw.unit(seed, "band:\(pool)")
            bands[pool] = advisor?[region]?[type] ?? AdvisorBand([0.35, 0.65, 0.85, 0.95, 1.0].firstIndex { u < $0 } ?? 4)
        }
        return try Market(region: region, history: history, onDemand: onDemand, bands: bands)
    }
}
