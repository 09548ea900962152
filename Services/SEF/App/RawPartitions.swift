import Foundation
import SpotRuntime
import SpotStore
import Synchronization

/// The day partitions of `pricing_submissions_raw` (migration 0020): made before a batch needs
/// one (`pricing_raw_partitions`, which two copies may call at once) and dropped whole by the
/// retention job. Days this process has seen made are remembered, but only while they are
/// younger than the retention: an older one may have been dropped by another copy since.
final class RawPartitions: Sendable {
    /// How many days the raw trail keeps (`SPOTGUARD_RETENTION_PRICING_SUBMISSIONS_RAW_DAYS`).
    let retentionDays: Int
    private let made = Mutex<Set<Int64>>([])

    init(retentionDays: Int) {
        self.retentionDays = retentionDays
    }

    static func day(ofBucket bucket: Int64) -> Int64 { bucket >= 0 ? bucket / 86_400 : (bucket - 86_399) / 86_400 }

    /// Makes the partitions of the buckets' days that may be missing, in a transaction of its own
    /// (before the batch's, so a batch never waits on another copy's partition lock while it
    /// holds pool locks).
    func ensure(buckets: some Sequence<Int64>, now: Date, store: PostgresStore) async throws {
        let safe = Self.day(ofBucket: Int64(now.timeIntervalSince1970)) - Int64(retentionDays) + 2
        let days = Set(buckets.map(Self.day(ofBucket:)))
        let missing = made.withLock { made in days.filter { $0 < safe || !made.contains($0) } }
        guard !missing.isEmpty else { return }
        try await store.transaction { conn in try Self.make(days: missing, on: conn) }
        made.withLock { $0.formUnion(missing.filter { $0 >= safe }) }
    }

    static func make(days: some Collection<Int64>, on conn: PGConnection) throws {
        let dates = days.map { Date(timeIntervalSince1970: TimeInterval($0 * 86_400)) }
        _ = try conn.query("SELECT pricing_raw_partitions(ARRAY(SELECT (d AT TIME ZONE 'UTC')::date FROM unnest($1::timestamptz[]) AS d))", [PGArray(dates)])
    }

    /// Makes the partitions of the retention's last day (the cutoff plus the retention) and the
    /// two after it, and drops every day that ended before the cutoff; returns how many were dropped.
    func prune(before cutoff: Date, on conn: PGConnection) throws -> Int {
        let today = Self.day(ofBucket: Int64(cutoff.timeIntervalSince1970)) + Int64(retentionDays)
        try Self.make(days: [today, today + 1, today + 2], on: conn)
        let old = try conn.query(
            """
            SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'pricing_submissions_raw'::regclass
               AND c.relname ~ '^pricing_submissions_raw_[0-9]{8}$'
               AND c.relname < 'pricing_submissions_raw_' || to_char($1::timestamptz AT TIME ZONE 'UTC', 'YYYYMMDD')
             ORDER BY 1
            """, [cutoff]
        ).map { try $0.decode(String.self, at: 0) }
        for name in old {
            // the names come from the catalogue and match the pattern above: no quoting needed
            _ = try conn.execute("ALTER TABLE pricing_submissions_raw DETACH PARTITION \(name)")
            _ = try conn.execute("DROP TABLE \(name)")
        }
        return old.count
    }
}
