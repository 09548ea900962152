import Foundation
import SpotStore

/// Everything the SEF derived for the pools of one instance family (`FAMILY.size.zone`) — raw
/// submissions with their duplicate flags, clean buckets, interpolation records and gap
/// records — as text rows with the family taken out of the pool ids, so that two families fed
/// the same submissions compare equal. The determinism tests and the fault suite compare runs
/// with it.
public struct DerivedPrices: Equatable, Sendable {
    public var raw: [String]
    public var clean: [String]
    public var interpolated: [String]
    public var gaps: [String]

    public static func read(_ store: PostgresStore, family: String) async throws -> DerivedPrices {
        func lines(_ sql: String) async throws -> [String] {
            try await store.withConnection { conn in
                try conn.query(sql, [family]).map { row in
                    try (0..<row.count).map { try row.decodeIfPresent(String.self, at: $0) ?? "NULL" }.joined(separator: " ")
                }
            }
        }
        return DerivedPrices(
            raw: try await lines(
                """
                SELECT substr(pool_id, length($1) + 1), observed_at::text, source_type, spot_price::text, is_duplicate::text
                  FROM pricing_submissions_raw WHERE pool_id LIKE $1 || '.%' ORDER BY 1, 2, 3, 4
                """),
            clean: try await lines(
                """
                SELECT substr(pool_id, length($1) + 1), time_bucket::text, spot_price::text, confidence_score::text, data_source,
                       source_type, coalesce(interpolation_method, '-'), coalesce(quality_flag, '-')
                  FROM pricing_snapshots_clean WHERE pool_id LIKE $1 || '.%' ORDER BY 1, 2
                """),
            interpolated: try await lines(
                """
                SELECT substr(pool_id, length($1) + 1), time_bucket::text, interpolation_method, gap_start::text, gap_end::text,
                       price_before::text, price_after::text, interpolated_price::text, confidence_score::text,
                       coalesce(array_length(peer_pool_ids, 1), 0)::text
                  FROM pricing_snapshots_interpolated WHERE pool_id LIKE $1 || '.%' ORDER BY 1, 2
                """),
            gaps: try await lines(
                """
                SELECT substr(pool_id, length($1) + 1), gap_start::text, coalesce(gap_end::text, 'open'), status,
                       coalesce(interpolation_method, '-'), coalesce(unfilled_reason, '-')
                  FROM pricing_gaps WHERE pool_id LIKE $1 || '.%' ORDER BY 1, 2
                """))
    }

    /// Rows in one and not the other, counted both ways.
    public func differing(_ other: DerivedPrices) -> Int {
        func diff(_ a: [String], _ b: [String]) -> Int { a.difference(from: b).count }
        return diff(raw, other.raw) + diff(clean, other.clean) + diff(interpolated, other.interpolated) + diff(gaps, other.gaps)
    }
}
