import Foundation
import Logging
import SpotModels
import SpotRuntime
import SpotStore

/// The operator commands of `spotguard-sef`. They claim work exactly as the service does,
/// so running one beside live copies never doubles it; the events they write to the outbox
/// are published by a running service's relay.
public enum SEFCommand {
    public static func run(
        env: EnvironmentReader, logger: Logger, _ body: (Maintenance) async throws -> Void
    ) async throws {
        let configuration = try SEFConfiguration(env: env)
        try await ServiceCommand.withStore(env: env, applicationName: "spotguard-sef-admin", logger: logger) { store in
            try await body(Maintenance(store: store, configuration: configuration, logger: logger))
        }
    }

    /// One item of the `pricing_quality_review` view.
    public struct ReviewItem: Codable, Sendable {
        public var kind: String
        public var poolId: String
        public var startsAt: Date
        public var endsAt: Date?
        public var spotPrice: Double?
        public var confidenceScore: Double?
        /// The view's details (JSON text).
        public var details: String?
    }

    /// What needs review, newest first.
    public static func review(_ store: PostgresStore, limit: Int = 200) async throws -> [ReviewItem] {
        try await store.withConnection { conn in
            try conn.query(
                """
                SELECT kind, pool_id, starts_at, ends_at, spot_price, confidence_score, details::text
                  FROM pricing_quality_review ORDER BY flagged_at DESC LIMIT $1
                """, [limit]
            ).map { row in
                ReviewItem(
                    kind: try row.decode(String.self, at: 0), poolId: try row.decode(String.self, at: 1),
                    startsAt: try row.decode(Date.self, at: 2), endsAt: try row.decodeIfPresent(Date.self, at: 3),
                    spotPrice: try row.decodeIfPresent(Double.self, at: 4), confidenceScore: try row.decodeIfPresent(Double.self, at: 5),
                    details: try row.decodeIfPresent(String.self, at: 6))
            }
        }
    }
}
