import Foundation

/// Hourly prices per pool, from either kind of file: hourly snapshots (a row per pool every
/// hour) or change events (a row only when a price changes). Both become one hourly grid in
/// which each hour holds the last price seen at or before it; rows with prices ≤ 0 (SpotLake's
/// "missing") are dropped.
public struct PriceHistory: Sendable {
    public var start: Date
    public var hours: Int
    /// pool id (`type.az`) → price per hour, nil before the pool's first price.
    public var prices: [String: [Double?]]
    /// pool id → instance type
    public var types: [String: String]

    public struct ParseError: Error, CustomStringConvertible {
        public var description: String
    }

    /// The region of the pools (`us-east-1` for `c5.large.us-east-1a`), nil without pools.
    public var region: String? {
        types.keys.min().flatMap { $0.split(separator: ".").last.map { String($0.dropLast()) } }
    }

    /// CSV with a header naming at least `timestamp`, `az`, `instance_type` and `spot_price`.
    public static func parse(csv: String) throws -> PriceHistory {
        var lines = csv.split(whereSeparator: \.isNewline).makeIterator()
        guard let header = lines.next()?.split(separator: ",").map({ String($0).trimmingCharacters(in: .whitespaces) }) else {
            throw ParseError(description: "empty file")
        }
        func column(_ name: String) throws -> Int {
            guard let i = header.firstIndex(of: name) else { throw ParseError(description: "no \(name) column") }
            return i
        }
        let (ti, ai, yi, pi) = (try column("timestamp"), try column("az"), try column("instance_type"), try column("spot_price"))
        var events: [(Date, String, Double)] = []
        var types: [String: String] = [:]
        let iso = Date.ISO8601FormatStyle()
        for line in lines {
            let f = line.split(separator: ",", omittingEmptySubsequences: false)
            guard f.count > max(ti, ai, yi, pi), let price = Double(f[pi]), price > 0, price.isFinite,
                let at = try? Date(String(f[ti]), strategy: iso)
            else { continue }
            let pool = "\(f[yi]).\(f[ai])"
            types[pool] = String(f[yi])
            events.append((at, pool, price))
        }
        guard let history = PriceHistory(events: events, types: types) else { throw ParseError(description: "no prices") }
        return history
    }

    /// The hourly grid of price events (time, pool, price); nil without any. `types` maps pool
    /// ids to instance types (by default the pool id up to its zone).
    public init?(events: [(Date, String, Double)], types: [String: String]? = nil) {
        guard let first = events.map(\.0).min(), let last = events.map(\.0).max() else { return nil }
        let start = Date(timeIntervalSince1970: (first.timeIntervalSince1970 / 3600).rounded(.down) * 3600)
        let hours = Int((last.timeIntervalSince(start) / 3600).rounded(.down)) + 1
        let types = types ?? Dictionary(events.map { e in (e.1, String(e.1.split(separator: ".").dropLast().joined(separator: "."))) }) { a, _ in a }
        var prices = Dictionary(uniqueKeysWithValues: types.keys.map { ($0, [Double?](repeating: nil, count: hours)) })
        // the latest event at or before each hour's start holds for that hour
        for (at, pool, price) in events.sorted(by: { ($0.1, $0.0) < ($1.1, $1.0) }) {
            let h = Int((at.timeIntervalSince(start) / 3600).rounded(.up))
            guard h < hours else { continue }
            prices[pool]![h] = price
        }
        for pool in prices.keys {
            var last: Double?
            for h in 0..<hours {
                if let p = prices[pool]![h] { last = p } else { prices[pool]![h] = last }
            }
        }
        self.init(start: start, hours: hours, prices: prices, types: types)
    }

    public init(start: Date, hours: Int, prices: [String: [Double?]], types: [String: String]) {
        self.start = start
        self.hours = hours
        self.prices = prices
        self.types = types
    }

    /// The history split by region (files such as SpotLake's change events hold several).
    public var byRegion: [String: PriceHistory] {
        let regions = Dictionary(grouping: types.keys) { String($0.split(separator: ".").last?.dropLast() ?? "") }
        return regions.mapValues { pools in
            PriceHistory(
                start: start, hours: hours, prices: prices.filter { pools.contains($0.key) }, types: types.filter { pools.contains($0.key) })
        }
    }

    public func pools(of type: String) -> [String] { types.filter { $0.value == type }.map(\.key).sorted() }
    public var instanceTypes: [String] { Set(types.values).sorted() }

    /// A copy in which `pools` cost `factor` × on-demand for `length` hours from `hour`.
    public func withSpike(pools: [String], from hour: Int, length: Int, price: Double) -> PriceHistory {
        var copy = self
        for pool in pools {
            for h in hour..<max(hour, min(hours, hour + length)) { copy.prices[pool]?[h] = price }
        }
        return copy
    }
}

/// AWS Spot Instance Advisor's interruption-frequency band (0…4: <5 %, 5–10 %, 10–15 %,
/// 15–20 %, >20 % of instances interrupted in a month).
public struct AdvisorBand: Sendable, Hashable, Codable {
    public let index: Int

    public init?(_ index: Int) {
        guard (0...4).contains(index) else { return nil }
        self.index = index
    }

    /// The band's monthly interruption frequency (its midpoint; 25 % for the open top band).
    public var monthlyRate: Double { [0.025, 0.075, 0.125, 0.175, 0.25][index] }
}

extension AdvisorBand {
    /// Linux interruption bands per region and instance type from AWS's
    /// `spot-advisor-data.json` (`spot_advisor.<region>.Linux.<type>.r`).
    /// Decoded straight into the few fields read: the whole file as Foundation objects
    /// (`JSONSerialization`) kept ~59 MiB resident in the decision engine for a table of a few
    /// thousand bands.
    public static func table(json: Data) throws -> [String: [String: AdvisorBand]] {
        struct Entry: Decodable { let r: Int? }
        struct OS: Decodable {
            let linux: [String: Entry]?
            enum CodingKeys: String, CodingKey { case linux = "Linux" }
        }
        struct File: Decodable {
            let spotAdvisor: [String: OS]?
            enum CodingKeys: String, CodingKey { case spotAdvisor = "spot_advisor" }
        }
        var out: [String: [String: AdvisorBand]] = [:]
        for (region, oses) in try JSONDecoder().decode(File.self, from: json).spotAdvisor ?? [:] {
            for (type, entry) in oses.linux ?? [:] {
                if let r = entry.r, let band = AdvisorBand(r) { out[region, default: [:]][type] = band }
            }
        }
        return out
    }
}

/// On-demand Linux prices per instance type from `on_demand_prices.csv`
/// (`region,instance_type,os,price,source`).
public enum OnDemandPrices {
    /// The prices of `region`; AWS list prices (SpotLake rows) before community ones.
    public static func parse(csv: String, region: String) -> [String: Double] {
        var out: [String: Double] = [:]
        var official: Set<String> = []
        for line in csv.split(whereSeparator: \.isNewline).dropFirst() {
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard f.count >= 5, f[0] == region, f[2] == "Linux", let price = Double(f[3]), price > 0 else { continue }
            let isOfficial = f[4].hasPrefix("spotlake")
            if out[f[1]] == nil || (isOfficial && !official.contains(f[1])) { out[f[1]] = price }
            if isOfficial { official.insert(f[1]) }
        }
        return out
    }

    public static func read(_ path: String, region: String) throws -> [String: Double] {
        parse(csv: try String(contentsOfFile: path, encoding: .utf8), region: region)
    }
}
