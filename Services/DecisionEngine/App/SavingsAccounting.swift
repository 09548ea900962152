import Foundation
import SpotRuntime
import SpotStore

/// Savings against the on-demand baseline, claimed like the pass (`decisions.savings`, every
/// 15 minutes by default), in one transaction:
///
/// 1. replica_cost_log: one row per replica and hour slice it ran (from its launch to its
///    promotion — after which it is the agent's instance — termination or failure) at the pool's mean clean price of that hour (the last
///    price before it when the hour has none). Only finished slices are written, so a row never
///    changes once written and a rerun adds nothing twice.
/// 2. savings_snapshots, per agent and day (UTC), for the days from the last computed one (at
///    least yesterday, earlier when an instance or switch of an earlier day arrived since) to today:
///    - actual cost: every instance of the agent for every hour slice it ran, spot at its pool's
///      clean price of that hour, on-demand at the on-demand price — an old instance kept after a
///      switch (auto-terminate off) costs too;
///    - on-demand cost: the baseline, one on-demand instance of the same type while the agent
///      had a primary (an instance counts as primary until a switch or failover left it);
///    - replica cost from replica_cost_log; savings = on-demand − actual − replica.
///    The client's row (agent_id NULL) is the sum over its agents. A percentage below
///    −9,999.99 % (an agent that barely ran as primary but kept an old instance) is stored
///    as that bound; the dollar figures are exact.
///   Hours without any known price for the pool (or on-demand price for the type) are left out
///   of both sides and counted as `unpriced_hours` in the job's result.
public struct SavingsAccounting: Sendable {
    let store: PostgresStore
    let interval: Int
    let workerName: String

    public init(store: PostgresStore, interval: Int, workerName: String) {
        self.store = store
        self.interval = interval
        self.workerName = workerName
    }

    public struct Summary: Sendable, Codable, Equatable {
        public var from = ""
        public var replicaSlices = 0
        public var agentDays = 0
        public var clientDays = 0
        public var unpricedHours = 0.0
    }

    /// Runs the accounting when due (always with `force`); nil when another copy has it. With
    /// `from`, the days since then are recomputed whatever was computed before.
    public func run(force: Bool, from: Date? = nil) async throws -> Summary? {
        try await ScheduledJobs.run("decisions.savings", every: interval, force: force, worker: workerName, store: store) { conn in
            try Self.account(until: Date(), from: from, on: conn)
        }
    }

    static func account(until now: Date, from: Date?, on conn: PGConnection) throws -> Summary {
        var summary = Summary()
        // whole UTC days from the last computed one (at least yesterday) or from the oldest fact
        // recorded since the last run (an instance or a switch an agent reported late, after an
        // outage); a first run starts at the first instance; 90 days back at most
        let known = try conn.query(
            """
            WITH last AS (SELECT max(computed_at) AS at FROM savings_snapshots)
            SELECT (SELECT max(day) FROM savings_snapshots)::timestamptz, (SELECT min(coalesce(installed_at, created_at)) FROM instances),
                   least((SELECT min(coalesce(i.installed_at, i.created_at)) FROM instances i, last WHERE i.created_at > last.at),
                         (SELECT min(s.initiated_at) FROM switches s, last WHERE s.created_at > last.at))
            """)[0]
        let yesterday = now.addingTimeInterval(-86_400)
        var start = min(try known.decodeIfPresent(Date.self, at: 0) ?? known.decodeIfPresent(Date.self, at: 1) ?? yesterday, yesterday)
        start = min(start, try known.decodeIfPresent(Date.self, at: 2) ?? start)
        start = from ?? max(start, now.addingTimeInterval(-90 * 86_400))
        let since = Date(timeIntervalSince1970: (start.timeIntervalSince1970 / 86_400).rounded(.down) * 86_400)
        summary.from = ISO8601DateFormatter().string(from: since)

        summary.replicaSlices = try conn.execute(
            """
            WITH r AS (
                SELECT ri.id, ri.agent_id, a.client_id, ri.pool_id, coalesce(ri.launched_at, ri.created_at) AS started,
                       coalesce(ri.promoted_at, ri.terminated_at, CASE WHEN ri.is_active THEN $1 ELSE ri.status_changed_at END) AS ended
                  FROM replica_instances ri JOIN agents a ON a.id = ri.agent_id
                 WHERE ri.instance_id IS NOT NULL AND ri.pool_id IS NOT NULL
                   AND (ri.is_active OR coalesce(ri.promoted_at, ri.terminated_at, ri.status_changed_at) > $2)
            ), slices AS (
                SELECT r.*, h, greatest(h, r.started) AS s, least(h + interval '1 hour', r.ended) AS e
                  FROM r, generate_series(date_trunc('hour', greatest(r.started, $2)), r.ended, interval '1 hour') h
            )
            INSERT INTO replica_cost_log (replica_id, agent_id, client_id, pool_id, period_start, period_end, hourly_cost, cost)
            SELECT id, agent_id, client_id, pool_id, s, e, price, price * extract(epoch FROM e - s) / 3600
              FROM slices CROSS JOIN LATERAL (
                   SELECT coalesce(
                       (SELECT avg(c.spot_price) FROM pricing_snapshots_clean c
                         WHERE c.pool_id = slices.pool_id AND c.time_bucket >= h AND c.time_bucket < h + interval '1 hour'),
                       (SELECT c.spot_price FROM pricing_snapshots_clean c
                         WHERE c.pool_id = slices.pool_id AND c.time_bucket < h ORDER BY c.time_bucket DESC LIMIT 1)) AS price) p
             WHERE e > s AND e < $1 AND price IS NOT NULL
            ON CONFLICT (replica_id, period_start) DO NOTHING
            """, [now, since])

        let accounted = try conn.query(
            """
            WITH inst AS (
                SELECT i.id, i.client_id, i.agent_id, i.current_mode AS mode, i.current_pool_id AS pool,
                       coalesce(i.installed_at, i.created_at) AS started, coalesce(i.terminated_at, $1) AS ended,
                       coalesce((SELECT min(coalesce(s.instance_ready_at, s.created_at)) FROM switches s
                                  WHERE s.old_instance_id = i.id AND s.agent_id = i.agent_id), 'infinity') AS left_at,
                       coalesce(i.on_demand_price,
                                (SELECT c.on_demand_price FROM spot_pools p CROSS JOIN LATERAL (
                                        SELECT c.on_demand_price FROM pricing_snapshots_clean c
                                         WHERE c.pool_id = p.id AND c.time_bucket <= $1 ORDER BY c.time_bucket DESC LIMIT 1) c
                                  WHERE p.instance_type = coalesce(i.instance_type, a.instance_type) AND p.region = coalesce(i.region, a.region)
                                    AND c.on_demand_price IS NOT NULL
                                  LIMIT 1)) AS od
                  FROM instances i JOIN agents a ON a.id = i.agent_id
                 WHERE coalesce(i.terminated_at, $1) > $2 AND coalesce(i.installed_at, i.created_at) < $1
            ), slices AS (
                SELECT inst.*, h,
                       extract(epoch FROM least(h + interval '1 hour', ended) - greatest(h, started)) / 3600 AS hours,
                       greatest(0, extract(epoch FROM least(h + interval '1 hour', ended, left_at) - greatest(h, started))) / 3600 AS primary_hours
                  FROM inst, generate_series(date_trunc('hour', greatest(started, $2)), ended, interval '1 hour') h
            ), priced AS (
                SELECT slices.*, CASE WHEN mode = 'ondemand' THEN od ELSE (
                           SELECT coalesce(
                               (SELECT avg(c.spot_price) FROM pricing_snapshots_clean c
                                 WHERE c.pool_id = slices.pool AND c.time_bucket >= h AND c.time_bucket < h + interval '1 hour'),
                               (SELECT c.spot_price FROM pricing_snapshots_clean c
                                 WHERE c.pool_id = slices.pool AND c.time_bucket < h ORDER BY c.time_bucket DESC LIMIT 1))) END AS price
                  FROM slices WHERE hours > 0
            ), days AS (
                SELECT client_id, agent_id, (h AT TIME ZONE 'UTC')::date AS day,
                       sum(od * primary_hours) FILTER (WHERE price IS NOT NULL AND od IS NOT NULL) AS od_cost,
                       sum(price * hours) FILTER (WHERE price IS NOT NULL AND od IS NOT NULL) AS actual,
                       sum(hours) FILTER (WHERE price IS NOT NULL AND od IS NOT NULL) AS instance_hours,
                       sum(hours) FILTER (WHERE price IS NULL OR od IS NULL) AS unpriced
                  FROM priced GROUP BY 1, 2, 3
            ), replicas AS (
                SELECT client_id, agent_id, (period_start AT TIME ZONE 'UTC')::date AS day, sum(cost) AS cost
                  FROM replica_cost_log WHERE period_start >= $2 GROUP BY 1, 2, 3
            ), agent_days AS (
                SELECT coalesce(d.client_id, r.client_id) AS client_id, coalesce(d.agent_id, r.agent_id) AS agent_id,
                       coalesce(d.day, r.day) AS day, coalesce(d.od_cost, 0) AS od_cost, coalesce(d.actual, 0) AS actual,
                       coalesce(r.cost, 0) AS replica, coalesce(d.instance_hours, 0) AS instance_hours, coalesce(d.unpriced, 0) AS unpriced
                  FROM days d FULL JOIN replicas r ON r.agent_id = d.agent_id AND r.day = d.day
            ), written AS (
                INSERT INTO savings_snapshots AS s (client_id, agent_id, day, on_demand_cost, actual_cost, replica_cost, savings,
                                                   savings_percent, instance_hours, computed_at)
                SELECT client_id, agent_id, day, od_cost, actual, replica, od_cost - actual - replica,
                       CASE WHEN od_cost > 0 THEN greatest(-9999.99, round((100 * (od_cost - actual - replica) / od_cost)::numeric, 2)) END,
                       instance_hours, now()
                  FROM agent_days
                ON CONFLICT (client_id, agent_id, day) DO UPDATE SET on_demand_cost = EXCLUDED.on_demand_cost,
                       actual_cost = EXCLUDED.actual_cost, replica_cost = EXCLUDED.replica_cost, savings = EXCLUDED.savings,
                       savings_percent = EXCLUDED.savings_percent, instance_hours = EXCLUDED.instance_hours, computed_at = now()
                RETURNING 1
            )
            SELECT (SELECT count(*) FROM written)::int, coalesce((SELECT sum(unpriced) FROM agent_days), 0)::float8
            """, [now, since])[0]
        summary.agentDays = try accounted.decode(Int.self, at: 0)
        summary.unpricedHours = try accounted.decode(Double.self, at: 1)

        summary.clientDays = try conn.execute(
            """
            INSERT INTO savings_snapshots AS s (client_id, agent_id, day, on_demand_cost, actual_cost, replica_cost, savings,
                                               savings_percent, instance_hours, computed_at)
            SELECT client_id, NULL, day, sum(on_demand_cost), sum(actual_cost), sum(replica_cost), sum(savings),
                   CASE WHEN sum(on_demand_cost) > 0 THEN greatest(-9999.99, round(100 * sum(savings) / sum(on_demand_cost), 2)) END,
                   sum(instance_hours), now()
              FROM savings_snapshots WHERE agent_id IS NOT NULL AND day >= ($1::timestamptz AT TIME ZONE 'UTC')::date
             GROUP BY client_id, day
            ON CONFLICT (client_id, agent_id, day) DO UPDATE SET on_demand_cost = EXCLUDED.on_demand_cost,
                   actual_cost = EXCLUDED.actual_cost, replica_cost = EXCLUDED.replica_cost, savings = EXCLUDED.savings,
                   savings_percent = EXCLUDED.savings_percent, instance_hours = EXCLUDED.instance_hours, computed_at = now()
            """, [since])
        return summary
    }
}
