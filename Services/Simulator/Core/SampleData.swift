import Foundation
import SpotMarket

/// A made-up market written as the files `../shared/data` holds — the same columns and JSON
/// shape — so `make backtest`, `make replay` and `spotguard-decisions train` run from a clone
/// without AWS's files (whose licences keep them out of the repository):
/// `spot_price_history_<region>_sample_hourly.csv`, `on_demand_prices.csv` and
/// `spot-advisor-data_sample.json`.
public enum SampleData {
    public static let historyPrefix = "spot_price_history_"
    public static let advisorFile = "spot-advisor-data_sample.json"
    public static let onDemandFile = "on_demand_prices.csv"

    /// Each file's name and text.
    public static func files(_ market: Market) -> [(name: String, text: String)] {
        [
            ("\(historyPrefix)\(market.region)_sample_hourly.csv", history(market)),
            (onDemandFile, onDemand(market)),
            (advisorFile, advisor(market)),
        ]
    }

    /// `timestamp,region,az,instance_type,product_description,spot_price,az_id`, a row per pool
    /// and hour with a price.
    static func history(_ market: Market) -> String {
        var out = "timestamp,region,az,instance_type,product_description,spot_price,az_id\n"
        let zoneIds = Dictionary(uniqueKeysWithValues: market.zones.map { ($0.name, $0.id) })
        let stamp = Date.ISO8601FormatStyle()
        for hour in 0..<market.history.hours {
            let time = market.history.start.addingTimeInterval(Double(hour) * 3600).formatted(stamp)
            for pool in market.pools {
                guard let type = market.type(of: pool), let price = market.history.prices[pool]?[hour] ?? nil else { continue }
                let az = String(pool.dropFirst(type.count + 1))
                out += "\(time),\(market.region),\(az),\(type),Linux/UNIX,\(price),\(zoneIds[az] ?? "")\n"
            }
        }
        return out
    }

    /// `region,instance_type,operating_system,price_usd_per_hour,source,as_of`.
    static func onDemand(_ market: Market) -> String {
        var out = "region,instance_type,operating_system,price_usd_per_hour,source,as_of\n"
        for (type, price) in market.onDemand.sorted(by: { $0.key < $1.key }) {
            out += "\(market.region),\(type),Linux,\(price),SpotGuard sample data (not AWS's),sample\n"
        }
        return out
    }

    /// AWS's `spot-advisor-data.json` shape: `ranges`, and per region and type `{"s", "r"}`
    /// (savings percent, band index) — a type's band the most common of its pools'.
    static func advisor(_ market: Market) -> String {
        var types: [String: Any] = [:]
        for type in market.instanceTypes {
            let bands = market.pools(of: type).compactMap { market.bands[$0]?.index }
            let band = Dictionary(grouping: bands, by: { $0 }).max { ($0.value.count, -$0.key) < ($1.value.count, -$1.key) }?.key ?? 2
            let prices = market.pools(of: type).compactMap { market.history.prices[$0]?.compactMap { $0 }.last }
            let saving = market.onDemand[type].map { od in Int((100 * (1 - prices.reduce(0, +) / Double(max(prices.count, 1)) / od)).rounded()) } ?? 0
            types[type] = ["s": saving, "r": band]
        }
        let document: [String: Any] = [
            "ranges": [
                ["index": 0, "label": "<5%", "dots": 0, "max": 5], ["index": 1, "label": "5-10%", "dots": 1, "max": 11],
                ["index": 2, "label": "10-15%", "dots": 2, "max": 16], ["index": 3, "label": "15-20%", "dots": 3, "max": 22],
                ["index": 4, "label": ">20%", "dots": 4, "max": 100],
            ],
            "spot_advisor": [market.region: ["Linux": types]],
        ]
        let data = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}
