import Foundation
import Metrics
import SEFCore
import SpotFleet
import SpotModels
import SpotStore

extension PriceRepository {
    /// Buckets that just became measured: their interpolation records go, so do the records
    /// of the gaps they were in (when they close a gap entirely nothing else would remove it),
    /// and the gaps around them, and around `repriced` (measured buckets whose price changed),
    /// are recomputed (a late value splits a filled gap in two).
    func measuredArrived(_ keys: [BucketKey], repriced: [BucketKey], on conn: PGConnection) throws -> ApplyReport {
        var report = ApplyReport()
        _ = try conn.execute(
            """
            DELETE FROM pricing_snapshots_interpolated i USING unnest($1::text[], $2::timestamptz[]) AS k(pool, bucket)
             WHERE i.pool_id = k.pool AND i.time_bucket = k.bucket
            """, [PGArray(keys.map(\.pool)), PGArray(keys.map(\.date))])
        _ = try conn.execute(
            """
            DELETE FROM pricing_gaps g USING unnest($1::text[], $2::timestamptz[]) AS k(pool, bucket)
             WHERE g.pool_id = k.pool AND g.status <> 'open' AND g.gap_start < k.bucket AND g.gap_end > k.bucket
            """, [PGArray(keys.map(\.pool)), PGArray(keys.map(\.date))])
        // an open (trailing) gap ends with this data; the scan records it again if still open
        let highs = Dictionary(grouping: keys, by: \.pool).mapValues { $0.map(\.bucket).max()! }.sorted { $0.key < $1.key }
        _ = try conn.execute(
            """
            DELETE FROM pricing_gaps g USING unnest($1::text[], $2::timestamptz[]) AS k(pool, hi)
             WHERE g.pool_id = k.pool AND g.status = 'open' AND g.gap_start < k.hi
            """, [PGArray(highs.map(\.key)), PGArray(highs.map { Date(timeIntervalSince1970: TimeInterval($0.value)) })])
        report.merge(try recomputeAround(keys + repriced, on: conn))
        return report
    }

    /// Buckets no longer measured (the clients that measured them disagree, or one client's
    /// price is not taken): their clean rows go and the gaps they leave are filled like any other.
    func measuredLeft(_ keys: [BucketKey], on conn: PGConnection) throws -> ApplyReport {
        var report = ApplyReport()
        _ = try conn.execute(
            """
            DELETE FROM pricing_snapshots_clean c USING unnest($1::text[], $2::timestamptz[]) AS k(pool, bucket)
             WHERE c.pool_id = k.pool AND c.time_bucket = k.bucket AND c.data_source = 'measured'
            """, [PGArray(keys.map(\.pool)), PGArray(keys.map(\.date))])
        report.merge(try recomputeAround(keys, on: conn))
        return report
    }

    /// Recomputes every fill that can lean on the measured buckets `keys` just gained or lost,
    /// whenever they arrive, so the clean data does not depend on arrival order at any age:
    /// in each pool, every gap within the weighted-average window of them (a fill there weighs
    /// the points up to `weightedWindow` beyond its edges), and in the pools of the same type and
    /// region, every cross-pool gap they fall in (such a fill follows its peers' prices at its
    /// edges and inside it). The peers share the pool's lock (`lockPools`), so this needs none.
    func recomputeAround(_ keys: [BucketKey], on conn: PGConnection) throws -> ApplyReport {
        var report = ApplyReport()
        let byPool = Dictionary(grouping: keys, by: \.pool)
        let pools = byPool.keys.sorted()
        let lows = pools.map { Date(timeIntervalSince1970: TimeInterval(byPool[$0]!.map(\.bucket).min()!)) }
        let highs = pools.map { Date(timeIntervalSince1970: TimeInterval(byPool[$0]!.map(\.bucket).max()!)) }
        // per pool: the measured buckets just outside the window around [lo, hi] (else the
        // outermost inside it), and how many are measured between them
        let ranges = try conn.query(
            """
            SELECT k.pool, extract(epoch FROM r.f)::bigint, extract(epoch FROM r.t)::bigint,
                   (SELECT count(*) FROM pricing_snapshots_clean c
                     WHERE c.pool_id = k.pool AND c.data_source = 'measured' AND c.time_bucket BETWEEN r.f AND r.t)
              FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS k(pool, lo, hi)
              CROSS JOIN LATERAL (
                SELECT coalesce(
                         (SELECT max(c.time_bucket) FROM pricing_snapshots_clean c WHERE c.pool_id = k.pool AND c.data_source = 'measured'
                             AND c.time_bucket < k.lo - make_interval(secs => $4)),
                         (SELECT min(c.time_bucket) FROM pricing_snapshots_clean c WHERE c.pool_id = k.pool AND c.data_source = 'measured'
                             AND c.time_bucket >= k.lo - make_interval(secs => $4))) AS f,
                       coalesce(
                         (SELECT min(c.time_bucket) FROM pricing_snapshots_clean c WHERE c.pool_id = k.pool AND c.data_source = 'measured'
                             AND c.time_bucket > k.hi + make_interval(secs => $4)),
                         (SELECT max(c.time_bucket) FROM pricing_snapshots_clean c WHERE c.pool_id = k.pool AND c.data_source = 'measured'
                             AND c.time_bucket <= k.hi + make_interval(secs => $4))) AS t) r
             WHERE r.f IS NOT NULL AND r.t IS NOT NULL
            """, [PGArray(pools), PGArray(lows), PGArray(highs), Double(policy.weightedWindow)])
        for row in ranges {
            let (from, to, measured) = (try row.decode(Int64.self, at: 1), try row.decode(Int64.self, at: 2), try row.decode(Int64.self, at: 3))
            if measured == (to - from) / SEFPolicy.bucketSeconds + 1 { continue }  // no gap there
            guard let pool = PoolID(rawValue: try row.decode(String.self, at: 0)) else { continue }
            report.merge(try recomputeGaps(pool: pool, from: from, to: to, on: conn))
        }
        let peerGaps = try conn.query(
            """
            SELECT DISTINCT g.pool_id, extract(epoch FROM g.gap_start)::bigint, extract(epoch FROM g.gap_end)::bigint
              FROM unnest($1::text[], $2::timestamptz[]) AS k(pool, bucket)
              JOIN spot_pools p ON p.id = k.pool
              JOIN spot_pools q ON q.instance_type = p.instance_type AND q.region = p.region AND q.id <> p.id
              JOIN pricing_gaps g ON g.pool_id = q.id AND g.status <> 'open' AND g.gap_start <= k.bucket AND g.gap_end >= k.bucket
             WHERE g.interpolation_method = 'cross-pool' OR g.unfilled_reason = 'no_peer_data'
             ORDER BY 1, 2
            """, [PGArray(keys.map(\.pool)), PGArray(keys.map(\.date))])
        for row in peerGaps {
            guard let pool = PoolID(rawValue: try row.decode(String.self, at: 0)) else { continue }
            report.merge(try recomputeGaps(pool: pool, from: try row.decode(Int64.self, at: 1), to: try row.decode(Int64.self, at: 2), on: conn))
        }
        return report
    }

    /// Recomputes every gap between measured buckets of `pool` in [from, to]: fills, their
    /// interpolation records, the `pricing_gaps` rows, and alerts for gaps left unfilled.
    func recomputeGaps(pool: PoolID, from: Int64, to: Int64, on conn: PGConnection) throws -> ApplyReport {
        var report = ApplyReport()
        let measured = try measuredPoints(pool.rawValue, from: from - policy.weightedWindow, to: to + policy.weightedWindow, on: conn)
        let inRange = measured.filter { $0.bucket >= from && $0.bucket <= to }
        let gaps = GapFiller.gaps(in: inRange.map(\.bucket))
        var fills: [(Gap, Fill)] = []
        var records: [(Gap, GapOutcome)] = []
        for gap in gaps {
            var peers: [PoolID: [Int64: Double]] = [:]
            if policy.method(forGap: gap.seconds) == .crossPool {
                peers = try peerPrices(of: pool, from: gap.start, to: gap.end, on: conn)
            }
            let context = GapContext(
                before: measured.filter { $0.bucket <= gap.start }, after: measured.filter { $0.bucket >= gap.end }, peers: peers)
            let outcome = GapFiller.fill(gap, context: context, policy: policy)
            records.append((gap, outcome))
            if case .filled(let f) = outcome { fills += f.map { (gap, $0) } }
        }
        let fromDate = Date(timeIntervalSince1970: TimeInterval(from))
        let toDate = Date(timeIntervalSince1970: TimeInterval(to))
        let fillBuckets = PGArray(fills.map { Date(timeIntervalSince1970: TimeInterval($0.1.bucket)) })
        // fills that no longer belong to a gap (policy change, or a gap now unfilled)
        _ = try conn.execute(
            """
            DELETE FROM pricing_snapshots_clean WHERE pool_id = $1 AND time_bucket > $2 AND time_bucket < $3
               AND data_source = 'interpolated' AND NOT (time_bucket = ANY($4::timestamptz[]))
            """, [pool.rawValue, fromDate, toDate, fillBuckets])
        _ = try conn.execute(
            """
            DELETE FROM pricing_snapshots_interpolated WHERE pool_id = $1 AND time_bucket > $2 AND time_bucket < $3
               AND NOT (time_bucket = ANY($4::timestamptz[]))
            """, [pool.rawValue, fromDate, toDate, fillBuckets])
        if !fills.isEmpty {
            let changed = try conn.query(
                """
                INSERT INTO pricing_snapshots_clean AS c (pool_id, time_bucket, spot_price, on_demand_price, confidence_score,
                    data_source, source_type, interpolation_method, quality_flag, submission_count)
                SELECT $1, bucket, price, od, conf, 'interpolated', 'interpolated', method, NULL, 0
                  FROM unnest($2::timestamptz[], $3::numeric[], $4::numeric[], $5::numeric[], $6::text[])
                    AS u(bucket, price, od, conf, method)
                ON CONFLICT (pool_id, time_bucket) DO UPDATE SET
                    spot_price = EXCLUDED.spot_price, on_demand_price = EXCLUDED.on_demand_price,
                    confidence_score = EXCLUDED.confidence_score, interpolation_method = EXCLUDED.interpolation_method
                 WHERE c.data_source = 'interpolated'
                   AND (c.spot_price, c.on_demand_price, c.confidence_score, c.interpolation_method)
                       IS DISTINCT FROM (EXCLUDED.spot_price, EXCLUDED.on_demand_price, EXCLUDED.confidence_score,
                                         EXCLUDED.interpolation_method)
                RETURNING extract(epoch FROM time_bucket)::bigint
                """,
                [
                    pool.rawValue, fillBuckets, PGArray(fills.map(\.1.price)),
                    PGArray(fills.map { $0.1.onDemandPrice as (any PGEncodable)? }), PGArray(fills.map(\.1.confidence)),
                    PGArray(fills.map(\.1.method.rawValue)),
                ])
            let changedBuckets = Set(try changed.map { try $0.decode(Int64.self, at: 0) })
            for (_, f) in fills where changedBuckets.contains(f.bucket) {
                report.fills[f.method, default: 0] += 1
                report.cleaned.append(
                    CleanPrice(
                        poolId: pool, timeBucket: Date(timeIntervalSince1970: TimeInterval(f.bucket)), spotPrice: f.price,
                        onDemandPrice: f.onDemandPrice, confidence: f.confidence, dataSource: .interpolated,
                        sourceType: .interpolated, interpolationMethod: f.method, averagedDualSource: false))
            }
            _ = try conn.execute(
                """
                INSERT INTO pricing_snapshots_interpolated AS i (pool_id, time_bucket, interpolation_method, gap_start, gap_end,
                    price_before, price_after, interpolated_price, confidence_score, peer_pool_ids)
                SELECT $1, bucket, method, gs, ge, pb, pa, price, conf, string_to_array(nullif(peers, ''), ',')
                  FROM unnest($2::timestamptz[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::numeric[], $7::numeric[],
                              $8::numeric[], $9::numeric[], $10::text[]) AS u(bucket, method, gs, ge, pb, pa, price, conf, peers)
                ON CONFLICT (pool_id, time_bucket) DO UPDATE SET
                    interpolation_method = EXCLUDED.interpolation_method, gap_start = EXCLUDED.gap_start,
                    gap_end = EXCLUDED.gap_end, price_before = EXCLUDED.price_before, price_after = EXCLUDED.price_after,
                    interpolated_price = EXCLUDED.interpolated_price, confidence_score = EXCLUDED.confidence_score,
                    peer_pool_ids = EXCLUDED.peer_pool_ids
                 WHERE (i.interpolation_method, i.gap_start, i.gap_end, i.price_before, i.price_after, i.interpolated_price,
                        i.confidence_score, i.peer_pool_ids)
                       IS DISTINCT FROM (EXCLUDED.interpolation_method, EXCLUDED.gap_start, EXCLUDED.gap_end,
                        EXCLUDED.price_before, EXCLUDED.price_after, EXCLUDED.interpolated_price, EXCLUDED.confidence_score,
                        EXCLUDED.peer_pool_ids)
                """,
                [
                    pool.rawValue, fillBuckets, PGArray(fills.map(\.1.method.rawValue)),
                    PGArray(fills.map { Date(timeIntervalSince1970: TimeInterval($0.0.start)) }),
                    PGArray(fills.map { Date(timeIntervalSince1970: TimeInterval($0.0.end)) }), PGArray(fills.map(\.1.priceBefore)),
                    PGArray(fills.map(\.1.priceAfter)), PGArray(fills.map(\.1.price)), PGArray(fills.map(\.1.confidence)),
                    PGArray(fills.map { $0.1.peers.map(\.rawValue).joined(separator: ",") }),
                ])
        }
        report.alerts += try recordGaps(pool: pool, from: from, to: to, records, on: conn)
        return report
    }

    /// Rewrites the `pricing_gaps` rows that start in [from, to) and alerts once per gap
    /// left unfilled beyond the alert threshold.
    private func recordGaps(
        pool: PoolID, from: Int64, to: Int64, _ records: [(Gap, GapOutcome)], on conn: PGConnection
    ) throws
        -> [QualityAlert]
    {
        _ = try conn.execute(
            "DELETE FROM pricing_gaps WHERE pool_id = $1 AND gap_start >= $2 AND gap_start < $3 AND status <> 'open'",
            [pool.rawValue, Date(timeIntervalSince1970: TimeInterval(from)), Date(timeIntervalSince1970: TimeInterval(to))])
        let flagged = records.filter { $0.0.seconds > policy.flagGapsOver }
        guard !flagged.isEmpty else { return [] }
        func method(_ o: GapOutcome) -> String? {
            if case .filled(let f) = o { return f.first?.method.rawValue }
            return nil
        }
        func reason(_ o: GapOutcome) -> String? {
            if case .unfilled(let r) = o { return r.rawValue }
            return nil
        }
        _ = try conn.execute(
            """
            INSERT INTO pricing_gaps (pool_id, gap_start, gap_end, duration_seconds, missing_buckets, status,
                interpolation_method, unfilled_reason)
            SELECT $1, gs, ge, (extract(epoch FROM ge - gs))::int, (extract(epoch FROM ge - gs))::int / 300 - 1,
                   CASE WHEN m IS NULL THEN 'unfilled' ELSE 'filled' END, m, r
              FROM unnest($2::timestamptz[], $3::timestamptz[], $4::text[], $5::text[]) AS u(gs, ge, m, r)
            ON CONFLICT (pool_id, gap_start) DO UPDATE SET gap_end = EXCLUDED.gap_end,
                duration_seconds = EXCLUDED.duration_seconds, missing_buckets = EXCLUDED.missing_buckets,
                status = EXCLUDED.status, interpolation_method = EXCLUDED.interpolation_method,
                unfilled_reason = EXCLUDED.unfilled_reason, updated_at = now()
            """,
            [
                pool.rawValue, PGArray(flagged.map { Date(timeIntervalSince1970: TimeInterval($0.0.start)) }),
                PGArray(flagged.map { Date(timeIntervalSince1970: TimeInterval($0.0.end)) }),
                PGArray(flagged.map { method($0.1) as (any PGEncodable)? }), PGArray(flagged.map { reason($0.1) as (any PGEncodable)? }),
            ])
        var alerts: [QualityAlert] = []
        for (gap, outcome) in flagged where gap.seconds > policy.alertUnfilledOver {
            guard let why = reason(outcome) else { continue }
            let start = Date(timeIntervalSince1970: TimeInterval(gap.start))
            let end = Date(timeIntervalSince1970: TimeInterval(gap.end))
            let message = "\(pool) has a \(gap.seconds / 60)-minute gap from \(Timestamp.format(start)) that could not be filled (\(why))"
            let fresh = try SystemEvents.record(
                .init(
                    "quality.gap_unfilled", severity: "warning", component: "spotguard-sef", message: message,
                    details: .object([
                        "pool_id": .string(pool.rawValue), "gap_start": .string(Timestamp.format(start)), "gap_end": .string(Timestamp.format(end)),
                        "reason": .string(why),
                    ]),
                    dedupKey: "gap_unfilled:\(pool):\(gap.start):\(gap.end)"),
                on: conn)
            if fresh {
                alerts.append(
                    QualityAlert(
                        kind: .gapUnfilled, severity: "warning", poolId: pool, message: message,
                        details: [
                            "gap_start": Timestamp.format(start), "gap_end": Timestamp.format(end), "reason": why,
                            "duration_seconds": String(gap.seconds),
                        ], detectedAt: Date()))
            }
        }
        return alerts
    }

    func measuredPoints(_ pool: String, from: Int64, to: Int64, on conn: PGConnection) throws -> [MeasuredPoint] {
        try conn.query(
            """
            SELECT extract(epoch FROM time_bucket)::bigint, spot_price, on_demand_price FROM pricing_snapshots_clean
             WHERE pool_id = $1 AND data_source = 'measured' AND time_bucket BETWEEN $2 AND $3 ORDER BY time_bucket
            """, [pool, Date(timeIntervalSince1970: TimeInterval(from)), Date(timeIntervalSince1970: TimeInterval(to))]
        ).map {
            MeasuredPoint(
                bucket: try $0.decode(Int64.self, at: 0), price: try $0.decode(Double.self, at: 1), onDemandPrice: try $0.decodeIfPresent(Double.self, at: 2))
        }
    }

    /// Measured prices of the other pools of the same instance type and region.
    func peerPrices(of pool: PoolID, from: Int64, to: Int64, on conn: PGConnection) throws -> [PoolID: [Int64: Double]] {
        var out: [PoolID: [Int64: Double]] = [:]
        for row in try conn.query(
            """
            SELECT c.pool_id, extract(epoch FROM c.time_bucket)::bigint, c.spot_price
              FROM spot_pools p JOIN pricing_snapshots_clean c ON c.pool_id = p.id
             WHERE p.instance_type = $1 AND p.region = $2 AND p.id <> $3 AND c.data_source = 'measured'
               AND c.time_bucket BETWEEN $4 AND $5
            """,
            [
                pool.instanceType.rawValue, pool.region.rawValue, pool.rawValue, Date(timeIntervalSince1970: TimeInterval(from)),
                Date(timeIntervalSince1970: TimeInterval(to)),
            ])
        {
            guard let id = PoolID(rawValue: try row.decode(String.self, at: 0)) else { continue }
            out[id, default: [:]][try row.decode(Int64.self, at: 1)] = try row.decode(Double.self, at: 2)
        }
        return out
    }

    /// The periodic scan of one pool: recompute every gap in the window and record a
    /// trailing gap as open.
    func scan(pool: PoolID, now: Date, on conn: PGConnection) throws -> ApplyReport {
        try lockPools([pool.rawValue], on: conn)
        let end = SEFPolicy.bucket(of: now)
        var report = ApplyReport()
        // a pool several clients report: every bucket of the window is resolved again, now that
        // the prices around it (which decide whether one client's price is taken) are all in
        let since = Date(timeIntervalSince1970: TimeInterval(end - scanWindow))
        if try conn.query(
            "SELECT count(*) FROM pricing_pool_clients WHERE pool_id = $1 AND last_bucket >= $2", [pool.rawValue, since]
        )[0].decode(Int.self, at: 0) > 1 {
            let buckets = try conn.query(
                "SELECT DISTINCT extract(epoch FROM time_bucket)::bigint FROM pricing_client_sources WHERE pool_id = $1 AND time_bucket >= $2",
                [pool.rawValue, since]
            ).map { BucketKey(pool: pool.rawValue, bucket: try $0.decode(Int64.self, at: 0)) }
            report.merge(try recomputeBuckets(Dictionary(uniqueKeysWithValues: buckets.map { ($0, 0) }), on: conn))
        }
        let buckets = try conn.query(
            """
            SELECT extract(epoch FROM min(time_bucket))::bigint, extract(epoch FROM max(time_bucket))::bigint
              FROM pricing_snapshots_clean WHERE pool_id = $1 AND data_source = 'measured' AND time_bucket >= $2
            """, [pool.rawValue, Date(timeIntervalSince1970: TimeInterval(end - scanWindow))])
        guard let first = try buckets.first?.decodeIfPresent(Int64.self, at: 0), let last = try buckets.first?.decodeIfPresent(Int64.self, at: 1)
        else { return report }
        report.merge(try recomputeGaps(pool: pool, from: first, to: last, on: conn))
        let trailing = end - last
        _ = try conn.execute(
            "DELETE FROM pricing_gaps WHERE pool_id = $1 AND status = 'open' AND gap_start <> $2",
            [pool.rawValue, Date(timeIntervalSince1970: TimeInterval(last))])
        if trailing > policy.flagGapsOver {
            _ = try conn.execute(
                """
                INSERT INTO pricing_gaps (pool_id, gap_start, gap_end, duration_seconds, missing_buckets, status)
                VALUES ($1, $2, NULL, $3, $4, 'open')
                ON CONFLICT (pool_id, gap_start) DO UPDATE SET duration_seconds = EXCLUDED.duration_seconds,
                    missing_buckets = EXCLUDED.missing_buckets, updated_at = now()
                 WHERE pricing_gaps.status = 'open'
                """,
                [pool.rawValue, Date(timeIntervalSince1970: TimeInterval(last)), Int(trailing), Int(trailing / SEFPolicy.bucketSeconds)])
        }
        return report
    }
}
