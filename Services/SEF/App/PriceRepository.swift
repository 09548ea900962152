import Foundation
import Metrics
import SEFCore
import SpotFleet
import SpotModels
import SpotRuntime
import SpotStore

/// One row for `pricing_submissions_raw` (which the view `spot_price_snapshots` shows too).
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

    /// Everything but the point itself (id, pool, price) is `other`'s: two points of one report.
    func sharesReport(with other: SubmissionRow) -> Bool {
        reportId == other.reportId && clientId == other.clientId && agentId == other.agentId && instanceId == other.instanceId
            && sourceType == other.sourceType && onDemandPrice == other.onDemandPrice && observedAt == other.observedAt
            && submittedAt == other.submittedAt && receivedAt == other.receivedAt
    }

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
/// the pool's peer group (taken in ascending key order): the last worker to take it sees every submission
/// committed before plus its own, so whichever worker commits last computes from the full set.
struct PriceRepository: Sendable {
    let policy: SEFPolicy
    /// How far back the periodic scan recomputes fills.
    let scanWindow: Int64
    /// The raw trail's day partitions.
    let partitions: RawPartitions

    init(configuration: SEFConfiguration) {
        policy = configuration.policy
        scanWindow = configuration.scanWindowSeconds
        partitions = RawPartitions(retentionDays: configuration.retention["pricing_submissions_raw"])
    }

    static let lockSpace: Int32 = 0x5345_4601  // "SEF" + 1

    /// Locks the pools' peer groups (one instance type in one region): a pool's cross-pool
    /// fills follow its peers, so their recomputations must not interleave either.
    func lockPools(_ pools: some Collection<String>, on conn: PGConnection) throws {
        guard !pools.isEmpty else { return }
        let groups = Set(pools.map { p in PoolID(rawValue: p).map { "\($0.instanceType.rawValue).\($0.region.rawValue)" } ?? p })
        _ = try conn.query(
            """
            SELECT pg_advisory_xact_lock($2, h)
              FROM (SELECT DISTINCT hashtext(p) AS h FROM unnest($1::text[]) AS p ORDER BY h) s
            """, [PGArray(Array(groups)), Int(Self.lockSpace)])
    }

    // MARK: pricing

    /// Stores new submissions and recomputes every bucket they touched.
    func applySubmissions(_ rows: [SubmissionRow], on conn: PGConnection) throws -> ApplyReport {
        var report = ApplyReport()
        guard !rows.isEmpty else { return report }
        let started = ContinuousClock.now
        // What a report's points share travels once per report, and each point refers to it by
        // number: PostgreSQL parses 4 values per point instead of 13 (a 50-pool report: 250
        // instead of 650), and the SEF writes as many fewer.
        var shared: [SubmissionRow] = []
        var sharedIndex: [Int] = []
        sharedIndex.reserveCapacity(rows.count)
        for row in rows {
            if shared.last.map({ !$0.sharesReport(with: row) }) ?? true { shared.append(row) }
            sharedIndex.append(shared.count)
        }
        let inserted = try conn.query(
            """
            WITH shared AS (
                SELECT * FROM unnest($5::uuid[], $6::uuid[], $7::text[], $8::text[], $9::numeric[], $10::timestamptz[],
                                     $11::timestamptz[], $12::timestamptz[], $13::timestamptz[], $14::uuid[])
                    WITH ORDINALITY AS s(client, agent, inst, src, od, observed, submitted, received, bucket, report, n)),
            input AS (
                SELECT p.sid, s.client, s.agent, s.inst, s.src, p.pool, p.price, s.od, s.observed, s.submitted, s.received,
                       s.bucket, s.report
                  FROM unnest($1::uuid[], $2::text[], $3::numeric[], $4::int[]) AS p(sid, pool, price, n) JOIN shared s USING (n)),
            raw AS (
                INSERT INTO pricing_submissions_raw (submission_id, client_id, source_agent_id, source_instance_id, source_type,
                    pool_id, spot_price, on_demand_price, observed_at, submitted_at, received_at, time_bucket, is_duplicate, report_id)
                SELECT sid, client, agent, inst, src, pool, price, od, observed, submitted, received, bucket, true, report FROM input
                ON CONFLICT (submission_id, time_bucket) DO NOTHING
                RETURNING submission_id, pool_id, time_bucket),
            -- each client's best submission per source type and bucket: the latest observation,
            -- ties to the lowest id, whatever order they arrive in (uuid order is the order of
            -- the ids' hex text BucketResolver compares, without a text conversion or collation)
            best AS (
                INSERT INTO pricing_client_sources AS s (pool_id, time_bucket, client_id, source_type, submission_id, spot_price,
                    on_demand_price, observed_at)
                SELECT DISTINCT ON (pool, bucket, client, src) pool, bucket, client, src, sid, price, od, observed
                  FROM input WHERE src <> 'interpolated' AND sid IN (SELECT submission_id FROM raw)
                 ORDER BY pool, bucket, client, src, observed DESC, sid
                ON CONFLICT (pool_id, time_bucket, client_id, source_type) DO UPDATE SET
                    submission_id = EXCLUDED.submission_id, spot_price = EXCLUDED.spot_price,
                    on_demand_price = EXCLUDED.on_demand_price, observed_at = EXCLUDED.observed_at
                 WHERE EXCLUDED.observed_at > s.observed_at
                    OR (EXCLUDED.observed_at = s.observed_at AND EXCLUDED.submission_id < s.submission_id)),
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
                PGArray(rows.map(\.submissionId)), PGArray(rows.map(\.pool.rawValue)), PGArray(rows.map(\.spotPrice)), PGArray(sharedIndex),
                PGArray(shared.map(\.clientId)), PGArray(shared.map(\.agentId)), PGArray(shared.map { $0.instanceId as (any PGEncodable)? }),
                PGArray(shared.map(\.sourceType.rawValue)), PGArray(shared.map { $0.onDemandPrice as (any PGEncodable)? }),
                PGArray(shared.map(\.observedAt)), PGArray(shared.map(\.submittedAt)), PGArray(shared.map(\.receivedAt)),
                PGArray(shared.map { Date(timeIntervalSince1970: TimeInterval($0.bucket)) }), PGArray(shared.map(\.reportId)),
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
}
