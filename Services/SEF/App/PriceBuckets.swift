import Foundation
import Metrics
import SEFCore
import SpotFleet
import SpotModels
import SpotStore

extension PriceRepository {
    fileprivate struct ExistingClean {
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
        var duplicateFlags: [(UUID, Int64, Bool)] = []
        var newlyMeasured: [BucketKey] = []
        // measured before and still, at another price: the fills leaning on it change too
        var repriced: [BucketKey] = []
        var clientRows: [(BucketKey, ClientValue, Bool)] = []
        var noLongerMeasured: [BucketKey] = []
        for key in keys {
            let values = clientValues[key] ?? []
            guard !values.isEmpty else { continue }
            // every client's own price is kept, taken into the shared one or not
            let used = values.reduce(into: Set<UUID>()) { $0.formUnion($1.resolved.used) }
            let before = previouslyUsed[key] ?? []
            for id in used.subtracting(before) { duplicateFlags.append((id, key.bucket, false)) }
            for id in before.subtracting(used) { duplicateFlags.append((id, key.bucket, true)) }
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
            if old == nil || old!.dataSource != .measured {
                newlyMeasured.append(key)
            } else if !same(old!.price, resolved.spotPrice) || !same(old!.onDemand, resolved.onDemandPrice) {
                repriced.append(key)
            }
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
        report.duplicatesMarked = added.values.reduce(0, +) + duplicateFlags.reduce(0) { $0 + ($1.2 ? 1 : -1) }
        if !duplicateFlags.isEmpty {
            _ = try conn.execute(
                """
                UPDATE pricing_submissions_raw r SET is_duplicate = u.d
                  FROM unnest($1::uuid[], $2::bigint[], $3::bool[]) AS u(id, bucket, d)
                 WHERE r.submission_id = u.id AND r.time_bucket = to_timestamp(u.bucket)
                """, [PGArray(duplicateFlags.map(\.0)), PGArray(duplicateFlags.map(\.1)), PGArray(duplicateFlags.map(\.2))])
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
        if !newlyMeasured.isEmpty || !repriced.isEmpty {
            report.merge(try measuredArrived(newlyMeasured, repriced: repriced, on: conn))
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
                contexts[key, default: SharedContext()].incumbent =
                    (first[key.pool] ?? []).filter { clients.contains($0.0) }
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
}
