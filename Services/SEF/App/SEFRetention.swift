import Foundation
import Logging
import SpotRuntime
import SpotStore

extension RetentionService {
    /// The SEF's retention job `sef.retention`: the raw trail's days older than its retention
    /// dropped whole (and the next days' partitions made), the other tables' older rows deleted,
    /// the ML dataset cut to its window. Removed per table: rows, or days for the raw trail.
    public static func sef(configuration: SEFConfiguration, store: PostgresStore, logger: Logger) -> RetentionService {
        let partitions = RawPartitions(retentionDays: configuration.retention["pricing_submissions_raw"])
        func rule(_ table: String, _ prune: @escaping @Sendable (PGConnection, Date) throws -> Int) -> RetentionRule {
            RetentionRule(table, prune: prune)
        }
        let rules = [
            rule("pricing_submissions_raw") { conn, cutoff in try partitions.prune(before: cutoff, on: conn) },
            rule("pricing_client_sources") { conn, cutoff in
                try conn.execute("DELETE FROM pricing_client_sources WHERE time_bucket < $1", [cutoff])
            },
            rule("pricing_client_buckets") { conn, cutoff in
                try conn.execute("DELETE FROM pricing_client_buckets WHERE time_bucket < $1", [cutoff])
            },
            rule("pricing_snapshots_clean") { conn, cutoff in
                try conn.execute("DELETE FROM pricing_snapshots_clean WHERE time_bucket < $1", [cutoff])
            },
            rule("pricing_snapshots_interpolated") { conn, cutoff in
                try conn.execute("DELETE FROM pricing_snapshots_interpolated WHERE time_bucket < $1", [cutoff])
            },
            rule("pricing_gaps") { conn, cutoff in
                try conn.execute("DELETE FROM pricing_gaps WHERE status <> 'open' AND gap_end < $1", [cutoff])
            },
            rule("pricing_snapshots_ml") { conn, cutoff in
                try conn.execute("DELETE FROM pricing_snapshots_ml WHERE time_bucket < $1", [cutoff])
            },
        ]
        return RetentionService(
            job: "sef.retention", rules: rules, policy: configuration.retention, worker: configuration.workerName, store: store, logger: logger)
    }
}
