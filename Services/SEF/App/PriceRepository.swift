import Foundation
import Metrics
import SEFCore
import SpotFleet
import SpotModels
import SpotStore

/// One row for `pricing_submissions_raw` (and `spot_price_snapshots`).
struct SubmissionRow: Sendable {
    var submissionId: UUID
    var clientId: UUID
    var agentId: UUID
    var instanceId: String?
    var sourceType: PriceSourceType
    var pool: PoolID
    var spotPrice: Double
    var onDemandPrice: Double?
    var observedAt: Date
    var submittedAt: Date
    var receivedAt: Date
    /// The report (or the submission itself) the snapshot row is keyed on.
    var reportId: UUID

    var bucket: Int64 { SEFPolicy.bucket(of: observedAt) }

    static func rows(of message: PricingReported) -> [SubmissionRow] {
        switch message {
        case .report(let r):
            return r.pools.map { p in
                SubmissionRow(
                    submissionId: r.submissionId(for: p.poolId), clientId: r.clientId, agentId: r.agentId,
                    instanceId: r.instanceId?.rawValue, sourceType: .primary, pool: p.poolId, spotPrice: p.price,
                    onDemandPrice: r.onDemandPrice, observedAt: r.observedAt, submittedAt: r.receivedAt,
                    receivedAt: r.receivedAt, reportId: r.reportId)
            }
        case .submission(let s):
            return [
                SubmissionRow(
                    submissionId: s.submissionId, clientId: s.clientId, agentId: s.sourceAgentId,
                    instanceId: s.sourceInstanceId?.rawValue, sourceType: s.sourceType, pool: s.poolId, spotPrice: s.spotPrice,
                    onDemandPrice: s.onDemandPrice, observedAt: s.observedAt, submittedAt: s.submittedAt,
                    receivedAt: s.receivedAt, reportId: s.submissionId)
            ]
        }
    }
}

struct BucketKey: Hashable, Sendable, Comparable {
    var pool: String
    var bucket: Int64

    static func < (a: BucketKey, b: BucketKey) -> Bool { (a.pool, a.bucket) < (b.pool, b.bucket) }
    var date: Date { Date(timeIntervalSince1970: TimeInterval(bucket)) }
}

/// What one transaction of the SEF changed (for metrics and `pricing.cleaned`).
struct ApplyReport: Sendable {
    var newSubmissions = 0
    var redelivered = 0
    var duplicatesMarked = 0
    var cleaned: [CleanPrice] = []
    var fills: [InterpolationMethod: Int] = [:]
    var alerts: [QualityAlert] = []
    var heartbeatsApplied = 0

    mutating func merge(_ other: ApplyReport) {
        newSubmissions += other.newSubmissions
        redelivered += other.redelivered
        duplicatesMarked += other.duplicatesMarked
        cleaned += other.cleaned
        fills.merge(other.fills, uniquingKeysWith: +)
        alerts += other.alerts
        heartbeatsApplied += other.heartbeatsApplied
    }
}

/// The SEF's SQL. Every function runs inside the caller's transaction on one connection.
///
/// New submissions are inserted first, without a lock, so workers write in parallel. Then the
/// recomputation of a pool's buckets and gaps runs under a transaction-scoped advisory lock on
/// the pool (taken in ascending key order): the last worker to take it sees every submission
/// committed before plus its own, so whichever worker commits last computes from the full set.
struct PriceRepository: Sendable {
    let policy: SEFPolicy
    /// How far back the periodic scan recomputes fills.
    let scanWindow: Int64

    static let lockSpace: Int32 = 0x5345_4601  // "SEF" + 1

    func lockPools(_ pools: some Collection<String>, on conn: PGConnection) throws {
        guard !pools.isEmpty else { return }
        _ = try conn.query(
            """
            SELECT pg_advisory_xact_lock($2, h)
              FROM (SELECT DISTINCT hashtext(p) AS h FROM unnest($1::text[]) AS p ORDER BY h) s
            """, [PGArray(Array(pools)), Int(Self.lockSpace)])
    }

    // MARK: pricing

    /// Stores new submissions and recomputes every bucket they touched.
    func applySubmissions(_ rows: [SubmissionRow], on conn: PGConnection) throws -> ApplyReport {
        var report = ApplyReport()
        guard !rows.isEmpty else { return report }
        let started = ContinuousClock.now
        let inserted = try conn.query(
            """
            WITH input AS (
                SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::numeric[],
                                     $8::numeric[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[],
                                     $12::timestamptz[], $13::uuid[])
                    AS u(sid, client, agent, inst, src, pool, price, od, observed, submitted, received, bucket, report)),
            raw AS (
                INSERT INTO pricing_submissions_raw (submission_id, client_id, source_agent_id, source_instance_id, source_type,
                    pool_id, spot_price, on_demand_price, observed_at, submitted_at, received_at, time_bucket, is_duplicate)
                SELECT sid, client, agent, inst, src, pool, price, od, observed, submitted, received, bucket, true FROM input
                ON CONFLICT (submission_id) DO NOTHING
                RETURNING submission_id, pool_id, time_bucket),
            snap AS (
                INSERT INTO spot_price_snapshots (pool_id, price, on_demand_price, captured_at, report_id, agent_id)
                SELECT pool, price, od, observed, report, agent FROM input WHERE sid IN (SELECT submission_id FROM raw)
                ON CONFLICT (report_id, pool_id) DO NOTHING),
            -- each client's best submission per source type and bucket: the latest observation,
            -- ties to the lowest id (BucketResolver's order), whatever order they arrive in
            best AS (
                INSERT INTO pricing_client_sources AS s (pool_id, time_bucket, client_id, source_type, submission_id, spot_price,
                    on_demand_price, observed_at)
                SELECT DISTINCT ON (pool, bucket, client, src) pool, bucket, client, src, sid, price, od, observed
                  FROM input WHERE src <> 'interpolated' AND sid IN (SELECT submission_id FROM raw)
                 ORDER BY pool, bucket, client, src, observed DESC, upper(sid::text)
                ON CONFLICT (pool_id, time_bucket, client_id, source_type) DO UPDATE SET
                    submission_id = EXCLUDED.submission_id, spot_price = EXCLUDED.spot_price,
                    on_demand_price = EXCLUDED.on_demand_price, observed_at = EXCLUDED.observed_at
                 WHERE EXCLUDED.observed_at > s.observed_at
                    OR (EXCLUDED.observed_at = s.observed_at AND upper(EXCLUDED.submission_id::text) < upper(s.submission_id::text))),
            reporters AS (
                INSERT INTO pricing_pool_clients AS p (pool_id, client_id, first_bucket, last_bucket, first_received_at)
                SELECT pool, client, min(bucket), max(bucket), min(received) FROM input
                 WHERE src <> 'interpolated' AND sid IN (SELECT submission_id FROM raw) GROUP BY 1, 2
                ON CONFLICT (pool_id, client_id) DO UPDATE SET
                    first_bucket = least(p.first_bucket, EXCLUDED.first_bucket), last_bucket = greatest(p.last_bucket, EXCLUDED.last_bucket),
                    first_received_at = least(p.first_received_at, EXCLUDED.first_received_at)
                 WHERE EXCLUDED.first_bucket < p.first_bucket OR EXCLUDED.last_bucket > p.last_bucket
                    OR EXCLUDED.first_received_at < p.first_received_at)
            SELECT pool_id, extract(epoch FROM time_bucket)::bigint, count(*) FROM raw GROUP BY 1, 2
            """,
            [
                PGArray(rows.map(\.submissionId)), PGArray(rows.map(\.clientId)), PGArray(rows.map(\.agentId)),
                PGArray(rows.map { $0.instanceId as (any PGEncodable)? }), PGArray(rows.map(\.sourceType.rawValue)),
                PGArray(rows.map(\.pool.rawValue)), PGArray(rows.map(\.spotPrice)),
                PGArray(rows.map { $0.onDemandPrice as (any PGEncodable)? }), PGArray(rows.map(\.observedAt)),
                PGArray(rows.map(\.submittedAt)), PGArray(rows.map(\.receivedAt)),
                PGArray(rows.map { Date(timeIntervalSince1970: TimeInterval($0.bucket)) }), PGArray(rows.map(\.reportId)),
            ])
        var added: [BucketKey: Int] = [:]
        for row in inserted {
            let n = try row.decode(Int.self, at: 2)
            added[BucketKey(pool: try row.decode(String.self, at: 0), bucket: try row.decode(Int64.self, at: 1))] = n
            report.newSubmissions += n
        }
        report.redelivered = Set(rows.map(\.submissionId)).count - report.newSubmissions
        let insertedAt = ContinuousClock.now
        Timer(label: "spotguard_sef_phase_seconds", dimensions: [("phase", "insert")]).record(duration: insertedAt - started)
        guard !added.isEmpty else { return report }
        try lockPools(Set(added.keys.map(\.pool)), on: conn)
        let lockedAt = ContinuousClock.now
        Timer(label: "spotguard_sef_phase_seconds", dimensions: [("phase", "lock_wait")]).record(duration: lockedAt - insertedAt)
        report.merge(try recomputeBuckets(added, on: conn))
        Timer(label: "spotguard_sef_phase_seconds", dimensions: [("phase", "recompute")]).record(duration: ContinuousClock.now - lockedAt)
        return report
    }

    private struct ExistingClean {
        var price: Double
        var onDemand: Double?
        var confidence: Double
        var dataSource: DataSource
        var sourceType: String
        var flag: String?
        var count: Int
    }

    /// Recomputes the clean rows of buckets that received `added` new submissions (inserted as
    /// duplicates): each client's price from its best submission per source type
    /// (`pricing_client_sources`, a handful of rows however hot the bucket), then the shared
    /// price across clients (`SharedResolver`), with the other clients' prices around the bucket
    /// read only for pools more than one client reports.
    func recomputeBuckets(_ added: [BucketKey: Int], on conn: PGConnection) throws -> ApplyReport {
        var report = ApplyReport()
        let keys = added.keys.sorted()
        let keyParams: [(any PGEncodable)?] = [PGArray(keys.map(\.pool)), PGArray(keys.map(\.date))]
        var best: [BucketKey: [UUID: [RawSubmission]]] = [:]
        for row in try conn.query(
            """
            SELECT k.pool, extract(epoch FROM k.bucket)::bigint, s.client_id, s.submission_id, s.source_type, s.spot_price,
                   s.on_demand_price, s.observed_at
              FROM unnest($1::text[], $2::timestamptz[]) AS k(pool, bucket)
              JOIN pricing_client_sources s ON s.pool_id = k.pool AND s.time_bucket = k.bucket
            """, keyParams)
        {
            let key = BucketKey(pool: try row.decode(String.self, at: 0), bucket: try row.decode(Int64.self, at: 1))
            guard let source = PriceSourceType(rawValue: try row.decode(String.self, at: 4)) else { continue }
            best[key, default: [:]][try row.decode(UUID.self, at: 2), default: []].append(
                RawSubmission(
                    submissionId: try row.decode(UUID.self, at: 3), sourceType: source, spotPrice: try row.decode(Double.self, at: 5),
                    onDemandPrice: try row.decodeIfPresent(Double.self, at: 6), observedAt: try row.decode(Date.self, at: 7)))
        }
        var clientValues: [BucketKey: [ClientValue]] = [:]
        for (key, byClient) in best {
            clientValues[key] = byClient.sorted { $0.key.uuidString < $1.key.uuidString }.compactMap { client, submissions in
                BucketResolver.resolve(submissions, policy: policy).map { ClientValue(clientId: client, resolved: $0) }
            }
        }
        let contexts = try sharedContexts(clientValues, on: conn)
        // the rows each bucket used until now (new rows came in as duplicates)
        var previouslyUsed: [BucketKey: Set<UUID>] = [:]
        for row in try conn.query(
            """
            SELECT r.pool_id, extract(epoch FROM r.time_bucket)::bigint, r.submission_id
              FROM unnest($1::text[], $2::timestamptz[]) AS k(pool, bucket)
              JOIN pricing_submissions_raw r ON r.pool_id = k.pool AND r.time_bucket = k.bucket AND NOT r.is_duplicate
            """, keyParams)
        {
            previouslyUsed[BucketKey(pool: try row.decode(String.self, at: 0), bucket: try row.decode(Int64.self, at: 1)), default: []]
                .insert(try row.decode(UUID.self, at: 2))
        }
        var existing: [BucketKey: ExistingClean] = [:]
        for row in try conn.query(
            """
            SELECT c.pool_id, extract(epoch FROM c.time_bucket)::bigint, c.spot_price, c.on_demand_price, c.confidence_score,
                   c.data_source, c.source_type, c.quality_flag, c.submission_count
              FROM unnest($1::text[], $2::timestamptz[]) AS k(pool, bucket)
              JOIN pricing_snapshots_clean c ON c.pool_id = k.pool AND c.time_bucket = k.bucket
            """, keyParams)
        {
            existing[BucketKey(pool: try row.decode(String.self, at: 0), bucket: try row.decode(Int64.self, at: 1))] = ExistingClean(
                price: try row.decode(Double.self, at: 2), onDemand: try row.decodeIfPresent(Double.self, at: 3),
                confidence: try row.decode(Double.self, at: 4),
                dataSource: DataSource(rawValue: try row.decode(String.self, at: 5)) ?? .measured,
                sourceType: try row.decode(String.self, at: 6), flag: try row.decodeIfPresent(String.self, at: 7),
                count: try row.decode(Int.self, at: 8))
        }

        var upserts: [(BucketKey, ResolvedBucket, Int, String?)] = []
        var duplicateFlags: [(UUID, Bool)] = []
        var newlyMeasured: [BucketKey] = []
        var clientRows: [(BucketKey, ClientValue, Bool)] = []
        var noLongerMeasured: [BucketKey] = []
        for key in keys {
            let values = clientValues[key] ?? []
            guard !values.isEmpty else { continue }
            // every client's own price is kept, taken into the shared one or not
            let used = values.reduce(into: Set<UUID>()) { $0.formUnion($1.resolved.used) }
            let before = previouslyUsed[key] ?? []
            for id in used.subtracting(before) { duplicateFlags.append((id, false)) }
            for id in before.subtracting(used) { duplicateFlags.append((id, true)) }
            let outcome = SharedResolver.resolve(values, context: contexts[key] ?? SharedContext(), policy: policy)
            for v in values { clientRows.append((key, v, outcome.accepted.contains(v.clientId))) }
            let old = existing[key]
            guard let resolved = outcome.shared else {
                if old?.dataSource == .measured { noLongerMeasured.append(key) }
                continue
            }
            let flag = outcome.disputed ? "disputed" : resolved.averagedDualSource ? "averaged_dual_source" : nil
            let count = (old?.count ?? 0) + (added[key] ?? 0)
            let valueChanged =
                old == nil || old!.dataSource != .measured || !same(old!.price, resolved.spotPrice)
                || !same(old!.onDemand, resolved.onDemandPrice) || !same(old!.confidence, resolved.confidence)
                || old!.sourceType != resolved.sourceType.rawValue || old!.flag != flag
            upserts.append((key, resolved, count, flag))
            if valueChanged {
                report.cleaned.append(
                    CleanPrice(
                        poolId: PoolID(rawValue: key.pool)!, timeBucket: key.date, spotPrice: resolved.spotPrice,
                        onDemandPrice: resolved.onDemandPrice, confidence: resolved.confidence, dataSource: .measured,
                        sourceType: resolved.sourceType, interpolationMethod: nil, averagedDualSource: resolved.averagedDualSource))
            }
            if old == nil || old!.dataSource != .measured { newlyMeasured.append(key) }
        }
        if !upserts.isEmpty {
            _ = try conn.execute(
                """
                INSERT INTO pricing_snapshots_clean (pool_id, time_bucket, spot_price, on_demand_price, confidence_score,
                    data_source, source_type, interpolation_method, quality_flag, submission_count)
                SELECT pool, bucket, price, od, conf, 'measured', src, NULL, flag, n
                  FROM unnest($1::text[], $2::timestamptz[], $3::numeric[], $4::numeric[], $5::numeric[], $6::text[],
                              $7::text[], $8::int[]) AS u(pool, bucket, price, od, conf, src, flag, n)
                ON CONFLICT (pool_id, time_bucket) DO UPDATE SET
                    spot_price = EXCLUDED.spot_price, on_demand_price = EXCLUDED.on_demand_price,
                    confidence_score = EXCLUDED.confidence_score, data_source = 'measured',
                    source_type = EXCLUDED.source_type, interpolation_method = NULL, quality_flag = EXCLUDED.quality_flag,
                    submission_count = EXCLUDED.submission_count
                """,
                [
                    PGArray(upserts.map(\.0.pool)), PGArray(upserts.map(\.0.date)), PGArray(upserts.map(\.1.spotPrice)),
                    PGArray(upserts.map { $0.1.onDemandPrice as (any PGEncodable)? }), PGArray(upserts.map(\.1.confidence)),
                    PGArray(upserts.map(\.1.sourceType.rawValue)), PGArray(upserts.map { $0.3 as (any PGEncodable)? }),
                    PGArray(upserts.map(\.2)),
                ])
        }
        // net change of duplicate rows: new rows came in as duplicates
        report.duplicatesMarked = added.values.reduce(0, +) + duplicateFlags.reduce(0) { $0 + ($1.1 ? 1 : -1) }
        if !duplicateFlags.isEmpty {
            _ = try conn.execute(
                """
                UPDATE pricing_submissions_raw r SET is_duplicate = u.d
                  FROM unnest($1::uuid[], $2::bool[]) AS u(id, d) WHERE r.submission_id = u.id
                """, [PGArray(duplicateFlags.map(\.0)), PGArray(duplicateFlags.map(\.1))])
        }
        if !clientRows.isEmpty {
            _ = try conn.execute(
                """
                INSERT INTO pricing_client_buckets AS b (pool_id, time_bucket, client_id, spot_price, on_demand_price, confidence_score,
                    source_type, averaged_dual_source, accepted)
                SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::uuid[], $4::numeric[], $5::numeric[], $6::numeric[], $7::text[],
                                     $8::bool[], $9::bool[])
                ON CONFLICT (pool_id, time_bucket, client_id) DO UPDATE SET
                    spot_price = EXCLUDED.spot_price, on_demand_price = EXCLUDED.on_demand_price,
                    confidence_score = EXCLUDED.confidence_score, source_type = EXCLUDED.source_type,
                    averaged_dual_source = EXCLUDED.averaged_dual_source, accepted = EXCLUDED.accepted, updated_at = now()
                 WHERE (b.spot_price, b.on_demand_price, b.confidence_score, b.source_type, b.averaged_dual_source, b.accepted)
                       IS DISTINCT FROM (EXCLUDED.spot_price, EXCLUDED.on_demand_price, EXCLUDED.confidence_score, EXCLUDED.source_type,
                                         EXCLUDED.averaged_dual_source, EXCLUDED.accepted)
                """,
                [
                    PGArray(clientRows.map(\.0.pool)), PGArray(clientRows.map(\.0.date)), PGArray(clientRows.map(\.1.clientId)),
                    PGArray(clientRows.map(\.1.resolved.spotPrice)), PGArray(clientRows.map { $0.1.resolved.onDemandPrice as (any PGEncodable)? }),
                    PGArray(clientRows.map(\.1.resolved.confidence)), PGArray(clientRows.map(\.1.resolved.sourceType.rawValue)),
                    PGArray(clientRows.map(\.1.resolved.averagedDualSource)), PGArray(clientRows.map(\.2)),
                ])
        }
        if !newlyMeasured.isEmpty {
            report.merge(try measuredArrived(newlyMeasured, on: conn))
        }
        if !noLongerMeasured.isEmpty {
            report.merge(try measuredLeft(noLongerMeasured, on: conn))
        }
        return report
    }

    /// Per bucket: the other clients' prices of the pool around it (for a bucket one client
    /// measured, in a pool others report too) and the pool's last shared price before it (for
    /// a bucket whose clients disagree).
    func sharedContexts(_ values: [BucketKey: [ClientValue]], on conn: PGConnection) throws -> [BucketKey: SharedContext] {
        var contexts: [BucketKey: SharedContext] = [:]
        let window = policy.neighbourWindow
        let single = values.filter { $0.value.count == 1 }.map(\.key)
        if !single.isEmpty {
            let byPool = Dictionary(grouping: single, by: \.pool)
            let pools = byPool.keys.sorted()
            let lows = pools.map { Date(timeIntervalSince1970: TimeInterval(byPool[$0]!.map(\.bucket).min()! - window)) }
            let highs = pools.map { Date(timeIntervalSince1970: TimeInterval(byPool[$0]!.map(\.bucket).max()! + window)) }
            // the clients of each pool in the window: most pools have one, and then there is nothing to read
            var reporters: [String: Set<UUID>] = [:]
            for row in try conn.query(
                """
                SELECT p.pool_id, p.client_id FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS k(pool, lo, hi)
                  JOIN pricing_pool_clients p ON p.pool_id = k.pool AND p.last_bucket >= k.lo AND p.first_bucket <= k.hi
                """, [PGArray(pools), PGArray(lows), PGArray(highs)])
            {
                reporters[try row.decode(String.self, at: 0), default: []].insert(try row.decode(UUID.self, at: 1))
            }
            let shared = pools.indices.filter { (reporters[pools[$0]]?.count ?? 0) > 1 }
            var around: [String: [(UUID, Int64, Double)]] = [:]
            if !shared.isEmpty {
                for row in try conn.query(
                    """
                    SELECT b.pool_id, b.client_id, extract(epoch FROM b.time_bucket)::bigint, b.spot_price
                      FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS k(pool, lo, hi)
                      JOIN pricing_client_buckets b ON b.pool_id = k.pool AND b.time_bucket BETWEEN k.lo AND k.hi
                    """, [PGArray(shared.map { pools[$0] }), PGArray(shared.map { lows[$0] }), PGArray(shared.map { highs[$0] })])
                {
                    around[try row.decode(String.self, at: 0), default: []].append(
                        (try row.decode(UUID.self, at: 1), try row.decode(Int64.self, at: 2), try row.decode(Double.self, at: 3)))
                }
            }
            for key in single {
                guard let rows = around[key.pool], let client = values[key]?.first?.clientId else { continue }
                var neighbours: [UUID: [Double]] = [:]
                for (other, bucket, price) in rows where other != client && abs(bucket - key.bucket) <= window {
                    neighbours[other, default: []].append(price)
                }
                contexts[key, default: SharedContext()].neighbours = neighbours
            }
        }
        let disagreeing = values.filter { _, v in
            v.count > 1 && !SharedResolver.agree(v.map(\.resolved.spotPrice), policy.clientAgreement)
        }.map(\.key)
        if !disagreeing.isEmpty {
            for row in try conn.query(
                """
                SELECT k.pool, extract(epoch FROM k.bucket)::bigint,
                       (SELECT c.spot_price FROM pricing_snapshots_clean c
                         WHERE c.pool_id = k.pool AND c.data_source = 'measured' AND c.time_bucket < k.bucket
                           AND c.time_bucket >= k.bucket - make_interval(secs => $3) AND c.quality_flag IS DISTINCT FROM 'disputed'
                         ORDER BY c.time_bucket DESC LIMIT 1)
                  FROM unnest($1::text[], $2::timestamptz[]) AS k(pool, bucket)
                """, [PGArray(disagreeing.map(\.pool)), PGArray(disagreeing.map(\.date)), Double(window)])
            {
                let key = BucketKey(pool: try row.decode(String.self, at: 0), bucket: try row.decode(Int64.self, at: 1))
                contexts[key, default: SharedContext()].history = try row.decodeIfPresent(Double.self, at: 2)
            }
            // the client each pool heard from first, among those of the disagreeing buckets
            var first: [String: [(UUID, Date)]] = [:]
            for row in try conn.query(
                "SELECT pool_id, client_id, first_received_at FROM pricing_pool_clients WHERE pool_id = ANY($1::text[])",
                [PGArray(Array(Set(disagreeing.map(\.pool))))])
            {
                first[try row.decode(String.self, at: 0), default: []].append((try row.decode(UUID.self, at: 1), try row.decode(Date.self, at: 2)))
            }
            for key in disagreeing {
                let clients = Set((values[key] ?? []).map(\.clientId))
                contexts[key, default: SharedContext()].incumbent = (first[key.pool] ?? []).filter { clients.contains($0.0) }
                    .min { ($0.1, $0.0.uuidString) < ($1.1, $1.0.uuidString) }?.0
            }
        }
        return contexts
    }

    private func same(_ a: Double?, _ b: Double?) -> Bool {
        switch (a, b) {
        case (nil, nil): true
        case let (x?, y?): abs(x - y) < 5e-7
        default: false
        }
    }

    // MARK: gaps

    /// Buckets that just became measured: their interpolation records go, and the gaps on
    /// either side are recomputed (a late value splits a filled gap in two).
    func measuredArrived(_ keys: [BucketKey], on conn: PGConnection) throws -> ApplyReport {
        var report = ApplyReport()
        _ = try conn.execute(
            """
            DELETE FROM pricing_snapshots_interpolated i USING unnest($1::text[], $2::timestamptz[]) AS k(pool, bucket)
             WHERE i.pool_id = k.pool AND i.time_bucket = k.bucket
            """, [PGArray(keys.map(\.pool)), PGArray(keys.map(\.date))])
        let byPool = Dictionary(grouping: keys, by: \.pool)
        let pools = byPool.keys.sorted()
        let lows = pools.map { byPool[$0]!.map(\.bucket).min()! }
        let highs = pools.map { byPool[$0]!.map(\.bucket).max()! }
        // an open (trailing) gap ends with this data; the scan records it again if still open
        _ = try conn.execute(
            """
            DELETE FROM pricing_gaps g USING unnest($1::text[], $2::timestamptz[]) AS k(pool, hi)
             WHERE g.pool_id = k.pool AND g.status = 'open' AND g.gap_start < k.hi
            """, [PGArray(pools), PGArray(highs.map { Date(timeIntervalSince1970: TimeInterval($0)) })])
        let neighbours = try conn.query(
            """
            SELECT k.pool,
                   (SELECT extract(epoch FROM c.time_bucket)::bigint FROM pricing_snapshots_clean c
                     WHERE c.pool_id = k.pool AND c.data_source = 'measured' AND c.time_bucket < k.lo
                     ORDER BY c.time_bucket DESC LIMIT 1),
                   (SELECT extract(epoch FROM c.time_bucket)::bigint FROM pricing_snapshots_clean c
                     WHERE c.pool_id = k.pool AND c.data_source = 'measured' AND c.time_bucket > k.hi
                     ORDER BY c.time_bucket LIMIT 1),
                   (SELECT count(*) FROM pricing_snapshots_clean c
                     WHERE c.pool_id = k.pool AND c.data_source = 'measured' AND c.time_bucket BETWEEN k.lo AND k.hi)
              FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS k(pool, lo, hi)
            """,
            [
                PGArray(pools), PGArray(lows.map { Date(timeIntervalSince1970: TimeInterval($0)) }),
                PGArray(highs.map { Date(timeIntervalSince1970: TimeInterval($0)) }),
            ])
        for (i, row) in neighbours.enumerated() {
            let (lo, hi) = (lows[i], highs[i])
            let prev = try row.decodeIfPresent(Int64.self, at: 1)
            let next = try row.decodeIfPresent(Int64.self, at: 2)
            let inside = try row.decode(Int64.self, at: 3)
            let step = SEFPolicy.bucketSeconds
            let contiguous = (prev == nil || prev! == lo - step) && (next == nil || next! == hi + step) && inside == (hi - lo) / step + 1
            if contiguous { continue }
            report.merge(try recomputeGaps(pool: PoolID(rawValue: pools[i])!, from: prev ?? lo, to: next ?? hi, on: conn))
        }
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
        for (pool, lost) in Dictionary(grouping: keys, by: \.pool).sorted(by: { $0.key < $1.key }) {
            let (lo, hi) = (lost.map(\.bucket).min()!, lost.map(\.bucket).max()!)
            let around = try conn.query(
                """
                SELECT (SELECT extract(epoch FROM time_bucket)::bigint FROM pricing_snapshots_clean
                         WHERE pool_id = $1 AND data_source = 'measured' AND time_bucket < $2 ORDER BY time_bucket DESC LIMIT 1),
                       (SELECT extract(epoch FROM time_bucket)::bigint FROM pricing_snapshots_clean
                         WHERE pool_id = $1 AND data_source = 'measured' AND time_bucket > $3 ORDER BY time_bucket LIMIT 1)
                """, [pool, Date(timeIntervalSince1970: TimeInterval(lo)), Date(timeIntervalSince1970: TimeInterval(hi))])[0]
            report.merge(try recomputeGaps(
                pool: PoolID(rawValue: pool)!, from: try around.decodeIfPresent(Int64.self, at: 0) ?? lo,
                to: try around.decodeIfPresent(Int64.self, at: 1) ?? hi, on: conn))
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
    private func recordGaps(pool: PoolID, from: Int64, to: Int64, _ records: [(Gap, GapOutcome)], on conn: PGConnection) throws
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
            MeasuredPoint(bucket: try $0.decode(Int64.self, at: 0), price: try $0.decode(Double.self, at: 1), onDemandPrice: try $0.decodeIfPresent(Double.self, at: 2))
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
            "DELETE FROM pricing_gaps WHERE pool_id = $1 AND status = 'open' AND gap_start <> $2", [pool.rawValue, Date(timeIntervalSince1970: TimeInterval(last))])
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
