import Foundation
import SpotMarket
import SpotStore

/// The fleet's own record per spot pool, as the shared `InterruptionModel` weighs it: the
/// decision pass and the replica coordinator read it the same way.
///
/// Interruptions are termination notices (1 each) and rebalance recommendations
/// (`rebalanceWeight` each) of the last 30 days, weighted by their age; exposure is every
/// instance-hour in the pool — primaries still running, primaries gone (terminated or
/// switched away), replicas until they were promoted or ended — each weighted by its age (the
/// integral of 2^(-age / half-life) over the time it ran). A pool the fleet left keeps the
/// exposure it had, and its interruptions fade: nothing bans it for good.
public enum PoolEvidence {
    public struct Record: Sendable, Equatable {
        public var evidence: InterruptionModel.Evidence
        /// Termination notices of the last 30 days, unweighted, and their UTC hours.
        public var terminations: Int
        public var terminationHours: [Int]
        /// Mean age in hours of the primaries running in the pool now (0 without one).
        public var runningAgeHours: Double
    }

    /// The record of `pools` (all pools with any record when nil).
    public static func read(_ pools: [String]?, model: InterruptionModel, on conn: PGConnection) throws -> [String: Record] {
        var out: [String: Record] = [:]
        for r in try conn.query(
            """
            WITH interruptions AS (
                SELECT pool_id, count(*) FILTER (WHERE signal_type = 'termination-notice')::int AS n,
                       string_agg(extract(hour FROM detected_at AT TIME ZONE 'UTC')::int::text, ',')
                           FILTER (WHERE signal_type = 'termination-notice') AS hours,
                       sum(CASE WHEN signal_type = 'termination-notice' THEN 1.0 ELSE $2::float8 END
                           * power(2.0, -extract(epoch FROM now() - detected_at)::float8 / 3600 / $1::float8))::float8 AS weighted
                  FROM spot_interruption_events
                 WHERE detected_at > now() - interval '30 days' AND pool_id IS NOT NULL AND ($3::text[] IS NULL OR pool_id = ANY($3))
                 GROUP BY pool_id
            ), spans AS (
                SELECT current_pool_id AS pool_id, coalesce(installed_at, created_at) AS began,
                       CASE WHEN is_active THEN now() ELSE terminated_at END AS ended, is_active AS running
                  FROM instances
                 WHERE current_pool_id IS NOT NULL AND (is_active OR terminated_at > now() - interval '30 days')
                   AND ($3::text[] IS NULL OR current_pool_id = ANY($3))
                UNION ALL
                SELECT pool_id, coalesce(launched_at, created_at), coalesce(promoted_at, terminated_at, CASE WHEN is_active THEN now() END), false
                  FROM replica_instances
                 WHERE pool_id IS NOT NULL AND (is_active OR coalesce(promoted_at, terminated_at) > now() - interval '30 days')
                   AND ($3::text[] IS NULL OR pool_id = ANY($3))
            ), exposure AS (
                -- τ (e^(-a/τ) − e^(-b/τ)) with τ = half-life / ln 2, a and b the hours since it ended and began
                SELECT pool_id,
                       sum(($1::float8 / ln(2.0)) * (exp(-greatest(0, extract(epoch FROM now() - ended)::float8 / 3600) / ($1::float8 / ln(2.0)))
                                          - exp(-least(720, extract(epoch FROM now() - began)::float8 / 3600) / ($1::float8 / ln(2.0)))))::float8 AS hours,
                       avg(extract(epoch FROM now() - began)::float8 / 3600) FILTER (WHERE running)::float8 AS age
                  FROM spans WHERE ended IS NOT NULL AND ended >= began
                 GROUP BY pool_id
            )
            SELECT coalesce(i.pool_id, e.pool_id), coalesce(i.weighted, 0), greatest(0, coalesce(e.hours, 0)), coalesce(i.n, 0),
                   coalesce(i.hours, ''), coalesce(e.age, 0)
              FROM interruptions i FULL JOIN exposure e ON e.pool_id = i.pool_id
            """, [model.halfLifeHours, model.rebalanceWeight, pools.map { PGArray($0) }])
        {
            let hours = try r.decode(String.self, at: 4).split(separator: ",").compactMap { Int($0) }.filter { (0..<24).contains($0) }
            out[try r.decode(String.self, at: 0)] = Record(
                evidence: .init(interruptions: try r.decode(Double.self, at: 1), exposureHours: try r.decode(Double.self, at: 2)),
                terminations: try r.decode(Int.self, at: 3), terminationHours: hours, runningAgeHours: try r.decode(Double.self, at: 5))
        }
        return out
    }
}
