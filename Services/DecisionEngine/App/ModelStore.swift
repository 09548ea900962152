import DecisionCore
import Foundation
import SpotMarket
import SpotModels
import SpotStore

/// The learned engine's models in decision_models: trained from pricing_snapshots_ml (the
/// SEF's high-confidence prices) or from a price-history file, read back by the pass.
public enum ModelStore {
    public struct Trained: Sendable, Codable {
        public var id: Int
        public var samples: Int
        public var positives: Int
        public var riseThreshold: Double
        public var holdoutAuc: Double
        public var holdoutLogLoss: Double
        public var holdoutBaseLogLoss: Double
        public var pools: Int
        public var hours: Int
    }

    public struct NotEnoughData: Error, CustomStringConvertible {
        public var pools: Int
        public var hours: Int
        public var description: String {
            "not enough price history to fit a model: \(pools) pools over \(hours) hours (a model needs a day of history plus 6 hours per example, 50 examples, and both outcomes)"
        }
    }

    /// Fits on the hourly prices of the last `days` days in pricing_snapshots_ml and saves the model.
    public static func train(days: Int, on conn: PGConnection) throws -> Trained {
        let rows = try conn.query(
            """
            SELECT m.pool_id, p.instance_type, p.region, m.time_bucket, m.spot_price::float8, m.on_demand_price::float8
              FROM pricing_snapshots_ml m JOIN spot_pools p ON p.id = m.pool_id
             WHERE m.time_bucket > now() - make_interval(days => $1) AND extract(minute FROM m.time_bucket) = 0
             ORDER BY m.time_bucket
            """, [days])
        var events: [(Date, String, Double)] = []
        var markets: [String: Set<String>] = [:]
        var onDemand: [String: Double] = [:]
        for r in rows {
            let pool = try r.decode(String.self, at: 0)
            markets["\(try r.decode(String.self, at: 1))|\(try r.decode(String.self, at: 2))", default: []].insert(pool)
            events.append((try r.decode(Date.self, at: 3), pool, try r.decode(Double.self, at: 4)))
            if let od = try r.decodeIfPresent(Double.self, at: 5) { onDemand[pool] = od }
        }
        // a market's on-demand price is any of its pools' (they are one instance type in one region)
        for pools in markets.values {
            if let od = pools.sorted().lazy.compactMap({ onDemand[$0] }).first { for p in pools { onDemand[p] = od } }
        }
        let history = PriceHistory(events: events)
        return try save(
            history: history, markets: markets.values.map { $0.sorted() }, onDemand: onDemand, source: "pricing_snapshots_ml, \(days) days", on: conn)
    }

    /// Fits on a price-history file (the back-test's formats) and saves the model.
    public static func train(history: PriceHistory, onDemand byType: [String: Double], source: String, on conn: PGConnection) throws -> Trained {
        let markets = history.instanceTypes.map { history.pools(of: $0) }
        return try save(history: history, markets: markets, onDemand: history.types.compactMapValues { byType[$0] }, source: source, on: conn)
    }

    static func save(history: PriceHistory?, markets: [[String]], onDemand: [String: Double], source: String, on conn: PGConnection) throws -> Trained {
        guard let history,
            let model = RiseModel.fit(RiseModel.samples(prices: history.prices, markets: markets, onDemand: onDemand, startHour: history.start))
        else { throw NotEnoughData(pools: history?.prices.count ?? 0, hours: history?.hours ?? 0) }
        let params = String(decoding: try WireJSON.encoder().encode(model), as: UTF8.self)
        let id = try conn.query(
            """
            INSERT INTO decision_models (engine, params, samples, positives, holdout_auc, holdout_log_loss, holdout_base_log_loss,
                                         trained_from, trained_to, source)
            VALUES ('learned', $1::jsonb, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id
            """,
            [
                params, model.samples, model.positives, model.holdoutAuc, model.holdoutLogLoss, model.holdoutBaseLogLoss, history.start,
                history.start.addingTimeInterval(Double(history.hours) * 3600), source,
            ])[0].decode(Int.self, at: 0)
        return Trained(
            id: id, samples: model.samples, positives: model.positives, riseThreshold: model.riseThreshold, holdoutAuc: model.holdoutAuc,
            holdoutLogLoss: model.holdoutLogLoss, holdoutBaseLogLoss: model.holdoutBaseLogLoss, pools: history.prices.count, hours: history.hours)
    }

    /// The newest saved model that this build can read, or nil when none was trained yet (a
    /// model saved by a newer build with other parameters is skipped, not fatal to the pass).
    static func latest(on conn: PGConnection) throws -> (id: Int, model: RiseModel)? {
        for row in try conn.query("SELECT id, params::text FROM decision_models WHERE engine = 'learned' ORDER BY id DESC LIMIT 5") {
            if let model = try? WireJSON.decoder().decode(RiseModel.self, from: Data(try row.decode(String.self, at: 1).utf8)),
                model.features == PriceFeatures.names
            {
                return (try row.decode(Int.self, at: 0), model)
            }
        }
        return nil
    }
}
